package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// startListening runs `herald serve --dev` on 127.0.0.1:0 with extra and
// returns the fields of its "herald listening" line, and the lines before.
func startListening(t *testing.T, extra ...string) (fields map[string]any, early string) {
	t.Helper()
	args := append([]string{"serve", "--dev", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--log-format", "json"}, extra...)
	cmd := herald(t, context.Background(), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var before strings.Builder
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		var rec map[string]any
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec["msg"] == "herald listening" {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return rec, before.String()
		}
		before.WriteString(lines.Text() + "\n")
	}
	t.Fatalf("herald serve exited before listening:\n%s", before.String())
	return nil, ""
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServeDebugAddr(t *testing.T) {
	fields, early := startListening(t, "--debug-addr", "127.0.0.1:0")
	debugAddr, _ := fields["debug"].(string)
	httpAddr, _ := fields["http"].(string)
	if debugAddr == "" || httpAddr == "" {
		t.Fatalf("want the debug and HTTP addresses in the herald listening line; got %v", fields)
	}
	// herald-bench reads the debug address from a line of its own.
	if !strings.Contains(early, `"msg":"debug listening","addr":"`+debugAddr+`"`) {
		t.Errorf("no debug listening line before herald listening:\n%s", early)
	}
	for _, tc := range []struct {
		url, want string
		status    int
	}{
		{"http://" + debugAddr + "/debug/pprof/", "goroutine", http.StatusOK},
		{"http://" + debugAddr + "/debug/pprof/goroutine?debug=1", "goroutine", http.StatusOK},
		{"http://" + debugAddr + "/metrics", "herald_subscribers", http.StatusOK},
		{"http://" + httpAddr + "/debug/pprof/", "", http.StatusNotFound}, // never on the public port
	} {
		status, body := get(t, tc.url)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %.200s; want %d with %q", tc.url, status, body, tc.status, tc.want)
		}
	}
}

// TestMetricsAddr: --metrics-addr serves /metrics alone;
// --public-metrics=false leaves it off the public port, which serves it by
// default.
func TestMetricsAddr(t *testing.T) {
	fields, _ := startListening(t, "--metrics-addr", "127.0.0.1:0", "--public-metrics=false")
	metricsAddr, _ := fields["metrics"].(string)
	httpAddr, _ := fields["http"].(string)
	if metricsAddr == "" || httpAddr == "" {
		t.Fatalf("want the metrics and HTTP addresses in the herald listening line; got %v", fields)
	}
	for _, tc := range []struct {
		url, want string
		status    int
	}{
		{"http://" + metricsAddr + "/metrics", "herald_subscribers", http.StatusOK},
		{"http://" + metricsAddr + "/debug/pprof/", "", http.StatusNotFound},
		{"http://" + httpAddr + "/metrics", "", http.StatusNotFound},
		{"http://" + httpAddr + "/healthz", "ok", http.StatusOK},
	} {
		status, body := get(t, tc.url)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %.200s; want %d with %q", tc.url, status, body, tc.status, tc.want)
		}
	}

	fields, _ = startListening(t)
	if _, ok := fields["metrics"]; ok {
		t.Errorf("a metrics address logged without --metrics-addr: %v", fields)
	}
	if status, body := get(t, "http://"+fields["http"].(string)+"/metrics"); status != http.StatusOK || !strings.Contains(body, "herald_subscribers") {
		t.Errorf("GET /metrics on the public port by default: %d %.200s", status, body)
	}
}

func TestServeValidateOps(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"--debug-addr", "127.0.0.1:6060"}, ""},
		{[]string{"--debug-addr", "[::1]:6060"}, ""},
		{[]string{"--debug-addr", "localhost:6060"}, ""},
		{[]string{"--debug-addr", ":6060"}, "--debug-addr :6060 is not a loopback address"},
		{[]string{"--debug-addr", "0.0.0.0:6060", "--debug-addr-public"}, ""},
		{[]string{"--debug-addr", "6060"}, `--debug-addr "6060"`},
		{[]string{"--dev", "--debug-addr", ":6060"}, ""}, // development mode moves it to 127.0.0.1
		{[]string{"--dev", "--debug-addr", "0.0.0.0:6060", "--debug-addr-public"}, "--dev refuses to listen on 0.0.0.0:6060"},
		{[]string{"--dev", "--metrics-addr", "0.0.0.0:9100"}, "--dev refuses to listen on 0.0.0.0:9100"},
		{[]string{"--metrics-addr", "0.0.0.0:9100", "--public-metrics=false"}, ""},
	} {
		c, err := parseServeFlags(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		err = c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want valid", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
}

// TestDebugAddrStaysPrivate: --debug-addr refuses an address that is not
// loopback, however it is given, unless --debug-addr-public. The override
// is shown with an address this machine does not have (TEST-NET-1): it
// gets as far as listening, where it fails, so that no test listens on a
// public interface.
func TestDebugAddrStaysPrivate(t *testing.T) {
	const refusal = "is not a loopback address"
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no host", nil, []string{"--debug-addr", ":6060"}, "--debug-addr :6060 " + refusal},
		{"every interface", nil, []string{"--debug-addr", "0.0.0.0:6060"}, "--debug-addr 0.0.0.0:6060 " + refusal},
		{"from the environment", []string{"HERALD_DEBUG_ADDR=[::]:6060"}, nil, "--debug-addr [::]:6060 " + refusal},
		{"a host name", nil, []string{"--debug-addr", "example.com:6060"}, "--debug-addr example.com:6060 " + refusal},
		{"overridden", nil, []string{"--debug-addr", "192.0.2.1:0", "--debug-addr-public"}, "listening for --debug-addr: "},
		{"overridden from the environment", []string{"HERALD_DEBUG_ADDR_PUBLIC=true"}, []string{"--debug-addr", "192.0.2.1:0"}, "listening for --debug-addr: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, tc.args...)
			cmd := herald(t, context.Background(), args...)
			cmd.Env = append(cmd.Env, tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("herald %s: %v, want an error saying %q:\n%s", strings.Join(args, " "), err, tc.want, out)
			}
			if strings.HasPrefix(tc.want, "listening") && strings.Contains(string(out), refusal) {
				t.Fatalf("refused despite --debug-addr-public:\n%s", out)
			}
		})
	}
}
