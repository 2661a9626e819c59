package schema_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

const ordersV1 = `syntax = "proto3";
package shop.v1;
import "buf/validate/validate.proto";
message Order {
  string order_id = 1 [(buf.validate.field).string.min_len = 1];
  int64 total_cents = 2;
  oneof payment {
    string card = 3;
    string voucher = 4;
  }
}
`

// TestConstraintChangesAreConflicts: a change to the buf.validate
// constraints of a field, oneof or message that was there is refused like a
// type change (a publish that passed would now fail, or a subscriber would
// get what it was promised it would not); a new field may come with
// constraints.
func TestConstraintChangesAreConflicts(t *testing.T) {
	cases := []struct {
		name, next string
		want       []string // nil means compatible
	}{
		{"tightened", strings.Replace(ordersV1, "min_len = 1]", "min_len = 1000]", 1),
			[]string{"shop.v1.Order field 1 (order_id) changed its buf.validate constraints", "min_len", "1000"}},
		{"loosened", strings.Replace(ordersV1, " [(buf.validate.field).string.min_len = 1]", "", 1),
			[]string{"shop.v1.Order field 1 (order_id) changed its buf.validate constraints", "to none"}},
		{"added to an existing field", strings.Replace(ordersV1, "int64 total_cents = 2;", "int64 total_cents = 2 [(buf.validate.field).int64.gt = 0];", 1),
			[]string{"shop.v1.Order field 2 (total_cents) changed its buf.validate constraints from none"}},
		{"message rule", strings.Replace(ordersV1, "message Order {", "message Order {\n  option (buf.validate.message).cel = {id: \"x\", message: \"x\", expression: \"this.order_id.size() >= 1000\"};", 1),
			[]string{"shop.v1.Order changed its buf.validate message constraints"}},
		{"oneof rule", strings.Replace(ordersV1, "oneof payment {", "oneof payment {\n    option (buf.validate.oneof).required = true;", 1),
			[]string{"shop.v1.Order oneof payment changed its buf.validate constraints"}},
		{"new field with constraints", strings.Replace(ordersV1, "int64 total_cents = 2;", "int64 total_cents = 2;\n  string note = 5 [(buf.validate.field).string.max_len = 10];", 1), nil},
		{"same constraints, new comment", strings.Replace(ordersV1, "message Order {", "// An order.\nmessage Order {", 1), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := schema.NewBuiltin()
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, _, err := r.Register(ctx, schematest.Compile(t, map[string]string{"shop/v1/order.proto": ordersV1})); err != nil {
				t.Fatal(err)
			}
			_, _, err = r.Register(ctx, schematest.Compile(t, map[string]string{"shop/v1/order.proto": tc.next}))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("compatible change refused: %v", err)
				}
				return
			}
			if !errors.Is(err, broker.ErrConflict) {
				t.Fatalf("err = %v, want a conflict", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			// The old constraints still apply: a one-character id passes.
			mt, err := r.FindMessageByName("shop.v1.Order")
			if err != nil {
				t.Fatal(err)
			}
			msg := mt.New()
			msg.Set(mt.Descriptor().Fields().ByName("order_id"), protoreflect.ValueOfString("x"))
			if err := r.ValidatePayload(msg.Interface()); err != nil {
				t.Fatalf("after the refused change: %v", err)
			}
		})
	}
}
