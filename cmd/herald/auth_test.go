package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
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

func TestSecureByDefault(t *testing.T) {
	_, httpAddr, grpcAddr, _ := startServeLog(t, "--auth-hs256-secret-file", writeSecret(t), "--public-topics", "monitoring.>")
	// No token: no publish, no private subscription; public topics open.
	out, err := herald(t, context.Background(), "publish", "--server", grpcAddr, "--topic", "orders.eu", "--type", "google.protobuf.Empty").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Unauthenticated") {
		t.Fatalf("publish without a token: %v %s", err, out)
	}
	for query, want := range map[string]int{"topic=orders.eu": 401, "topic=monitoring.eu": 200} {
		resp, err := http.Get("http://" + httpAddr + "/v1/events?" + query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s without a token: %d, want %d", query, resp.StatusCode, want)
		}
	}
}

func TestMintedTokensWork(t *testing.T) {
	secret := writeSecret(t)
	_, httpAddr, grpcAddr, _ := startServeLog(t, "--auth-hs256-secret-file", secret)
	mint := func(args ...string) string {
		out, err := herald(t, context.Background(), append([]string{"token", "--key", secret}, args...)...).Output()
		if err != nil {
			t.Fatalf("herald token: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	pub := mint("--publish", "orders.*", "--ttl", "5m")
	if out, err := herald(t, context.Background(), "publish", "--server", grpcAddr, "--token", pub, "--topic", "orders.eu", "--type", "google.protobuf.Empty").CombinedOutput(); err != nil {
		t.Fatalf("publish with a minted token: %v %s", err, out)
	}
	out, err := herald(t, context.Background(), "publish", "--server", grpcAddr, "--token", pub, "--topic", "chat.a", "--type", "google.protobuf.Empty").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PermissionDenied") {
		t.Fatalf("publish outside the grant: %v %s", err, out)
	}
	sub := mint("--subscribe", "orders.>")
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v1/events?topic=orders.eu", nil)
	req.Header.Set("Authorization", "Bearer "+sub)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("subscribe with a minted token: %d", resp.StatusCode)
	}
	if err := herald(t, context.Background(), "token", "--key", secret, "--publish", "a..b").Run(); err == nil {
		t.Error("herald token accepted a malformed pattern")
	}
}

// TestOldSecretFlagName: --auth-hs256-secret, the name before
// --auth-hs256-secret-file, still works as a flag, a variable and a YAML
// key, with one warning at start.
func TestOldSecretFlagName(t *testing.T) {
	secret := writeSecret(t)
	file := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(file, []byte("auth-hs256-secret: "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := herald(t, context.Background(), "token", "--key", secret, "--publish", ">").Output()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ env, args []string }{
		"flag":     {nil, []string{"--auth-hs256-secret", secret}},
		"variable": {[]string{"HERALD_AUTH_HS256_SECRET=" + secret}, nil},
		"YAML key": {nil, []string{"--config", file}},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--log-format", "json"}, tc.args...)
			cmd := herald(t, context.Background(), args...)
			cmd.Env = append(cmd.Env, tc.env...)
			early, _, grpcAddr, _ := startLogged(t, cmd)
			const warning = "--auth-hs256-secret is deprecated: use --auth-hs256-secret-file"
			if n := strings.Count(early, warning); n != 1 {
				t.Errorf("the deprecation warning was logged %d times before listening, want once:\n%s", n, early)
			}
			out, err := herald(t, context.Background(), "publish", "--server", grpcAddr, "--token", strings.TrimSpace(string(tok)), "--topic", "a", "--type", "google.protobuf.Empty").CombinedOutput()
			if err != nil {
				t.Fatalf("publish with a token signed by the secret: %v %s", err, out)
			}
		})
	}
	// The new name warns of nothing.
	cmd := herald(t, context.Background(), "serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--log-format", "json", "--auth-hs256-secret-file", secret)
	if early, _, _, _ := startLogged(t, cmd); strings.Contains(early, "deprecated") {
		t.Errorf("--auth-hs256-secret-file logged a deprecation:\n%s", early)
	}
}

func TestDevModeStaysOnLoopback(t *testing.T) {
	out, err := herald(t, context.Background(), "serve", "--dev", "--http-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--dev refuses to listen on 0.0.0.0:0") {
		t.Fatalf("--dev on all interfaces: %v %s", err, out)
	}
	for addr, want := range map[string]string{":8080": "127.0.0.1:8080", "localhost:1": "localhost:1", "[::1]:2": "[::1]:2", "127.0.0.2:3": "127.0.0.2:3"} {
		if got, err := devAddr(addr); err != nil || got != want {
			t.Errorf("devAddr(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, addr := range []string{"0.0.0.0:80", "[::]:80", "10.0.0.1:80", "example.com:80"} {
		if _, err := devAddr(addr); err == nil {
			t.Errorf("devAddr(%q) accepted", addr)
		}
	}
}

func writeSecret(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte("a-development-secret-of-32-bytes-or-more\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPublishOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalECPrivateKey(key)
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)

	secret := writeSecret(t)
	_, _, grpcAddr, _ := startServeLog(t, "--auth-hs256-secret-file", secret, "--grpc-tls-cert", certFile, "--grpc-tls-key", keyFile)
	tok, err := herald(t, context.Background(), "token", "--key", secret, "--publish", ">").Output()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"publish", "--server", grpcAddr, "--token", strings.TrimSpace(string(tok)), "--topic", "a", "--type", "google.protobuf.Empty"}
	if out, err := herald(t, context.Background(), append(args, "--tls-ca", certFile)...).CombinedOutput(); err != nil {
		t.Fatalf("publish over TLS: %v %s", err, out)
	}
	if err := herald(t, context.Background(), append(args, "--timeout", "3s")...).Run(); err == nil {
		t.Fatal("plaintext publish to a TLS port succeeded")
	}
}

// forgeHS256 returns a token of claims signed with HS256 by the secret in
// secretFile, whatever alg its header names ("" for none at all).
func forgeHS256(t *testing.T, secretFile, alg string, claims map[string]any) string {
	t.Helper()
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	header := map[string]any{"typ": "JWT"}
	if alg != "" {
		header["alg"] = alg
	}
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	mac := hmac.New(sha256.New, bytes.TrimRight(secret, "\n"))
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestRefusedTokensSayWhy: a refused token gets 401 with an RFC 6750
// challenge naming the problem, on SSE and REST alike.
func TestRefusedTokensSayWhy(t *testing.T) {
	secret := writeSecret(t)
	_, httpAddr, _, _ := startServeLog(t, "--auth-hs256-secret-file", secret)
	now := time.Now()
	grants := map[string]any{"publish": []string{">"}, "subscribe": []string{">"}}
	claims := func(extra map[string]any) map[string]any {
		c := map[string]any{"sub": "test", "exp": now.Add(time.Hour).Unix(), "herald": grants}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	for _, tc := range []struct {
		name, alg string
		claims    map[string]any
		want      string
	}{
		{"alg none", "none", claims(nil), "the token's algorithm none does not match any trusted key"},
		{"alg HS384", "HS384", claims(nil), "the token's algorithm HS384 does not match any trusted key"},
		{"alg HS512", "HS512", claims(nil), "the token's algorithm HS512 does not match any trusted key"},
		{"no alg", "", claims(nil), "the token's algorithm does not match any trusted key: its header has no alg"},
		{"no exp", "HS256", claims(map[string]any{"exp": nil}), "the token has no exp claim ("},
		{"iat in the future", "HS256", claims(map[string]any{"iat": now.Add(time.Hour).Unix()}), "the token is not valid yet: iat is in the future"},
		{"nbf in the future", "HS256", claims(map[string]any{"nbf": now.Add(time.Hour).Unix()}), "the token is not valid yet: nbf is in the future"},
		{"expired", "HS256", claims(map[string]any{"exp": now.Add(-time.Hour).Unix()}), "the token has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := forgeHS256(t, secret, tc.alg, tc.claims)
			sse, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/v1/events?topic=orders.eu", nil)
			rest, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/topics/orders.eu/events", strings.NewReader(`{"payload":{"@type":"type.googleapis.com/google.protobuf.Empty"}}`))
			for _, req := range []*http.Request{sse, rest} {
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				challenge := resp.Header.Get("WWW-Authenticate")
				prefix := `Bearer realm="herald", error="invalid_token", error_description="`
				if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(challenge, prefix) || !strings.Contains(challenge, tc.want) {
					t.Errorf("%s %s: %d, WWW-Authenticate %q; want 401 with a challenge saying %q", req.Method, req.URL.Path, resp.StatusCode, challenge, tc.want)
				}
			}
		})
	}
}

// TestAllowNoExp: --auth-allow-no-exp (here from the environment) lets a
// token without exp in.
func TestAllowNoExp(t *testing.T) {
	secret := writeSecret(t)
	_, httpAddr, _, _ := startServeEnv(t, []string{"HERALD_AUTH_ALLOW_NO_EXP=true"}, "--auth-hs256-secret-file", secret)
	tok := forgeHS256(t, secret, "HS256", map[string]any{"sub": "test", "herald": map[string]any{"subscribe": []string{"orders.>"}}})
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/v1/events?topic=orders.eu", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a token without exp under --auth-allow-no-exp: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestTokenTTLMustBePositive(t *testing.T) {
	out, err := herald(t, context.Background(), "token", "--key", writeSecret(t), "--ttl", "0s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--ttl must be positive") {
		t.Fatalf("herald token --ttl 0s: %v %s", err, out)
	}
}
