package schema_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/broker/outagetest"
	"github.com/heraldhq/herald/internal/poll"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

const v1 = `syntax = "proto3";
package ops.v1;
message Ping { string from = 1; Kind kind = 2; }
enum Kind { KIND_UNSPECIFIED = 0; KIND_A = 1; }
`

func hasField(r *schema.Registry, msg, field string) bool {
	mt, err := r.FindMessageByName(protoreflect.FullName(msg))
	return err == nil && mt.Descriptor().Fields().ByName(protoreflect.Name(field)) != nil
}

func TestFilesReloadWhenTheyChange(t *testing.T) {
	dir := t.TempDir()
	schematest.WriteSet(t, dir, "ops.binpb", schematest.Compile(t, map[string]string{"ops/v1/ping.proto": v1}))
	r, err := schema.New(context.Background(), schema.Options{Descriptors: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if !hasField(r, "ops.v1.Ping", "from") {
		t.Fatal("type from the descriptor file not loaded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Watch(ctx, 20*time.Millisecond)
	schematest.WriteSet(t, dir, "ops.binpb", schematest.Compile(t, map[string]string{"ops/v1/ping.proto": strings.Replace(v1, "Kind kind = 2;", "Kind kind = 2; int64 seq = 3;", 1)}))
	poll.Until(t, 10*time.Second, "the changed file to be loaded", func() bool { return hasField(r, "ops.v1.Ping", "seq") })
}

func TestPushedSchemasReachOtherNodesThroughTheStore(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	ctx := context.Background()
	node1, err := schema.New(ctx, schema.Options{Store: b})
	if err != nil {
		t.Fatal(err)
	}
	node2, err := schema.New(ctx, schema.Options{Store: b})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := node1.Register(ctx, schematest.Compile(t, map[string]string{"ops/v1/ping.proto": v1})); err != nil {
		t.Fatal(err)
	}
	// node2 learns it on a lookup miss, without a restart.
	poll.Until(t, 10*time.Second, "node 2 to know a type pushed on node 1", func() bool { return hasField(node2, "ops.v1.Ping", "from") })
	// A node started later loads it at start.
	node3, err := schema.New(ctx, schema.Options{Store: b})
	if err != nil {
		t.Fatal(err)
	}
	if info, _, ok := node3.Lookup("ops.v1.Ping"); !ok || info.Source != schema.Pushed {
		t.Fatalf("node 3: %+v %v", info, ok)
	}
	// And node2 checks compatibility against it.
	_, _, err = node2.Register(ctx, schematest.Compile(t, map[string]string{"ops/v1/ping.proto": strings.Replace(v1, "string from", "bytes from", 1)}))
	if !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("incompatible push on node 2: %v", err)
	}
}

func TestCompatibility(t *testing.T) {
	cases := []struct {
		name, next string
		want       string // "" means compatible
	}{
		{"new field", strings.Replace(v1, "Kind kind = 2;", "Kind kind = 2; string note = 3;", 1), ""},
		{"new enum value", strings.Replace(v1, "KIND_A = 1;", "KIND_A = 1; KIND_B = 2;", 1), ""},
		{"new message", v1 + "message Pong { string to = 1; }\n", ""},
		{"type change", strings.Replace(v1, "string from", "int32 from", 1), "changed type from string to int32"},
		{"cardinality", strings.Replace(v1, "string from", "repeated string from", 1), "changed type from string to repeated string"},
		{"rename", strings.Replace(v1, "string from = 1", "string sender = 1", 1), "was renamed to sender"},
		{"json name", strings.Replace(v1, "string from = 1", "string from = 1 [json_name = \"f\"]", 1), `changed its JSON name from "from" to "f"`},
		{"removed field", strings.Replace(v1, "Kind kind = 2;", "", 1), "field 2 (kind) was removed"},
		{"renumbered", strings.Replace(v1, "Kind kind = 2;", "Kind kind = 3;", 1), "moved from number 2 to 3"},
		{"enum rename", strings.Replace(v1, "KIND_A = 1;", "KIND_X = 1;", 1), "value 1 was renamed from KIND_A to KIND_X"},
		{"removed message", strings.Replace(v1, "message Ping { string from = 1; Kind kind = 2; }", "message Other { string from = 1; Kind kind = 2; }", 1), "message ops.v1.Ping was removed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := schema.NewBuiltin()
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, _, err := r.Register(ctx, schematest.Compile(t, map[string]string{"ops/v1/ping.proto": v1})); err != nil {
				t.Fatal(err)
			}
			_, _, err = r.Register(ctx, schematest.Compile(t, map[string]string{"ops/v1/ping.proto": tc.next}))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("compatible change refused: %v", err)
			case tc.want != "" && (!errors.Is(err, broker.ErrConflict) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want a conflict mentioning %q", err, tc.want)
			}
			if tc.want != "" && !hasField(r, "ops.v1.Ping", "from") {
				t.Fatal("the old type was lost after a refused change")
			}
		})
	}
}

func TestCompiledFilesOnlyWhenGiven(t *testing.T) {
	plain, err := schema.NewBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := plain.Lookup("google.protobuf.Struct"); !ok {
		t.Error("a registry without compiled files does not know the well-known types")
	}
	if _, err := plain.FindMessageByName("orders.v1.OrderPlaced"); !errors.Is(err, protoregistry.NotFound) {
		t.Errorf("a registry without compiled files resolves orders.v1.OrderPlaced: %v", err)
	}
	if slices.Contains(plain.Names(), "orders.v1.OrderPlaced") {
		t.Error("a registry without compiled files lists orders.v1.OrderPlaced")
	}

	r, err := schema.NewBuiltin(ordersv1.File_orders_v1_orders_proto)
	if err != nil {
		t.Fatal(err)
	}
	info, _, ok := r.Lookup("orders.v1.OrderPlaced")
	if !ok || info.Source != schema.Builtin || info.File != "orders/v1/orders.proto" {
		t.Fatalf("orders.v1.OrderPlaced compiled in: %+v, %v", info, ok)
	}
	mt, err := r.FindMessageByName("orders.v1.OrderPlaced")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mt.New().Interface().(*ordersv1.OrderPlaced); !ok {
		t.Errorf("a compiled file resolves to %T, want its generated Go type", mt.New().Interface())
	}
}

func TestJSONSchemaOfAnExample(t *testing.T) {
	r, err := schema.NewBuiltin(ordersv1.File_orders_v1_orders_proto)
	if err != nil {
		t.Fatal(err)
	}
	_, md, ok := r.Lookup("orders.v1.OrderPlaced")
	if !ok {
		t.Fatal("orders.v1.OrderPlaced unknown")
	}
	js := schema.JSONSchema(md)
	props := js["properties"].(map[string]any)
	check := func(field, key string, want any) {
		t.Helper()
		got := props[field].(map[string]any)[key]
		if g, ok := got.([]any); ok {
			got = len(g)
		}
		if got != want {
			t.Errorf("%s.%s = %v, want %v", field, key, got, want)
		}
	}
	check("orderId", "type", "string")
	check("totalCents", "type", "string") // int64 is a string in JSON
	check("placedAt", "format", "date-time")
	check("channel", "enum", 4)
	check("items", "type", "array")
	if js["$defs"].(map[string]any)["orders.v1.LineItem"] == nil {
		t.Error("LineItem not under $defs")
	}
}

// flakyStore is a SchemaStore whose reads fail while down is set.
type flakyStore struct {
	down  atomic.Bool
	reads atomic.Int64
}

func (s *flakyStore) SaveSchemas(context.Context, []byte) error { return nil }

func (s *flakyStore) LoadSchemas(context.Context, int) ([][]byte, error) {
	s.reads.Add(1)
	if s.down.Load() {
		return nil, fmt.Errorf("%w: the broker's log was reset", broker.ErrUnavailable)
	}
	return nil, nil
}

// A store that cannot be read is logged once, and once when it works
// again, however many times Watch tried meanwhile (a Redis that came back
// empty used to get a line every two seconds from every node).
func TestWatchLogsAStoreOutageOnce(t *testing.T) {
	store := &flakyStore{}
	var logs outagetest.Log
	r, err := schema.New(context.Background(), schema.Options{Store: store, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Watch(ctx, time.Millisecond)
	store.down.Store(true)
	from := store.reads.Load()
	poll.Until(t, 10*time.Second, "Watch to read the failing store ten times", func() bool { return store.reads.Load() > from+10 })
	store.down.Store(false)
	poll.Until(t, 10*time.Second, "the store's recovery to be logged", func() bool { return strings.Contains(logs.String(), "works again") })
	if n := strings.Count(logs.String(), "reading pushed schemas from the broker failed"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once:\n%s", n, logs.String())
	}
}
