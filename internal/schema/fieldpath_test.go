package schema_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

const shapes = `syntax = "proto3";
package shapes.v1;
message Box {
  string a_b = 1 [json_name = "zz"];
  Inner inner = 2;
  repeated Inner many = 3;
  map<string, Inner> by_name = 4;
  oneof pick { Inner chosen = 5; string none = 6; }
  message Inner { int32 depth = 1; Box box = 2; }
  string foo_bar = 7;
}
`

// resolves is the definition HasFieldPath must agree with: the SSE
// handler's own resolution of a path in one type, tried on every type.
func resolves(r *schema.Registry, segs []string) bool {
	found := false
	r.RangeMessages(func(mt protoreflect.MessageType) bool {
		md := mt.Descriptor()
		ok := true
		for i, seg := range segs {
			f := md.Fields().ByName(protoreflect.Name(seg))
			if f == nil {
				f = md.Fields().ByJSONName(seg)
			}
			if f == nil || i < len(segs)-1 && (f.Message() == nil || f.IsList() || f.IsMap()) {
				ok = false
				break
			}
			md = f.Message()
		}
		found = ok
		return !found
	})
	return found
}

// TestHasFieldPath: the index answers as a look at every type would.
func TestHasFieldPath(t *testing.T) {
	r, err := schema.NewBuiltin(ordersv1.File_orders_v1_orders_proto)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Register(context.Background(), schematest.Compile(t, map[string]string{"shapes/v1/box.proto": shapes})); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"orderId", "order_id", "items", "items.sku", "placedAt.seconds", "placed_at.nanos", "placedAt.nope",
		"zz", "a_b", "aB", "inner.depth", "inner.box.inner.box.zz", "many.depth", "byName", "by_name.depth",
		"chosen.box.many", "none", "fooBar", "foo_bar", "fooBar.x", "foobar", "inner", "inner.box.nope", "nosuch", "seconds",
		"typeUrl", "fields", "fields.x", "value.kind",
	} {
		segs := strings.Split(p, ".")
		if got, want := r.HasFieldPath(segs), resolves(r, segs); got != want {
			t.Errorf("HasFieldPath(%s) = %v, every type says %v", p, got, want)
		}
	}
	if r.HasFieldPath(nil) {
		t.Error("the empty path exists")
	}
	// A new snapshot has its own index.
	if r.HasFieldPath([]string{"inner", "width"}) {
		t.Fatal("inner.width before it exists")
	}
	if _, _, err := r.Register(context.Background(), schematest.Compile(t, map[string]string{"shapes/v1/box.proto": strings.Replace(shapes, "int32 depth = 1;", "int32 depth = 1; int32 width = 3;", 1)})); err != nil {
		t.Fatal(err)
	}
	if !r.HasFieldPath([]string{"inner", "width"}) {
		t.Fatal("inner.width not found after the push that adds it")
	}
}

// TestHasFieldPathPastItsIndexes: past the bound on the indexes built per
// snapshot, the answer stays the same.
func TestHasFieldPathPastItsIndexes(t *testing.T) {
	var b strings.Builder
	b.WriteString("syntax = \"proto3\";\npackage deep.v1;\nmessage R {\n  string x = 1;\n")
	for i := range 20 {
		fmt.Fprintf(&b, "  R a%d = %d;\n", i, i+2)
	}
	b.WriteString("}\n")
	r, err := schema.NewBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Register(context.Background(), schematest.Compile(t, map[string]string{"deep/v1/r.proto": b.String()})); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		for j := range 20 {
			if !r.HasFieldPath([]string{fmt.Sprint("a", i), fmt.Sprint("a", j), "x"}) {
				t.Fatalf("a%d.a%d.x not found", i, j)
			}
			if r.HasFieldPath([]string{fmt.Sprint("a", i), fmt.Sprint("a", j), "y"}) {
				t.Fatalf("a%d.a%d.y found", i, j)
			}
		}
	}
}
