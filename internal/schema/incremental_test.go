package schema_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

const (
	itemV1 = `syntax = "proto3";
package shop.v1;
message Item { string sku = 1; }
`
	cartV1 = `syntax = "proto3";
package shop.v1;
import "shop/v1/item.proto";
message Cart { Item item = 1; repeated Item more = 2; }
`
)

// TestNewVersionOfAnImportedFile: a push that replaces a file rebuilds the
// files that import it, so their types see the new version.
func TestNewVersionOfAnImportedFile(t *testing.T) {
	r, err := schema.NewBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := r.Register(ctx, schematest.Compile(t, map[string]string{"shop/v1/item.proto": itemV1, "shop/v1/cart.proto": cartV1})); err != nil {
		t.Fatal(err)
	}
	itemV2 := strings.Replace(itemV1, "string sku = 1;", "string sku = 1; int32 qty = 2;", 1)
	added, updated, err := r.Register(ctx, schematest.Compile(t, map[string]string{"shop/v1/item.proto": itemV2}))
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 0 || len(updated) != 1 || updated[0] != "shop.v1.Item" {
		t.Fatalf("added %v updated %v, want shop.v1.Item updated", added, updated)
	}
	mt, err := r.FindMessageByName("shop.v1.Cart")
	if err != nil {
		t.Fatal(err)
	}
	if mt.Descriptor().Fields().ByName("item").Message().Fields().ByName("qty") == nil {
		t.Fatal("shop.v1.Cart still refers to the old shop.v1.Item")
	}
	// An incompatible change to the imported file is refused, and the
	// importing type keeps the version it had.
	_, _, err = r.Register(ctx, schematest.Compile(t, map[string]string{"shop/v1/item.proto": strings.Replace(itemV2, "int32 qty", "int64 qty", 1)}))
	if !errors.Is(err, broker.ErrConflict) || !strings.Contains(err.Error(), "shop.v1.Item field 2 (qty) changed type from int32 to int64") {
		t.Fatalf("incompatible change: %v", err)
	}
	mt, _ = r.FindMessageByName("shop.v1.Cart")
	if k := mt.Descriptor().Fields().ByName("item").Message().Fields().ByName("qty").Kind(); k != protoreflect.Int32Kind {
		t.Fatalf("after a refused push, Cart.item.qty is %v", k)
	}
}

// TestIncrementalPushesEqualARebuild: a node that applied pushes one by one
// and a node that starts later and builds everything from the store know
// the same types, defined the same way.
func TestIncrementalPushesEqualARebuild(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	ctx := context.Background()
	node1, err := schema.New(ctx, schema.Options{Store: b})
	if err != nil {
		t.Fatal(err)
	}
	pushes := []map[string]string{
		{"shop/v1/item.proto": itemV1, "shop/v1/cart.proto": cartV1},
		{"ops/v1/ping.proto": v1},
		{"shop/v1/item.proto": strings.Replace(itemV1, "string sku = 1;", "string sku = 1; int32 qty = 2; Kind kind = 3; enum Kind { KIND_UNSPECIFIED = 0; }", 1)},
		{"ops/v1/ping.proto": strings.Replace(v1, "Kind kind = 2;", "Kind kind = 2; map<string, int64> counts = 3;", 1)},
	}
	for i, p := range pushes {
		if _, _, err := node1.Register(ctx, schematest.Compile(t, p)); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	node2, err := schema.New(ctx, schema.Options{Store: b})
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := node1.Names(), node2.Names()
	if strings.Join(n1, " ") != strings.Join(n2, " ") {
		t.Fatalf("names differ:\n%v\n%v", n1, n2)
	}
	for _, name := range n1 {
		i1, d1, _ := node1.Lookup(name)
		i2, d2, _ := node2.Lookup(name)
		if i1 != i2 || !proto.Equal(protodesc.ToDescriptorProto(d1), protodesc.ToDescriptorProto(d2)) {
			t.Errorf("%s differs: %+v %+v", name, i1, i2)
		}
	}
	mt, err := node1.FindMessageByName("shop.v1.Cart")
	if err != nil || mt.Descriptor().Fields().ByName("more").Message().Fields().ByName("kind") == nil {
		t.Fatalf("node 1: Cart does not see Item's new field: %v", err)
	}
}

// TestNameConflictsAsProtoregistry: a push is refused for the name
// conflicts that building all files together would refuse, even where it
// touches none of the files it conflicts with.
func TestNameConflictsAsProtoregistry(t *testing.T) {
	ctx := context.Background()
	r, err := schema.NewBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Register(ctx, schematest.Compile(t, map[string]string{"ops/v1/ping.proto": v1})); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		"an enum declared again":         "syntax = \"proto3\";\npackage ops.v1;\nenum Kind { K_UNSPECIFIED = 0; }\n",
		"an enum value in package scope": "syntax = \"proto3\";\npackage ops.v1;\nenum Other { KIND_A = 0; }\n",
		"a message named as a package":   "syntax = \"proto3\";\npackage ops;\nmessage v1 { string x = 1; }\n",
		"a package named as a message":   "syntax = \"proto3\";\npackage ops.v1.Ping;\nmessage X { string x = 1; }\n",
	} {
		_, _, err := r.Register(ctx, schematest.Compile(t, map[string]string{"other/x.proto": src}))
		if !errors.Is(err, broker.ErrConflict) && !errors.Is(err, broker.ErrBadRequest) {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
		if _, _, ok := r.Lookup("ops.v1.Ping"); !ok {
			t.Fatalf("%s: ops.v1.Ping lost", name)
		}
	}
}

// TestAConflictingStoredPushIsSkippedEverywhere: two nodes that each
// accepted a push that conflicts with the other's (concurrent pushes) do
// not stop learning types: every node applies the first and skips the
// second, and later pushes still arrive.
func TestAConflictingStoredPushIsSkippedEverywhere(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	ctx := context.Background()
	save := func(files map[string]string) {
		t.Helper()
		raw, err := proto.Marshal(schematest.Compile(t, files))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.SaveSchemas(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	save(map[string]string{"a/a.proto": "syntax = \"proto3\";\npackage shared.v1;\nmessage Thing { string a = 1; }\n"})
	save(map[string]string{"b/b.proto": "syntax = \"proto3\";\npackage shared.v1;\nmessage Thing { int64 b = 1; }\n"})
	save(map[string]string{"ops/v1/ping.proto": v1})
	for i := range 2 {
		r, err := schema.New(ctx, schema.Options{Store: b, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		info, md, ok := r.Lookup("shared.v1.Thing")
		if !ok || info.File != "a/a.proto" || md.Fields().ByName("a") == nil {
			t.Fatalf("node %d: shared.v1.Thing = %+v %v, want the first push's", i, info, ok)
		}
		if !hasField(r, "ops.v1.Ping", "from") {
			t.Fatalf("node %d: the push after the conflicting one was not applied", i)
		}
	}
}
