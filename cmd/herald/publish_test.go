package main

import (
	"strings"
	"testing"
)

// TestDuplicatePublishPrintsOnlyTheID: a retry with the same idempotency
// key prints the id on stdout, as the first publish did, so that
// ID=$(herald publish ...) holds the id alone; the note goes to stderr.
func TestDuplicatePublishPrintsOnlyTheID(t *testing.T) {
	_, _, grpcAddr := startServe(t)
	args := []string{"publish", "--server", grpcAddr, "--topic", "orders.eu", "--type", "google.protobuf.Struct", "--data", `{"n":1}`, "--idempotency-key", "order-1"}
	first := runHerald(t, nil, args...)
	if first.code != exitOK || first.stderr != "" {
		t.Fatalf("first publish: exit status %d, stderr %q", first.code, first.stderr)
	}
	again := runHerald(t, nil, args...)
	if again.code != exitOK || again.stdout != first.stdout || strings.Count(again.stdout, "\n") != 1 {
		t.Fatalf("the retry: exit status %d, stdout %q; want 0 and the first publish's %q", again.code, again.stdout, first.stdout)
	}
	if !strings.Contains(again.stderr, "duplicate: "+strings.TrimSpace(first.stdout)) {
		t.Fatalf("the retry's stderr %q does not say it is a duplicate", again.stderr)
	}
}

// TestPublishNamesTheTLSMismatch: a plaintext publish to a TLS port, or
// the reverse, says which flag to change (gRPC says only "error reading
// server preface: EOF", or that a handshake failed).
func TestPublishNamesTheTLSMismatch(t *testing.T) {
	certFile, keyFile, _ := writeSelfSigned(t)
	_, _, tlsGRPC := startServe(t, "--grpc-tls-cert", certFile, "--grpc-tls-key", keyFile)
	_, plainHTTP, plainGRPC := startServe(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plaintext to TLS", []string{"--server", tlsGRPC}, "the server speaks TLS: add --tls"},
		{"plaintext to TLS, a type asked of the server", []string{"--server", tlsGRPC, "--type", "shop.v1.Cart"}, "the server speaks TLS: add --tls"},
		{"TLS to plaintext", []string{"--server", plainGRPC, "--tls-ca", certFile}, "the server does not speak TLS: drop --tls"},
		{"the HTTP port", []string{"--server", plainHTTP}, "is --server Herald's gRPC address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"publish", "--topic", "a", "--type", "google.protobuf.Empty", "--timeout", "20s"}, tc.args...)
			r := runHerald(t, nil, args...)
			if r.code != exitFailed || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit status %d, stderr:\n%s\nwant 1 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
	r := runHerald(t, nil, "publish", "--server", tlsGRPC, "--tls-ca", certFile, "--topic", "a", "--type", "google.protobuf.Empty")
	if r.code != exitOK {
		t.Fatalf("publish over TLS: exit status %d: %s", r.code, r.stderr)
	}
}
