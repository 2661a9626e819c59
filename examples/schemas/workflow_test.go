// Package schemasexample tests the schema owner's workflow that README.md
// in this directory describes, end to end: buf lint and buf breaking gate a
// change, buf build produces the descriptor set, Herald takes it at run
// time, and a page's TypeScript types (protoc-gen-es) parse the events.
package schemasexample

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// buf runs the pinned buf from the repository's tools module.
func buf(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command("go", append([]string{"tool", "-modfile=" + filepath.Join(root, "tools/go.mod"), "buf"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSchemaOwnerWorkflow(t *testing.T) {
	// 1. The gates a schema change passes before it ships.
	if out, err := buf(t, "lint", "."); err != nil {
		t.Fatalf("buf lint: %v\n%s", err, out)
	}
	if out, err := buf(t, "breaking", ".", "--against", "baseline.binpb"); err != nil {
		t.Fatalf("buf breaking against the previous version: %v\n%s", err, out)
	}
	// ... and a breaking change does not pass them.
	broken := t.TempDir()
	src, _ := os.ReadFile("proto/shop/v1/cart.proto")
	_ = os.MkdirAll(filepath.Join(broken, "proto/shop/v1"), 0o755)
	_ = os.WriteFile(filepath.Join(broken, "proto/shop/v1/cart.proto"), []byte(strings.Replace(string(src), "string cart_id = 1;", "int64 cart_id = 1;", 1)), 0o644)
	cfg, _ := os.ReadFile("buf.yaml")
	_ = os.WriteFile(filepath.Join(broken, "buf.yaml"), cfg, 0o644)
	if out, err := buf(t, "breaking", broken, "--against", "baseline.binpb"); err == nil || !strings.Contains(out, "cart_id") {
		t.Fatalf("buf breaking passed a changed field type: %v\n%s", err, out)
	}

	// 2. buf build -o: the descriptor set Herald takes.
	image := filepath.Join(t.TempDir(), "shop.binpb")
	if out, err := buf(t, "build", ".", "-o", image); err != nil {
		t.Fatalf("buf build: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	set := &descriptorpb.FileDescriptorSet{}
	if err := proto.Unmarshal(raw, set); err != nil {
		t.Fatal(err)
	}

	// 3. A running Herald learns the type (what `herald schemas push` does).
	httpURL, conn := startHerald(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := heraldv1.NewSchemaServiceClient(conn).RegisterSchemas(ctx, &heraldv1.RegisterSchemasRequest{Descriptors: set}); err != nil {
		t.Fatalf("push: %v", err)
	}

	// 4. A backend publishes a CartUpdated; a subscriber receives its JSON.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, httpURL+"/v1/events?topic=shop.carts.>", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan gosse.Event, 1)
	go func() {
		for ev, err := range gosse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	body := `{"payload":{"@type":"type.googleapis.com/shop.v1.CartUpdated","cartId":"c-42","items":[{"sku":"KB-01","quantity":2}],"status":"CART_STATUS_OPEN","updatedAt":"2026-11-26T06:00:00Z","totalCents":"25800"}}`
	pr, err := http.Post(httpURL+"/v1/topics/shop.carts.c-42/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	pr.Body.Close()
	if pr.StatusCode != 200 {
		t.Fatalf("publish: %d", pr.StatusCode)
	}
	var ev gosse.Event
	select {
	case ev = <-events:
	case <-ctx.Done():
		t.Fatal("no event")
	}
	if ev.Type != "shop.v1.CartUpdated" {
		t.Fatalf("event type %q", ev.Type)
	}

	// 5. The page's generated TypeScript types parse it.
	checkTypeScript(t, ev.Data)
}

func startHerald(t *testing.T) (string, *grpc.ClientConn) {
	s := heraldtest.Start(t, heraldtest.Options{})
	return s.URL, s.Conn
}

// checkTypeScript installs the page's npm packages, checks that the
// committed TypeScript types are what protoc-gen-es makes of the schemas,
// type-checks the page, and parses data with the generated types.
func checkTypeScript(t *testing.T, data string) {
	if _, err := exec.LookPath("npm"); err != nil {
		if os.Getenv("HERALD_REQUIRE_BROWSER") == "1" || os.Getenv("HERALD_REQUIRE_NODE") == "1" {
			t.Fatal("npm is not installed, and CI requires the TypeScript check")
		}
		t.Skip("SKIPPED LOUDLY: npm is not installed, so the TypeScript half of the schema workflow was not checked")
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = "web"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if _, err := os.Stat("web/node_modules/.bin/protoc-gen-es"); err != nil {
		run("npm", "ci", "--no-audit", "--no-fund")
	}
	gen := t.TempDir()
	if out, err := buf(t, "generate", ".", "--template", `{"version":"v2","plugins":[{"local":"web/node_modules/.bin/protoc-gen-es","out":"`+gen+`","opt":"target=ts"}]}`); err != nil {
		t.Fatalf("protoc-gen-es: %v\n%s", err, out)
	}
	fresh, _ := os.ReadFile(filepath.Join(gen, "shop/v1/cart_pb.ts"))
	committed, _ := os.ReadFile("web/src/gen/shop/v1/cart_pb.ts")
	if string(fresh) != string(committed) || len(fresh) == 0 {
		t.Fatal("web/src/gen is stale: run npm run generate in examples/schemas/web and commit")
	}
	run("node_modules/.bin/tsc", "--noEmit", "-p", ".")
	run("node_modules/.bin/esbuild", "src/cart.ts", "--bundle", "--format=esm", "--platform=node", "--outfile=dist/cart.js", "--log-level=warning")
	var got struct {
		CartID string
		Items  []struct {
			Sku      string
			Quantity int
		}
		Status           int
		TotalCents       string
		TotalIsBigint    bool
		UpdatedAtSeconds string
	}
	out := run("node", "check.mjs", data)
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("check.mjs printed %q: %v", out, err)
	}
	if got.CartID != "c-42" || len(got.Items) != 1 || got.Items[0].Sku != "KB-01" || got.Items[0].Quantity != 2 ||
		got.Status != 1 || got.TotalCents != "25800" || !got.TotalIsBigint || got.UpdatedAtSeconds != "1795672800" {
		t.Fatalf("the TypeScript types parsed %s as %+v", data, got)
	}
}
