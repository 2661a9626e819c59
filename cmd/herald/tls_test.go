package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeTLS runs `herald serve --tls-cert --tls-key`: HTTPS with HTTP/2
// by ALPN on the HTTP listener, and the SSE stream over it. (The e2e tests
// cover browsers over TLS; this covers the flags.)
func TestServeTLS(t *testing.T) {
	certFile, keyFile, pool := writeSelfSigned(t)
	_, httpAddr, grpcAddr := startServe(t, "--tls-cert", certFile, "--tls-key", keyFile)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	t.Cleanup(client.CloseIdleConnections)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+httpAddr+"/v1/events?topic=tls.flags", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("protocol %s, want HTTP/2 negotiated by ALPN", resp.Proto)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%s %q", resp.Status, ct)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	out, err := herald(t, ctx, "publish", "--server", grpcAddr, "--topic", "tls.flags",
		"--type", "google.protobuf.Struct", "--data", `{"orderId":"o-tls"}`).Output()
	if err != nil {
		t.Fatalf("herald publish: %v", err)
	}
	id := strings.TrimSpace(string(out))
	for line := range lines {
		if line == "id: "+id {
			return
		}
	}
	t.Fatalf("the stream over TLS ended without event %s", id)
}

func TestServeTLSFlagErrors(t *testing.T) {
	certFile, keyFile, _ := writeSelfSigned(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", certFile}, "go together"},
		{[]string{"--tls-key", keyFile}, "go together"},
		{[]string{"--tls-cert", keyFile, "--tls-key", keyFile}, "--tls-cert"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		args := append([]string{"serve", "--dev", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, tc.args...)
		out, err := herald(t, ctx, args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("serve %v: %v, %q; want a failure mentioning %q", tc.args, err, out, tc.want)
		}
	}
}

// writeSelfSigned writes a fresh ECDSA P-256 certificate for 127.0.0.1
// and localhost, and its key, as PEM files.
func writeSelfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}
