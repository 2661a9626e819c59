package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestTailGivesUpWhenWaitingCannotHelp: tail exits with status 1 and says
// what to change when no retry could succeed (it used to retry forever).
func TestTailGivesUpWhenWaitingCannotHelp(t *testing.T) {
	certFile, keyFile, _ := writeSelfSigned(t)
	_, tlsHTTP, _ := startServe(t, "--tls-cert", certFile, "--tls-key", keyFile)
	_, plainHTTP, plainGRPC := startServe(t)
	secret := writeSecret(t)
	_, authHTTP, _, _ := startServeLog(t, "--auth-hs256-secret-file", secret)
	notSSE := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html></html>")
	}))
	defer notSSE.Close()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a TLS server without --tls", []string{"--url", "http://" + tlsHTTP}, "the server speaks TLS: add --tls"},
		{"a certificate not trusted", []string{"--url", "https://" + tlsHTTP}, "give the CA that signed it with --tls-ca"},
		{"TLS to a plaintext server", []string{"--tls", "--url", "http://" + plainHTTP}, "does not speak TLS: drop --tls"},
		{"the gRPC port", []string{"--url", "http://" + plainGRPC}, "is it Herald's gRPC port?"},
		{"a bad token", []string{"--url", "http://" + authHTTP, "--token", "not-a-token"}, "401 Unauthorized"},
		{"no token for a private topic", []string{"--url", "http://" + authHTTP}, "401 Unauthorized"},
		{"not an event stream", []string{"--url", notSSE.URL}, `answered with "text/html", not an event stream`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runHerald(t, nil, append([]string{"tail", "--topic", "orders.>"}, tc.args...)...)
			if r.code != exitFailed || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "reconnecting") {
				t.Fatalf("exit status %d, stderr:\n%s\nwant status 1, no retry, and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

// tailLines starts herald tail with args and returns its stdout and
// stderr lines; the test's cleanup stops it.
func tailLines(t *testing.T, args ...string) (stdout, stderr <-chan string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := herald(t, ctx, append([]string{"tail"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	lines := func(r io.Reader) <-chan string {
		c := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				c <- sc.Text()
			}
			close(c)
		}()
		return c
	}
	return lines(out), lines(errOut)
}

// publishUntilTailed publishes to topic until tail prints an event, and
// returns that line.
func publishUntilTailed(t *testing.T, tailed <-chan string, topic string, publishArgs ...string) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		args := append([]string{"publish", "--topic", topic, "--type", "google.protobuf.Struct", "--data", `{"n":1}`}, publishArgs...)
		if r := runHerald(t, nil, args...); r.code != exitOK {
			t.Fatalf("herald publish: exit status %d: %s", r.code, r.stderr)
		}
		select {
		case line, ok := <-tailed:
			if !ok {
				t.Fatal("herald tail ended")
			}
			return line
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("herald tail printed nothing")
		}
	}
}

// TestTailRetriesUntilTheServerStarts: a refused connection is worth
// retrying; tail says so on stderr and follows the server once it is up.
func TestTailRetriesUntilTheServerStarts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tailed, notes := tailLines(t, "--url", "http://"+addr, "--topic", "late.>")
	deadline := time.After(20 * time.Second)
	for refused := false; !refused; {
		select {
		case note, ok := <-notes:
			if !ok {
				t.Fatal("herald tail ended")
			}
			refused = strings.Contains(note, "connection refused") && strings.Contains(note, "reconnecting in")
		case <-deadline:
			t.Fatal("herald tail said nothing of the refused connection")
		}
	}
	_, _, grpcAddr := startServe(t, "--http-addr", addr)
	line := publishUntilTailed(t, tailed, "late.start", "--server", grpcAddr)
	if f := strings.SplitN(line, " ", 3); len(f) != 3 || f[1] != "google.protobuf.Struct" || f[2] != `{"n":1}` {
		t.Fatalf("tail printed %q", line)
	}
}

// TestTailOverTLSWithAToken: --tls-ca and --token take tail to a server
// that checks both.
func TestTailOverTLSWithAToken(t *testing.T) {
	certFile, keyFile, _ := writeSelfSigned(t)
	secret := writeSecret(t)
	_, httpAddr, grpcAddr, _ := startServeLog(t, "--auth-hs256-secret-file", secret, "--tls-cert", certFile, "--tls-key", keyFile)
	mint := func(grant string) string {
		r := runHerald(t, nil, "token", "--key", secret, grant, "secure.>")
		if r.code != exitOK {
			t.Fatalf("herald token: %s", r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	// --tls makes the http:// URL https://.
	tailed, _ := tailLines(t, "--url", "http://"+httpAddr, "--tls", "--tls-ca", certFile, "--token", mint("--subscribe"), "--topic", "secure.>")
	line := publishUntilTailed(t, tailed, "secure.a", "--server", grpcAddr, "--token", mint("--publish"))
	if !strings.Contains(line, `google.protobuf.Struct {"n":1}`) {
		t.Fatalf("tail printed %q", line)
	}
}
