package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func TestServeValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"--dev"}, ""},
		{[]string{"--auth-jwks-file", "keys.json", "--grpc-client-cert-topics", "billing=orders.>,invoices.>"}, ""},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--log-format", "xml"}, `--log-format: want text or json, got "xml"`},
		{[]string{"--retention-events", "0"}, "--max-event-bytes, --retention-events and --queue-size must be positive"},
		{[]string{"--heartbeat", "0s"}, "--heartbeat must be positive, got 0s"},
		{[]string{"--shutdown-timeout", "-1s"}, "--shutdown-timeout must be positive"},
		{[]string{"--dev", "--coalesce-window", "0s"}, ""},
		{[]string{"--coalesce-window", "-1ms"}, "--coalesce-window must be between 0 and 1s, got -1ms"},
		{[]string{"--coalesce-window", "2s"}, "--coalesce-window must be between 0 and 1s, got 2s"},
		{[]string{"--tls-cert", "cert.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--broker", "kafka"}, `--broker is "kafka"; want memory, nats or redis`},
		{[]string{"--broker-timeout", "0s"}, "--broker-timeout must be positive"},
		{[]string{"--broker-start-timeout", "-1s"}, "--broker-start-timeout must be 0 (wait forever) or positive"},
		{[]string{"--grpc-tls-key", "key.pem"}, "--grpc-tls-cert and --grpc-tls-key go together"},
		{[]string{"--grpc-client-ca", "ca.pem"}, "--grpc-client-ca needs --grpc-tls-cert and --grpc-tls-key"},
		{[]string{"--trusted-proxies", "proxy.internal"}, `--trusted-proxies "proxy.internal": want an address or a CIDR`},
		{[]string{"--grpc-client-cert-topics", "billing"}, `--grpc-client-cert-topics "billing": want COMMON-NAME=pattern,pattern`},
		{[]string{"--dev", "--http-addr", "0.0.0.0:8080"}, "--dev refuses to listen on 0.0.0.0:8080"},
		{[]string{"--demo", "--grpc-addr", "10.0.0.1:9090"}, "--dev refuses to listen on 10.0.0.1:9090"}, // --demo implies --dev
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
	if _, err := parseServeFlags([]string{"--dev", "extra"}, io.Discard); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("a stray argument: %v", err)
	}
}

func TestServeValidateLimits(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" for valid
	}{
		{[]string{"--dev", "--body-read-timeout", "1s", "--idle-timeout", "5s", "--max-body-memory", "1024", "--max-subscribes-per-conn", "1", "--type-url-prefixes", "example.com/types/"}, ""},
		{[]string{"--dev", "--body-read-timeout", "0s"}, "--body-read-timeout and --idle-timeout must be positive"},
		{[]string{"--dev", "--idle-timeout", "-1s"}, "--body-read-timeout and --idle-timeout must be positive"},
		{[]string{"--dev", "--max-body-memory", "0"}, "--max-body-memory and --max-subscribes-per-conn must be positive"},
		{[]string{"--dev", "--max-subscribes-per-conn", "-1"}, "--max-body-memory and --max-subscribes-per-conn must be positive"},
		{[]string{"--dev", "--type-url-prefixes", "example.com"}, `--type-url-prefixes "example.com": want a prefix ending with a slash`},
		{[]string{"--dev", "--type-url-prefixes", "type.googleapis.com/", "--type-url-prefixes", "/"}, `--type-url-prefixes "/"`},
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

// TestLimitFlagsReachTheServer: each limit flag, given on the command line,
// in the environment or in the YAML file, changes what the server refuses.
func TestLimitFlagsReachTheServer(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.yaml")
	yaml := "type-url-prefixes:\n  - example.com/types/\nmax-subscribes-per-conn: 1\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HERALD_BODY_READ_TIMEOUT=1s", "HERALD_MAX_BODY_MEMORY=2500000"}
	_, httpAddr, grpcAddr, _ := startServeEnv(t, env, "--config", file, "--idle-timeout", "1s", "--max-retained-bytes", "4096")
	publishURL := "http://" + httpAddr + "/v1/topics/orders.eu/events"
	// The server closes connections idle for a second (--idle-timeout 1s):
	// a pooled keep-alive connection could be closed just as a request
	// reuses it, and a POST is not retried. One connection per request.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	// post sends a publish's head announcing length bytes of body, and
	// part of the body, and returns the answer.
	post := func(t *testing.T, length int, part string) (*http.Response, string) {
		t.Helper()
		conn, err := net.Dial("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := fmt.Fprintf(conn, "POST /v1/topics/orders.eu/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", length, part); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}

	t.Run("body-read-timeout", func(t *testing.T) {
		// A small body that never arrives whole (under the 256 KiB that
		// net/http would drain after the answer, with no deadline, if the
		// server let it).
		resp, body := post(t, 1000, `{"payload"`)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "did not arrive within 1s") {
			t.Fatalf("%d %s, want 400 saying the body did not arrive within 1s", resp.StatusCode, body)
		}
	})

	t.Run("max-retained-bytes", func(t *testing.T) {
		// Three events of about 2 KiB into 4 KiB of history: the oldest go.
		text := strings.Repeat("x", 2000)
		for range 3 {
			resp, err := client.Post("http://"+httpAddr+"/v1/topics/cap.t/events", "application/json",
				strings.NewReader(`{"payload":{"@type":"example.com/types/google.protobuf.StringValue","value":"`+text+`"}}`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("publish: %d %s", resp.StatusCode, body)
			}
		}
		resp, err := client.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(metrics), "herald_broker_evicted_events_total 2") {
			t.Fatalf("after 6 KB into a 4 KB history, /metrics lacks herald_broker_evicted_events_total 2")
		}
	})

	t.Run("idle-timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// The server closes the idle keep-alive connection: a read ends
		// with EOF, long before the deadline.
		if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("reading an idle keep-alive connection: %v, want EOF as the server closes it", err)
		}
	})

	t.Run("max-body-memory", func(t *testing.T) {
		// Under the body size limit (about 3 MiB), over the memory for
		// bodies: refused before any of it is read.
		resp, _ := post(t, 3_000_000, "")
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("a body over --max-body-memory: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})

	t.Run("type-url-prefixes", func(t *testing.T) {
		// The YAML's prefix replaces the default, not adds to it.
		for prefix, want := range map[string]int{"example.com/types/": http.StatusOK, bridge.DefaultTypeURLPrefix: http.StatusBadRequest} {
			resp, err := client.Post(publishURL, "application/json", strings.NewReader(`{"payload":{"@type":"`+prefix+`google.protobuf.Empty"}}`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("a payload with the type URL prefix %s: %d %s, want %d", prefix, resp.StatusCode, body, want)
			}
		}
	})

	t.Run("max-subscribes-per-conn", func(t *testing.T) {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		client := heraldv1.NewSubscriberServiceClient(conn)
		first, err := client.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"orders.eu"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := first.Header(); err != nil { // the headers come once it is subscribed
			t.Fatal(err)
		}
		second, err := client.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"orders.eu"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := second.Recv(); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a second Subscribe on the connection with --max-subscribes-per-conn 1: %v, want RESOURCE_EXHAUSTED", err)
		}
	})
}
