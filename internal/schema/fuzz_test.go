package schema_test

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strings"
	"testing"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// FuzzRegisterSchemas: a push of arbitrary bytes (as a FileDescriptorSet,
// by a caller granted every package) never panics; every refusal wraps a
// sentinel of internal/broker or internal/auth and leaves the registry as
// it was; and what is accepted keeps the rules: clean file names, no type
// in a reserved package.
func FuzzRegisterSchemas(f *testing.F) {
	add := func(set *descriptorpb.FileDescriptorSet) {
		raw, err := proto.Marshal(set)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	valid := schematest.Compile(f, map[string]string{"shop/v1/cart.proto": cartWithConstraints, "shop/v1/item.proto": itemV1})
	add(valid)
	renamed := func(name string) *descriptorpb.FileDescriptorSet {
		set := schematest.Compile(f, map[string]string{"ok/x.proto": sandboxProbe})
		set.File[len(set.File)-1].Name = proto.String(name)
		return set
	}
	for _, name := range []string{"../../etc/passwd", "a\nb.proto", "google/protobuf/../../x.proto", "/abs.proto", `a\b.proto`, ""} {
		add(renamed(name))
	}
	for _, pkg := range []string{"herald.v1", "google.protobuf", "google.type", "buf.validate", "orders.v1"} {
		add(schematest.Compile(f, map[string]string{"x/reserved.proto": "syntax = \"proto3\";\npackage " + pkg + ";\nmessage Pushed { string a = 1; }\n"}))
	}
	// Malformed sets: an import cycle, a dangling type, a file twice, two
	// files declaring one name.
	cycle := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		{Name: proto.String("c/a.proto"), Package: proto.String("c"), Dependency: []string{"c/b.proto"}},
		{Name: proto.String("c/b.proto"), Package: proto.String("c"), Dependency: []string{"c/a.proto"}},
	}}
	add(cycle)
	dangling := genSet(genFile("d/d.proto", "d.v1", 2, false))
	dangling.File[0].MessageType[1].Field[2].TypeName = proto.String(".d.v1.Nope")
	add(dangling)
	add(genSet(genFile("t/t.proto", "t.v1", 1, false), genFile("t/t.proto", "t.v1", 1, false)))
	add(genSet(genFile("t/a.proto", "t.v1", 1, false), genFile("t/b.proto", "t.v1", 1, false)))
	f.Add([]byte{})

	ctx := as(f, "", ">")
	f.Fuzz(func(t *testing.T, raw []byte) {
		set := &descriptorpb.FileDescriptorSet{}
		if proto.Unmarshal(raw, set) != nil {
			return // the transport would not decode it either
		}
		r, err := schema.New(context.Background(), schema.Options{Compiled: []protoreflect.FileDescriptor{ordersv1.File_orders_v1_orders_proto}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		before := strings.Join(r.Names(), " ")
		_, err = schema.NewService(r).RegisterSchemas(ctx, &heraldv1.RegisterSchemasRequest{Descriptors: set})
		if err != nil {
			if !errors.Is(err, broker.ErrBadRequest) && !errors.Is(err, broker.ErrInvalidEvent) && !errors.Is(err, broker.ErrConflict) && !errors.Is(err, auth.ErrPermissionDenied) {
				t.Fatalf("refusal %q (%T) wraps no sentinel of internal/broker or internal/auth", err, err)
			}
			if after := strings.Join(r.Names(), " "); after != before {
				t.Fatal("a refused push changed the registry")
			}
			return
		}
		for _, info := range r.List() {
			if info.Source != schema.Pushed {
				continue
			}
			if !cleanName(info.File) {
				t.Errorf("accepted a file named %q", info.File)
			}
			for _, p := range []string{"herald.", "google.", "buf.", "orders.v1."} {
				if strings.HasPrefix(info.Name, p) {
					t.Errorf("accepted %s, in a reserved package", info.Name)
				}
			}
		}
	})
}

// cleanName is the rule for pushed file names, written independently of
// the registry's.
func cleanName(name string) bool {
	return name != "" && len(name) <= 512 && path.Clean(name) == name && !strings.HasPrefix(name, "/") && !strings.HasPrefix(name, "../") &&
		!strings.Contains(name, "/../") && strings.HasSuffix(name, ".proto") && !strings.ContainsAny(name, `\`) &&
		!strings.ContainsFunc(name, unicode.IsControl)
}

const cartWithConstraints = `syntax = "proto3";
package shop.v1;
import "buf/validate/validate.proto";
import "google/protobuf/timestamp.proto";
import "shop/v1/item.proto";
message CartUpdated {
  string cart_id = 1 [(buf.validate.field).string.min_len = 1];
  repeated Item items = 2;
  map<string, int64> totals = 3;
  google.protobuf.Timestamp at = 4;
  oneof by { string user = 5; string guest = 6; }
}
`
