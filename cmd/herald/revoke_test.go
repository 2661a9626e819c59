package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRevokeCommand: herald revoke takes an admin token minted by herald
// token --admin, revokes a subject (whose tokens the server then refuses),
// lists and lifts revocations, and refuses bad flags and non-admin tokens
// with messages that say what is wrong.
func TestRevokeCommand(t *testing.T) {
	secret := writeSecret(t)
	_, httpAddr, grpcAddr, _ := startServeLog(t, "--auth-hs256-secret-file", secret)
	mint := func(args ...string) string {
		out, err := herald(t, context.Background(), append([]string{"token", "--key", secret}, args...)...).Output()
		if err != nil {
			t.Fatalf("herald token: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	admin := mint("--admin", "--subject", "ops")
	user := mint("--subject", "leaky", "--subscribe", "orders.>")
	subscribe := func() int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/v1/events?topic=orders.eu", nil)
		req.Header.Set("Authorization", "Bearer "+user)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := subscribe(); code != http.StatusOK {
		t.Fatalf("subscribing before the revocation: %d", code)
	}

	wantUsageError(t, runHerald(t, nil, "revoke", "--server", grpcAddr, "--until", "1h"), "--subject and --until are required", "herald revoke")
	wantUsageError(t, runHerald(t, nil, "revoke", "--server", grpcAddr, "--subject", "x", "--until", "tomorrow"), `--until "tomorrow" is neither`, "herald revoke")

	r := runHerald(t, nil, "revoke", "--server", grpcAddr, "--subject", "leaky", "--until", "1h", "--token", user)
	if r.code != exitFailed || !strings.Contains(r.stderr, "admin") {
		t.Errorf("revoke with a non-admin token: exit status %d, stderr %q; want 1 naming the admin grant", r.code, r.stderr)
	}

	r = runHerald(t, nil, "revoke", "--server", grpcAddr, "--subject", "leaky", "--until", "1h", "--token", admin)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "revoked leaky until ") {
		t.Fatalf("revoke: exit status %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if code := subscribe(); code != http.StatusUnauthorized {
		t.Errorf("subscribing after the revocation: %d, want 401", code)
	}
	r = runHerald(t, nil, "revoke", "--server", grpcAddr, "--list", "--token", admin)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "leaky\t") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("revoke --list: exit status %d, stdout %q", r.code, r.stdout)
	}

	r = runHerald(t, nil, "revoke", "--server", grpcAddr, "--subject", "leaky", "--until", "0s", "--token", admin)
	if r.code != exitOK || r.stdout != "lifted the revocation of leaky\n" {
		t.Fatalf("lifting: exit status %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if code := subscribe(); code != http.StatusOK {
		t.Errorf("subscribing after the revocation was lifted: %d, want 200", code)
	}
	if r := runHerald(t, nil, "revoke", "--server", grpcAddr, "--list", "--token", admin); r.stdout != "" {
		t.Errorf("revoke --list after lifting: %q, want nothing", r.stdout)
	}
}

// TestDevOpensTheAdminAPI: herald serve --dev serves the admin API
// without a token, as it serves everything else.
func TestDevOpensTheAdminAPI(t *testing.T) {
	_, httpAddr, _ := startServe(t, "--node-name", "dev-node")
	resp, err := http.Get("http://" + httpAddr + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"name":"dev-node"`) {
		t.Errorf("GET /v1/nodes on a --dev server: %d %s, want 200 naming dev-node", resp.StatusCode, b)
	}
}
