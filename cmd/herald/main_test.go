package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/demo"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// The test binary doubles as the herald binary: with HERALD_TEST_MAIN set
// it runs main, so the tests below run real herald processes.
func TestMain(m *testing.M) {
	if os.Getenv("HERALD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func herald(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	// Under -race a process sleeps a second before it exits, so that
	// goroutines still running may report races (GORACE atexit_sleep_ms).
	// These tests start a few hundred processes; the server's goroutines
	// are raced by the in-process tests (bridge, e2e), which do not exit.
	cmd.Env = append(os.Environ(), "HERALD_TEST_MAIN=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// startServe runs `herald serve` (in development mode unless extra sets
// up tokens) on 127.0.0.1:0 and returns the process and its addresses.
func startServe(t *testing.T, extra ...string) (cmd *exec.Cmd, httpAddr, grpcAddr string) {
	t.Helper()
	cmd, httpAddr, grpcAddr, _ = startServeLog(t, extra...)
	return cmd, httpAddr, grpcAddr
}

// startServeLog runs `herald serve` on 127.0.0.1:0, in development mode
// unless extra sets up tokens, and returns the process, its addresses, and
// its later log lines.
func startServeLog(t *testing.T, extra ...string) (cmd *exec.Cmd, httpAddr, grpcAddr string, logs <-chan string) {
	t.Helper()
	return startServeEnv(t, nil, extra...)
}

// startServeEnv is startServeLog with HERALD_* variables set in env.
func startServeEnv(t *testing.T, env []string, extra ...string) (cmd *exec.Cmd, httpAddr, grpcAddr string, logs <-chan string) {
	t.Helper()
	args := append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--log-format", "json"}, extra...)
	if !slices.Contains(extra, "--auth-hs256-secret-file") && !slices.Contains(extra, "--auth-hs256-secret") {
		args = append(args, "--dev")
	}
	cmd = herald(t, context.Background(), args...)
	cmd.Env = append(cmd.Env, env...)
	_, httpAddr, grpcAddr, logs = startLogged(t, cmd)
	return cmd, httpAddr, grpcAddr, logs
}

// startLogged starts cmd, a `herald serve --log-format json`, and waits
// for its "herald listening" line. It returns the log lines before that
// line, the addresses, and the later lines; the test's cleanup kills it.
func startLogged(t *testing.T, cmd *exec.Cmd) (early, httpAddr, grpcAddr string, logs <-chan string) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	var before strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var rec struct{ Msg, HTTP, GRPC string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "herald listening" {
			go func() {
				for sc.Scan() {
					select {
					case lines <- sc.Text():
					default:
					}
				}
			}()
			return before.String(), rec.HTTP, rec.GRPC, lines
		}
		before.WriteString(sc.Text() + "\n")
	}
	t.Fatalf("herald serve exited before listening:\n%s", before.String())
	return
}

// writeExamples writes the example schemas (those herald serve --demo
// knows) as a descriptor set file, for --descriptors.
func writeExamples(t *testing.T) string {
	t.Helper()
	return schematest.WriteSet(t, t.TempDir(), "examples.binpb", schema.DescriptorSet(demo.Files()...))
}

func TestServePublishTail(t *testing.T) {
	srv, httpAddr, grpcAddr := startServe(t, "--descriptors", writeExamples(t))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tail := herald(t, ctx, "tail", "--url", "http://"+httpAddr, "--topic", "orders.>")
	out, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = tail.Wait() }()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	// tail may connect after the first publish: publish until it prints.
	var id string
	deadline := time.After(20 * time.Second)
	for {
		pub := herald(t, context.Background(), "publish", "--server", grpcAddr, "--topic", "orders.eu",
			"--type", "orders.v1.OrderPlaced", "--data", `{"orderId":"o-1","customer":"Zoë","totalCents":"4200","currency":"EUR"}`)
		b, err := pub.Output()
		if err != nil {
			t.Fatalf("herald publish: %v", err)
		}
		id = strings.TrimSpace(string(b))
		select {
		case line := <-lines:
			fields := strings.SplitN(line, " ", 3)
			if len(fields) != 3 || fields[1] != "orders.v1.OrderPlaced" || !strings.Contains(fields[2], `"customer":"Zoë"`) {
				t.Fatalf("tail printed %q", line)
			}
			if fields[0] > id && len(fields[0]) >= len(id) {
				t.Fatalf("tail printed id %q, after the last published %q", fields[0], id)
			}
		case <-time.After(200 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("herald tail printed nothing")
		}
		break
	}

	// SIGTERM: a clean exit, with the stream told to go.
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("herald serve exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("herald serve still running 15s after SIGTERM")
	}
}

func TestPublishReportsServerErrors(t *testing.T) {
	_, _, grpcAddr := startServe(t, "--max-event-bytes", "100")
	pub := herald(t, context.Background(), "publish", "--server", grpcAddr, "--topic", "chat.rooms.a",
		"--type", "google.protobuf.Struct", "--data", `{"text":"`+strings.Repeat("x", 200)+`"}`)
	b, err := pub.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "InvalidArgument") || !strings.Contains(string(b), "limit of 100 bytes") {
		t.Fatalf("publish of an oversized event: %v, %s", err, b)
	}
	pub = herald(t, context.Background(), "publish", "--server", grpcAddr, "--topic", "a", "--type", "nope.v1.Nothing")
	if b, err := pub.CombinedOutput(); err == nil || !strings.Contains(string(b), `"nope.v1.Nothing" is not a known message type`) {
		t.Fatalf("publish of an unknown type: %v, %s", err, b)
	}
}

func TestConfigFileAndEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(file, []byte("http-addr: 127.0.0.1:0\nretention-events: 5\nlog-level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file says warn; the environment overrides it with info, so the
	// start-up line (info) must appear.
	cmd := herald(t, context.Background(), "serve", "--dev", "--config", file, "--grpc-addr", "127.0.0.1:0", "--log-format", "json")
	cmd.Env = append(cmd.Env, "HERALD_LOG_LEVEL=info")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "herald listening") {
			return
		}
	}
	t.Fatal("no start-up line: the environment did not override the file")
}

func TestRepeatableFlagFromTheEnvironment(t *testing.T) {
	_, httpAddr, _, _ := startServeEnv(t, []string{"HERALD_CORS_ORIGINS=https://a.example, https://b.example"})
	for origin, allowed := range map[string]bool{"https://a.example": true, "https://b.example": true, "https://a.example,https://b.example": false} {
		req, _ := http.NewRequest(http.MethodOptions, "http://"+httpAddr+"/v1/events?topic=a", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); (got == origin) != allowed {
			t.Errorf("preflight from %s: Access-Control-Allow-Origin %q, want allowed %v", origin, got, allowed)
		}
	}
}

func TestRegroup(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"billing=orders.>", "invoices.>", "shop=carts.*"}, []string{"billing=orders.>,invoices.>", "shop=carts.*"}},
		{[]string{"k=a", "b", "c=d"}, []string{"k=a,b", "c=d"}},
		{[]string{"stray", "k=v"}, []string{"stray", "k=v"}}, // refused by the flag's own check
	} {
		if got := regroup(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("regroup(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	for _, sub := range []string{"serve", "publish", "tail"} {
		b, _ := herald(t, context.Background(), sub, "--help").CombinedOutput()
		help := string(b)
		for _, want := range map[string][]string{
			"serve":   {"--http-addr", "HERALD_HTTP_ADDR", "--grpc-addr", "--retention-events", "--heartbeat", "--shutdown-timeout", "--demo", "--config", "--auth-hs256-secret-file", "HERALD_AUTH_HS256_SECRET_FILE"},
			"publish": {"--server", "--topic", "--type", "--data", "--idempotency-key", "HERALD_SERVER"},
			"tail":    {"--url", "--topic", "--last-event-id"},
		}[sub] {
			if !strings.Contains(help, want) {
				t.Errorf("herald %s --help lacks %s", sub, want)
			}
		}
	}
	if err := herald(t, context.Background(), "frobnicate").Run(); err == nil {
		t.Error("an unknown command exited 0")
	}
}
