package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
)

// runHealth runs herald health with args and returns its exit status,
// stdout and stderr.
func runHealth(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := herald(t, context.Background(), append([]string{"health"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatal(err)
	return 0, "", ""
}

// TestHealth runs herald health against real nodes: a ready one (plain and
// TLS), one waiting for its broker (alive, not ready) and none.
func TestHealth(t *testing.T) {
	certFile, keyFile, _ := writeSelfSigned(t)
	_, plainAddr, _ := startServe(t)
	_, tlsAddr, _ := startServe(t, "--tls-cert", certFile, "--tls-key", keyFile)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := ln.Addr().String()
	ln.Close()
	waitingAddr, _, _ := startWaiting(t, herald(t, context.Background(), "serve", "--dev", "--http-addr", "127.0.0.1:0",
		"--grpc-addr", "127.0.0.1:0", "--log-format", "json", "--broker", "redis", "--redis-url", "redis://"+nowhere))
	waitingTLSAddr, _, _ := startWaiting(t, herald(t, context.Background(), "serve", "--dev", "--http-addr", "127.0.0.1:0",
		"--grpc-addr", "127.0.0.1:0", "--log-format", "json", "--broker", "nats", "--nats-url", "nats://"+nowhere,
		"--tls-cert", certFile, "--tls-key", keyFile))
	_, port, _ := net.SplitHostPort(plainAddr)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stdout when code is 0, else in stderr
	}{
		{"ready", []string{"--http-addr", plainAddr}, 0, "/readyz: ready"},
		{"every interface", []string{"--http-addr", ":" + port}, 0, "http://127.0.0.1:" + port + "/readyz: ready"},
		{"alive", []string{"--http-addr", plainAddr, "--live"}, 0, "/healthz: ok"},
		{"tls", []string{"--http-addr", tlsAddr, "--tls-ca", certFile}, 0, "https://" + tlsAddr + "/readyz: ready"},
		{"tls untrusted", []string{"--http-addr", tlsAddr, "--tls"}, 1, "certificate is not trusted"},
		{"tls wrong name", []string{"--http-addr", tlsAddr, "--tls-ca", certFile, "--tls-server-name", "herald.example.com"}, 1, "certificate is not trusted"},
		{"tls missing", []string{"--http-addr", tlsAddr}, 1, "the node speaks TLS: add --tls"},
		{"tls on plain", []string{"--http-addr", plainAddr, "--tls"}, 1, "the node does not speak TLS"},
		{"waiting for the broker", []string{"--http-addr", waitingAddr}, 1, "503 Service Unavailable: not ready: waiting for the broker (redis)"},
		{"waiting for the broker, alive", []string{"--http-addr", waitingAddr, "--live"}, 0, "/healthz: ok"},
		{"waiting for the broker, over TLS", []string{"--http-addr", waitingTLSAddr, "--tls-ca", certFile}, 1, "503 Service Unavailable: not ready: waiting for the broker (nats)"},
		{"waiting for the broker over TLS, alive", []string{"--http-addr", waitingTLSAddr, "--tls-ca", certFile, "--live"}, 0, "https://" + waitingTLSAddr + "/healthz: ok"},
		{"no node", []string{"--http-addr", nowhere}, 1, "connection refused"},
		{"bad address", []string{"--http-addr", "8080"}, 2, `--http-addr "8080": want host:port or :port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runHealth(t, tc.args...)
			out := stdout
			if tc.code != 0 {
				out = stderr
			}
			if code != tc.code || !strings.Contains(out, tc.want) || strings.Count(strings.TrimSpace(out), "\n") > 1 {
				t.Errorf("herald health %v: exit %d, stdout %q, stderr %q; want exit %d and a line with %q", tc.args, code, stdout, stderr, tc.code, tc.want)
			}
		})
	}

	// The environment sets the address, as for serve.
	cmd := herald(t, context.Background(), "health")
	cmd.Env = append(cmd.Env, "HERALD_HTTP_ADDR="+plainAddr)
	if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), plainAddr+"/readyz: ready") {
		t.Errorf("herald health with HERALD_HTTP_ADDR: %v %q", err, out)
	}
}
