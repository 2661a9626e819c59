// Package schemasexample tests the schema owner's workflow that README.md
// in this directory describes, end to end: buf lint and buf breaking gate a
// change, buf build produces the descriptor set, Herald takes it at run
// time, a page's TypeScript types (protoc-gen-es) parse the events, and
// the page, opened as the README opens it, shows one in Chromium.
package schemasexample

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/heraldhq/herald/bridge"
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

	// 3. The page, served as the README serves it, and a Herald that lets
	// it subscribe (--cors-origins) learns the type (what `herald schemas
	// push` does).
	page := servePage(t)
	httpURL, conn := startHerald(t, page)
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

	// 6. The page shows the next one, opened at the address npm start
	// printed, pointed at this Herald.
	checkPage(t, page+"/?herald="+httpURL, httpURL+"/v1/topics/shop.carts.c-42/events", body)
}

// startHerald starts a Herald that, like the README's, lets pages of
// origin subscribe.
func startHerald(t *testing.T, origin string) (string, *grpc.ClientConn) {
	var cfg bridge.Config
	if origin != "" {
		cfg.CORSOrigins = []string{origin}
	}
	s := heraldtest.Start(t, heraldtest.Options{Config: cfg})
	return s.URL, s.Conn
}

// needNPM reports whether npm is installed; without it the TypeScript half
// of the workflow is skipped, loudly, unless CI requires it.
func needNPM(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("npm"); err == nil {
		return true
	}
	if os.Getenv("HERALD_REQUIRE_BROWSER") == "1" || os.Getenv("HERALD_REQUIRE_NODE") == "1" {
		t.Fatal("npm is not installed, and CI requires the TypeScript check")
	}
	return false
}

var npmCI sync.Once

// installWeb runs npm ci in web/ when node_modules is missing or older
// than the lockfile.
func installWeb(t *testing.T) {
	t.Helper()
	npmCI.Do(func() {
		lock, err := os.Stat("web/package-lock.json")
		if err != nil {
			t.Fatal(err)
		}
		if installed, err := os.Stat("web/node_modules/.package-lock.json"); err == nil && !installed.ModTime().Before(lock.ModTime()) {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = "web"
		// playwright-core downloads no browser, but make sure: the test
		// drives the system's Chromium.
		cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	})
}

var servedAt = regexp.MustCompile(`Local:\s+(http://\S+?)/?\s*$`)

// servePage runs the README's `npm start` in web/, on a free port instead
// of 8000, and returns the origin it serves the page on; "" without npm.
// esbuild serves until its standard input closes, which the cleanup does.
func servePage(t *testing.T) string {
	t.Helper()
	if !needNPM(t) {
		return ""
	}
	installWeb(t)
	cmd := exec.Command("npm", "start", "--", "--serve=127.0.0.1:0")
	cmd.Dir = "web"
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		w.Close()
		exited <- err
	}()
	var mu sync.Mutex
	var output strings.Builder // what npm and esbuild printed, for failures
	printed := func() string {
		mu.Lock()
		defer mu.Unlock()
		return output.String()
	}
	origin := make(chan string, 1)
	go func() {
		for sc := bufio.NewScanner(r); sc.Scan(); {
			mu.Lock()
			output.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := servedAt.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case origin <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("npm start did not stop when its input closed")
		}
	})
	select {
	case o := <-origin:
		return o
	case err := <-exited:
		t.Fatalf("npm start exited: %v\n%s", err, printed())
	case <-time.After(60 * time.Second):
		t.Fatalf("npm start printed no address within 60 s:\n%s", printed())
	}
	return ""
}

// checkPage opens url in headless Chromium, publishes body to publishURL
// once the page is subscribed, and checks that the page shows the cart.
func checkPage(t *testing.T, url, publishURL, body string) {
	if !needNPM(t) {
		t.Skip("SKIPPED LOUDLY: npm is not installed, so the page was not opened in a browser")
	}
	chrome := os.Getenv("CHROME_PATH")
	if chrome == "" {
		chrome = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chrome); err != nil {
		if os.Getenv("HERALD_REQUIRE_BROWSER") == "1" {
			t.Fatalf("no Chromium at %s, and CI requires the browser check", chrome)
		}
		t.Skipf("SKIPPED LOUDLY: no Chromium at %s (apt-get install chromium, or set CHROME_PATH), so the page was not opened in a browser", chrome)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "check-page.mjs", chrome, url, publishURL, body)
	cmd.Dir = "web"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("check-page.mjs %s: %v\n%s", url, err, stderr.String())
	}
	var got struct{ Cart, State string }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("check-page.mjs printed %q: %v", out, err)
	}
	if want := "c-42: 2 × KB-01 — 258.00 (OPEN)"; got.Cart != want {
		t.Errorf("the page shows %q, want %q", got.Cart, want)
	}
	if want := "subscribed to shop.carts.> on " + strings.SplitN(url, "?herald=", 2)[1]; got.State != want {
		t.Errorf("the page says %q, want %q", got.State, want)
	}
}

// checkTypeScript installs the page's npm packages, checks that the
// committed TypeScript types are what protoc-gen-es makes of the schemas,
// type-checks the page, and parses data with the generated types.
func checkTypeScript(t *testing.T, data string) {
	if !needNPM(t) {
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
	installWeb(t)
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

// The README's commands agree on the page's origin: the address npm start
// serves on (package.json), the one the README says to open, and the one
// it lets subscribe with --cors-origins. TestSchemaOwnerWorkflow serves
// the page the same way, on a free port.
func TestReadmeOpensThePageWhereHeraldAllowsIt(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct{ Scripts map[string]string }
	raw, err := os.ReadFile("web/package.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		t.Fatal(err)
	}
	find := func(what, re, in string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(in)
		if m == nil {
			t.Fatalf("%s: no match for %s", what, re)
		}
		return m[1]
	}
	served := "http://" + find("package.json's start script", `--serve=(\S+)`, pkg.Scripts["start"])
	allowed := find("README.md", "(?m)^herald serve --dev --cors-origins (\\S+)$", string(readme))
	opened := find("README.md", `Open <(http://[^>]+?)/?>`, string(readme))
	if served != allowed || opened != allowed {
		t.Errorf("npm start serves %s, the README opens %s and lets %s subscribe", served, opened, allowed)
	}
	main, err := os.ReadFile("web/src/main.ts")
	if err != nil {
		t.Fatal(err)
	}
	if herald := find("main.ts", `\?\? "(http://[^"]+)"`, string(main)); !strings.Contains(string(readme), "curl -s -X POST "+strings.TrimPrefix(herald, "http://")+"/") {
		t.Errorf("the page subscribes on %s by default, which the README's curl does not publish to", herald)
	}
}
