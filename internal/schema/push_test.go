package schema_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// as is the context of a push by a caller whose schemas grant is grants,
// as the server passes it to the service.
func as(t testing.TB, rateKey string, grants ...string) context.Context {
	t.Helper()
	perms := auth.Permissions{RateKey: rateKey}
	for _, g := range grants {
		p, err := broker.ParsePattern(g)
		if err != nil {
			t.Fatal(err)
		}
		perms.Schemas = append(perms.Schemas, p)
	}
	return auth.NewContext(context.Background(), perms)
}

// pushEnv is a registry on a memory broker, and its service.
type pushEnv struct {
	b   *memory.Broker
	reg *schema.Registry
	svc *schema.Service
}

func newPushEnv(t testing.TB, opts schema.Options) *pushEnv {
	t.Helper()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { b.Close() })
	opts.Store = b
	r, err := schema.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return &pushEnv{b: b, reg: r, svc: schema.NewService(r)}
}

func (e *pushEnv) push(ctx context.Context, set *descriptorpb.FileDescriptorSet) (*heraldv1.RegisterSchemasResponse, error) {
	return e.svc.RegisterSchemas(ctx, &heraldv1.RegisterSchemasRequest{Descriptors: set})
}

// stored returns the files of every registration in the store.
func (e *pushEnv) stored(t testing.TB) [][]string {
	t.Helper()
	sets, err := e.b.LoadSchemas(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, raw := range sets {
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(raw, &set); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, fd := range set.GetFile() {
			names = append(names, fd.GetName())
		}
		out = append(out, names)
	}
	return out
}

const (
	teamOrders = `syntax = "proto3";
package orders.v1;
import "buf/validate/validate.proto";
message OrderPlaced {
  string order_id = 1 [(buf.validate.field).string.min_len = 1];
}
`
	sandboxProbe = `syntax = "proto3";
package sandbox.x;
message Probe { string a = 1; }
`
)

func wantDenied(t testing.TB, err error, words ...string) {
	t.Helper()
	if !errors.Is(err, auth.ErrPermissionDenied) {
		t.Fatalf("err = %v, want permission denied", err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not name %q", err, w)
		}
	}
}

// TestPushesStayInTheirPackages: a push that adds or changes a type
// outside the packages of the caller's schemas grant is refused whole,
// naming the type, and nothing of it is stored; copies of files the caller
// may not change ride along as long as they are copies.
func TestPushesStayInTheirPackages(t *testing.T) {
	e := newPushEnv(t, schema.Options{})
	owner, attacker := as(t, "", "orders.>"), as(t, "", "sandbox.x")
	orders := schematest.Compile(t, map[string]string{"orders/v1/orders.proto": teamOrders})
	if _, err := e.push(owner, orders); err != nil {
		t.Fatal(err)
	}
	stillOne := func() {
		t.Helper()
		if got := e.stored(t); len(got) != 1 {
			t.Fatalf("stored %v, want the owner's push alone", got)
		}
		_, md, ok := e.reg.Lookup("orders.v1.OrderPlaced")
		if !ok || md.Fields().Len() != 1 {
			t.Fatal("orders.v1.OrderPlaced changed")
		}
	}

	// The attack: the orders file with a constraint no order meets.
	evil := strings.Replace(teamOrders, "min_len = 1]", "min_len = 1000]", 1)
	_, err := e.push(attacker, schematest.Compile(t, map[string]string{"orders/v1/orders.proto": evil}))
	wantDenied(t, err, "orders.v1.OrderPlaced", "orders/v1/orders.proto", "sandbox.x")
	stillOne()

	// Refused whole, the caller's own file included.
	_, err = e.push(attacker, schematest.Compile(t, map[string]string{"orders/v1/orders.proto": evil + "message Extra {}\n", "sandbox/x.proto": sandboxProbe}))
	wantDenied(t, err, "orders.v1.OrderPlaced")
	if _, _, ok := e.reg.Lookup("sandbox.x.Probe"); ok {
		t.Fatal("the caller's own file of a refused push was registered")
	}
	stillOne()

	// A new file in a package the caller may not push.
	_, err = e.push(attacker, schematest.Compile(t, map[string]string{"sandbox/evil.proto": "syntax = \"proto3\";\npackage orders.v1;\nmessage Refund { string id = 1; }\n"}))
	wantDenied(t, err, "orders.v1.Refund", "sandbox/evil.proto")
	stillOne()

	// The path of another team's file, with the caller's package: it
	// would remove the other team's types.
	_, err = e.push(attacker, schematest.Compile(t, map[string]string{"orders/v1/orders.proto": sandboxProbe}))
	wantDenied(t, err, "orders.v1.OrderPlaced", "package orders.v1")
	stillOne()

	// A file of the caller that imports another team's: the copy buf
	// build includes is accepted and not stored again, comments or not.
	consumer := `syntax = "proto3";
package sandbox.x;
import "orders/v1/orders.proto";
message Watch { orders.v1.OrderPlaced last = 1; }
`
	commented := strings.Replace(teamOrders, "message OrderPlaced {", "// A copy with other comments.\nmessage OrderPlaced {", 1)
	for _, copyOf := range []string{teamOrders, commented} {
		resp, err := e.push(attacker, schematest.Compile(t, map[string]string{"orders/v1/orders.proto": copyOf, "sandbox/watch.proto": consumer}))
		if err != nil {
			t.Fatalf("a push with a copy of another team's file: %v", err)
		}
		if strings.Join(resp.GetUpdated(), ",") != "" {
			t.Fatalf("updated %v, want nothing", resp.GetUpdated())
		}
	}
	if got := e.stored(t); len(got) != 2 || strings.Join(got[1], ",") != "sandbox/watch.proto" {
		t.Fatalf("stored %v, want the caller's file alone after the owner's", got)
	}

	// Without permissions in the context (a caller in the process, not
	// through the server), the registry does not check grants.
	if _, err := e.push(context.Background(), schematest.Compile(t, map[string]string{"orders/v1/orders.proto": strings.Replace(teamOrders, "}\n", "  string note = 2;\n}\n", 1)})); err != nil {
		t.Fatalf("a trusted push: %v", err)
	}

	// The empty package is granted only by ">".
	noPackage := map[string]string{"loose.proto": "syntax = \"proto3\";\nmessage Loose { string a = 1; }\n"}
	_, err = e.push(attacker, schematest.Compile(t, noPackage))
	wantDenied(t, err, "Loose", "package (none)")
	if _, err := e.push(as(t, "", ">"), schematest.Compile(t, noPackage)); err != nil {
		t.Fatalf("a push to the empty package with >: %v", err)
	}
}

// TestReservedPackages: herald.*, google.*, buf.* and the packages of
// compiled-in files are never pushable, whatever the grant.
func TestReservedPackages(t *testing.T) {
	e := newPushEnv(t, schema.Options{Compiled: []protoreflect.FileDescriptor{ordersv1.File_orders_v1_orders_proto}})
	all := as(t, "", ">")
	for _, pkg := range []string{"herald.v1", "herald", "google.protobuf", "google.type", "buf.validate", "buf.build.x", "orders.v1"} {
		file := "x/" + strings.ReplaceAll(pkg, ".", "_") + ".proto"
		_, err := e.push(all, schematest.Compile(t, map[string]string{file: fmt.Sprintf("syntax = \"proto3\";\npackage %s;\nmessage Pushed%d { string a = 1; }\n", pkg, len(pkg))}))
		wantDenied(t, err, "package "+pkg, "reserved")
	}
	if got := e.stored(t); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}
	// Neighbours of reserved packages are not reserved; a copy of a
	// compiled-in file in a push is left out.
	set := schematest.Compile(t, map[string]string{
		"heraldry/v1/h.proto": "syntax = \"proto3\";\npackage heraldry.v1;\nmessage Crest { string a = 1; }\n",
		"orders/v2/o.proto":   "syntax = \"proto3\";\npackage orders.v2;\nmessage Order { string a = 1; }\n",
	})
	set.File = append(schema.DescriptorSet(ordersv1.File_orders_v1_orders_proto).GetFile(), set.GetFile()...)
	if _, err := e.push(all, set); err != nil {
		t.Fatal(err)
	}
	if got := e.stored(t); len(got) != 1 || len(got[0]) != 2 {
		t.Fatalf("stored %v, want the two new files", got)
	}
	if info, _, _ := e.reg.Lookup("orders.v1.OrderPlaced"); info.Source != schema.Builtin {
		t.Fatalf("orders.v1.OrderPlaced is %v, want builtin still", info.Source)
	}
}

// TestBadFileNames: a pushed file is named by a clean relative path ending
// in .proto, without control characters or backslashes.
func TestBadFileNames(t *testing.T) {
	e := newPushEnv(t, schema.Options{})
	for _, name := range []string{
		"../../etc/passwd", "../x.proto", "a/../../x.proto", "google/protobuf/../../x.proto", "/etc/x.proto",
		"a//b.proto", "./a.proto", "a/./b.proto", "a/b.proto/", "a\nb.proto", "a\rb.proto", "a\x00b.proto",
		"a\u0085b.proto", "a\\b.proto", "x.txt", "x", "", strings.Repeat("a/", 300) + "x.proto", "\xff.proto",
	} {
		set := schematest.Compile(t, map[string]string{"ok/x.proto": sandboxProbe})
		set.File[len(set.File)-1].Name = proto.String(name)
		_, err := e.push(as(t, "", ">"), set)
		if !errors.Is(err, broker.ErrBadRequest) || !strings.Contains(err.Error(), strconv.Quote(broker.Printable(name))) || strings.ContainsAny(err.Error(), "\n\r\x00") {
			t.Errorf("%q: %v, want a bad request naming the file", name, err)
		}
	}
	if got := e.stored(t); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}
}

// TestPushLimits: each limit refuses a push whole, naming the limit and
// its flag: per push with INVALID_ARGUMENT (a retry cannot help), in total
// and per minute with RESOURCE_EXHAUSTED.
func TestPushLimits(t *testing.T) {
	ctx := as(t, "", "shop.>")
	fileOf := func(name string, types int) *descriptorpb.FileDescriptorSet {
		return genSet(genFile(name+".proto", "shop."+name, types, false))
	}
	t.Run("bytes per push", func(t *testing.T) {
		e := newPushEnv(t, schema.Options{MaxPushBytes: 500})
		_, err := e.push(ctx, fileOf("a", 20))
		if !errors.Is(err, broker.ErrBadRequest) || !strings.Contains(err.Error(), "--max-schema-push-bytes") || !strings.Contains(err.Error(), "500") {
			t.Fatalf("err = %v", err)
		}
		if _, err := e.push(ctx, fileOf("b", 2)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("types per push", func(t *testing.T) {
		e := newPushEnv(t, schema.Options{MaxPushTypes: 5})
		_, err := e.push(ctx, fileOf("a", 6))
		if !errors.Is(err, broker.ErrBadRequest) || !strings.Contains(err.Error(), "--max-schema-push-types") || !strings.Contains(err.Error(), "6 message types") {
			t.Fatalf("err = %v", err)
		}
		if got := e.stored(t); len(got) != 0 {
			t.Fatalf("stored %v", got)
		}
		if _, err := e.push(ctx, fileOf("b", 5)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pushed types", func(t *testing.T) {
		e := newPushEnv(t, schema.Options{MaxPushedTypes: 10})
		if _, err := e.push(ctx, fileOf("a", 6)); err != nil {
			t.Fatal(err)
		}
		_, err := e.push(ctx, fileOf("b", 6))
		var limit *schema.LimitError
		if !errors.As(err, &limit) || status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-pushed-types") {
			t.Fatalf("err = %v, want RESOURCE_EXHAUSTED naming --max-pushed-types", err)
		}
		if _, _, ok := e.reg.Lookup("shop.b.M0"); ok {
			t.Fatal("a refused push was registered")
		}
		// A new version that does not add types still passes.
		if _, err := e.push(ctx, genSet(genFile("a.proto", "shop.a", 6, true))); err != nil {
			t.Fatalf("a new version of a pushed file at the limit: %v", err)
		}
	})
	t.Run("pushed bytes", func(t *testing.T) {
		first := fileOf("a", 6)
		e := newPushEnv(t, schema.Options{MaxPushedBytes: proto.Size(first.File[0]) + 10})
		if _, err := e.push(ctx, first); err != nil {
			t.Fatal(err)
		}
		_, err := e.push(ctx, fileOf("b", 1))
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-pushed-schema-bytes") {
			t.Fatalf("err = %v, want RESOURCE_EXHAUSTED naming --max-pushed-schema-bytes", err)
		}
	})
	t.Run("pushes per minute", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newPushEnv(t, schema.Options{PushesPerMinute: 2})
			a, b := as(t, "sub:a", "shop.>"), as(t, "sub:b", "shop.>")
			for i := range 2 {
				if _, err := e.push(a, fileOf(fmt.Sprintf("r%d", i), 1)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := e.push(a, fileOf("r2", 1))
			st := status.Convert(err)
			if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "--schema-pushes-per-minute") {
				t.Fatalf("third push in a minute: %v", err)
			}
			var retry *errdetails.RetryInfo
			for _, d := range st.Details() {
				if r, ok := d.(*errdetails.RetryInfo); ok {
					retry = r
				}
			}
			if retry == nil || retry.GetRetryDelay().AsDuration() != 30*time.Second {
				t.Fatalf("retry info %v, want 30s", retry)
			}
			// Another caller, and a caller in the process, are not held back.
			if _, err := e.push(b, fileOf("r3", 1)); err != nil {
				t.Fatal(err)
			}
			if _, err := e.push(context.Background(), fileOf("r4", 1)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Second) // the fake clock of the bubble
			if _, err := e.push(a, fileOf("r2", 1)); err != nil {
				t.Fatalf("after the budget refilled: %v", err)
			}
		})
	})
}
