package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth/jwtauth"
)

// keys are the signing keys of the auth tests, written where the server
// reads them.
type keys struct {
	dir    string
	secret []byte
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
}

func newKeys(t testing.TB) *keys {
	t.Helper()
	k := &keys{dir: t.TempDir(), secret: []byte("an-hs256-secret-of-at-least-32-bytes!!")}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(k.dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("secret", append(k.secret, '\n'))
	for name, pub := range map[string]any{"rsa.pem": &k.rsa.PublicKey, "ec.pem": &k.ec.PublicKey, "ed.pem": k.ed.Public()} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		write(name, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	return k
}

func (k *keys) config() jwtauth.Config {
	return jwtauth.Config{
		HMACSecretFiles: []string{filepath.Join(k.dir, "secret")},
		PublicKeyFiles:  []string{filepath.Join(k.dir, "rsa.pem"), filepath.Join(k.dir, "ec.pem"), filepath.Join(k.dir, "ed.pem")},
		PublicTopics:    []string{"public.>"},
		Leeway:          -1,
	}
}

type claims struct {
	pub, sub []string
	exp      time.Duration // from now; 0: an hour
	subject  string
	admin    bool
}

func (k *keys) sign(t testing.TB, alg jwa.SignatureAlgorithm, key any, c claims) string {
	t.Helper()
	if c.exp == 0 {
		c.exp = time.Hour
	}
	if c.subject == "" {
		c.subject = "test"
	}
	tok, err := jwt.NewBuilder().Subject(c.subject).Expiration(time.Now().Add(c.exp)).
		Claim(jwtauth.ClaimName, jwtauth.Grants{Publish: c.pub, Subscribe: c.sub, Admin: c.admin}).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func (k *keys) hs(t testing.TB, c claims) string { return k.sign(t, jwa.HS256(), k.secret, c) }

func startAuthServer(t testing.TB, k *keys, cfg bridge.Config, mutate func(*jwtauth.Config)) *testServer {
	t.Helper()
	ac := k.config()
	if mutate != nil {
		mutate(&ac)
	}
	a, err := jwtauth.New(context.Background(), ac)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = a
	return startServer(t, serverOpts{cfg: cfg})
}

func withBearer(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func TestEveryWayInChecksTokens(t *testing.T) {
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{AllowQueryToken: true}, nil)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := claims{pub: []string{"chat.rooms.*"}, sub: []string{"chat.rooms.*"}}
	tokens := []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"missing", "", codes.Unauthenticated},
		{"expired", k.hs(t, claims{pub: good.pub, sub: good.sub, exp: -time.Minute}), codes.Unauthenticated},
		{"forged (unknown key)", k.sign(t, jwa.RS256(), other, good), codes.Unauthenticated},
		{"tampered", tamper(k.hs(t, good)), codes.Unauthenticated},
		{"garbage", "not.a.jwt", codes.Unauthenticated},
		{"alg none", noneToken(), codes.Unauthenticated},
		{"insufficient", k.hs(t, claims{pub: []string{"orders.*"}, sub: []string{"orders.*"}}), codes.PermissionDenied},
	}
	allowed := []struct {
		name  string
		token string
	}{
		{"HS256", k.hs(t, good)},
		{"RS256", k.sign(t, jwa.RS256(), k.rsa, good)},
		{"ES256", k.sign(t, jwa.ES256(), k.ec, good)},
		{"EdDSA", k.sign(t, jwa.EdDSA(), k.ed, good)},
	}
	msg := &chatv1.ChatMessage{Text: "secret plans"}
	httpStatus := map[codes.Code]int{codes.Unauthenticated: 401, codes.PermissionDenied: 403}

	// A subscriber with a good token sees only allowed events.
	watch := s.subscribe(t, "topic=chat.rooms.lobby", http.Header{"Authorization": {"Bearer " + k.hs(t, good)}})
	if watch.resp.StatusCode != 200 {
		t.Fatalf("good subscriber refused: %d", watch.resp.StatusCode)
	}

	for _, tc := range tokens {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			// gRPC Publish.
			_, err := s.client.Publish(withBearer(ctxT(t), tc.token), request(t, "chat.rooms.lobby", msg))
			if status.Code(err) != tc.code || strings.Contains(status.Convert(err).Message(), tc.token+"x") {
				t.Errorf("Publish: %v, want %s", err, tc.code)
			}
			// PublishStream: refused at once.
			ps, err := s.client.PublishStream(withBearer(ctxT(t), tc.token))
			if err == nil {
				_ = ps.Send(request(t, "chat.rooms.lobby", msg))
				_, err = ps.Recv()
			}
			if status.Code(err) != tc.code && !(tc.code == codes.PermissionDenied && err == nil) {
				t.Errorf("PublishStream: %v, want %s", err, tc.code)
			}
			// REST publish.
			req, _ := http.NewRequest("POST", s.url+"/v1/topics/chat.rooms.lobby/events", strings.NewReader(`{"payload":{"@type":"type.googleapis.com/chat.v1.ChatMessage","text":"secret plans"}}`))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if resp := do(t, req); resp.StatusCode != httpStatus[tc.code] {
				t.Errorf("REST publish: %d, want %d", resp.StatusCode, httpStatus[tc.code])
			}
			// SSE: header, cookie, query parameter, and a resume.
			for _, way := range []string{"header", "cookie", "query", "resume"} {
				q := "topic=chat.rooms.lobby"
				req, _ := http.NewRequest("GET", "", nil)
				switch {
				case tc.token == "":
				case way == "cookie":
					req.AddCookie(&http.Cookie{Name: "herald_token", Value: tc.token})
				case way == "query":
					q += "&access_token=" + url.QueryEscape(tc.token)
				default:
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				if way == "resume" {
					req.Header.Set("Last-Event-ID", "x-1")
				}
				st := s.subscribe(t, q, req.Header)
				if st.resp.StatusCode != httpStatus[tc.code] {
					t.Errorf("SSE by %s: %d, want %d", way, st.resp.StatusCode, httpStatus[tc.code])
				}
				if tc.code == codes.Unauthenticated && st.resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("SSE by %s: 401 without WWW-Authenticate", way)
				}
				body, _ := io.ReadAll(st.resp.Body)
				if strings.Contains(string(body), "secret plans") || (tc.token != "" && strings.Contains(string(body), tc.token)) {
					t.Errorf("SSE by %s: refusal leaks %q", way, body)
				}
			}
			// gRPC Subscribe.
			sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(withBearer(ctxT(t), tc.token), &heraldv1.SubscribeRequest{Topics: []string{"chat.rooms.lobby"}})
			if err == nil {
				_, err = sub.Recv()
			}
			if status.Code(err) != tc.code {
				t.Errorf("Subscribe: %v, want %s", err, tc.code)
			}
		})
	}
	// Nothing refused got through.
	marker := ""
	for _, tc := range allowed {
		t.Run("allowed/"+tc.name, func(t *testing.T) {
			resp, err := s.client.Publish(withBearer(ctxT(t), tc.token), request(t, "chat.rooms.lobby", &chatv1.ChatMessage{Text: tc.name}))
			if err != nil {
				t.Fatalf("publish with a %s token: %v", tc.name, err)
			}
			marker = resp.GetId()
			if ev := watch.next(t); ev.LastEventID != marker || !strings.Contains(ev.Data, tc.name) {
				t.Fatalf("subscriber got %q %s, want the %s event only (nothing refused may get through)", ev.LastEventID, ev.Data, tc.name)
			}
		})
	}
	// Public topics need no token; everything else does.
	if st := s.subscribe(t, "topic=public.news", nil); st.resp.StatusCode != 200 {
		t.Errorf("public topic: %d", st.resp.StatusCode)
	}
	if st := s.subscribe(t, "topic=public.news&topic=chat.rooms.lobby", nil); st.resp.StatusCode != 401 {
		t.Errorf("public plus private topic without a token: %d, want 401 for the whole subscription", st.resp.StatusCode)
	}
}

func TestPatternsInGrants(t *testing.T) {
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	tok := k.hs(t, claims{pub: []string{"orders.*", "monitoring.>"}, sub: []string{"orders.*", "monitoring.>"}})
	h := http.Header{"Authorization": {"Bearer " + tok}}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"topic=orders.eu", 200},
		{"topic=orders.*", 200},
		{"topic=orders", 403},
		{"topic=orders.eu.north", 403},
		{"topic=orders.>", 403},
		{"topic=monitoring.eu.game-1", 200},
		{"topic=monitoring.*.game-1", 200},
		{"topic=monitoring.>", 200},
		{"topic=monitoring", 403},
		{"topic=>", 403},
		{"topic=orders.eu&topic=chat.rooms.a", 403},
	} {
		st := s.subscribe(t, tc.query, h)
		if st.resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.query, st.resp.StatusCode, tc.want)
		}
	}
	for topic, want := range map[string]codes.Code{"orders.eu": codes.OK, "orders": codes.PermissionDenied, "orders.eu.x": codes.PermissionDenied, "monitoring.a.b.c": codes.OK} {
		_, err := s.client.Publish(withBearer(ctxT(t), tok), request(t, topic, order("o")))
		if status.Code(err) != want {
			t.Errorf("publish to %s: %v, want %s", topic, err, want)
		}
	}
	// One stream, allowed and forbidden topics: per-event answers.
	ps, err := s.client.PublishStream(withBearer(ctxT(t), tok))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"orders.eu", "chat.x", "orders.us"} {
		_ = ps.Send(request(t, topic, order("o")))
	}
	var got []string
	for range 3 {
		r, err := ps.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, codes.Code(r.GetError().GetCode()).String())
	}
	if strings.Join(got, ",") != "OK,PermissionDenied,OK" {
		t.Errorf("stream answers %v", got)
	}
}

func TestExpiryEndsTheStream(t *testing.T) {
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	tok := k.hs(t, claims{sub: []string{"chat.>"}, exp: 1500 * time.Millisecond})
	resp, err := http.Get(s.url + "/v1/events?topic=chat.a&access_token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("query token while not allowed: %d, want 400 (unknown parameter)", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", s.url+"/v1/events?topic=chat.a", nil)
	req.AddCookie(&http.Cookie{Name: "herald_token", Value: tok})
	resp = do(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	done := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(resp.Body) // ends when the server ends the stream
		done <- string(b)
	}()
	select {
	case body := <-done:
		if !strings.Contains(body, "token expired") || !strings.Contains(body, "retry: 0") {
			t.Fatalf("stream ended without telling the client: %q", body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stream still open after its token expired")
	}
	// Reconnecting with the expired token is refused.
	req, _ = http.NewRequest("GET", s.url+"/v1/events?topic=chat.a", nil)
	req.AddCookie(&http.Cookie{Name: "herald_token", Value: tok})
	if resp := do(t, req); resp.StatusCode != 401 {
		t.Fatalf("reconnect with the expired token: %d", resp.StatusCode)
	}
}

func TestLimits(t *testing.T) {
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{
		PublishRate: 1, PublishBurst: 2,
		MaxConnectionsPerIP: 1, MaxConnections: 3,
		MaxTopicsPerSubscription: 2,
		TrustedProxies:           mustPrefixes(t, "127.0.0.1/32"),
	}, func(c *jwtauth.Config) { c.PublicTopics = []string{">"} })
	pubTok := k.hs(t, claims{pub: []string{">"}, subject: "fast-publisher"})
	var err error
	for range 3 {
		_, err = s.client.Publish(withBearer(ctxT(t), pubTok), request(t, "a", order("o")))
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third publish within a second at 1/s, burst 2: %v", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Fatalf("no RetryInfo in %v", status.Convert(err).Details())
	}
	// Over PublishStream the rejected event's answer carries the delay.
	ps, err := s.client.PublishStream(withBearer(ctxT(t), pubTok))
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Send(request(t, "a", order("o"))); err != nil {
		t.Fatal(err)
	}
	resp, err := ps.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetError(); codes.Code(e.GetCode()) != codes.ResourceExhausted || e.GetRetryDelay().AsDuration() <= 0 {
		t.Fatalf("PublishStream over the rate answered %v, want RESOURCE_EXHAUSTED with a retry delay", resp)
	}
	req, _ := http.NewRequest("POST", s.url+"/v1/topics/a/events", strings.NewReader(`{"payload":{"@type":"type.googleapis.com/google.protobuf.Empty"}}`))
	req.Header.Set("Authorization", "Bearer "+pubTok)
	if resp := do(t, req); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("REST over the rate: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another token has its own budget.
	if _, err := s.client.Publish(withBearer(ctxT(t), k.hs(t, claims{pub: []string{">"}, subject: "other"})), request(t, "a", order("o"))); err != nil {
		t.Fatalf("another publisher: %v", err)
	}

	if st := s.subscribe(t, "topic=a&topic=b&topic=c", nil); st.resp.StatusCode != 400 {
		t.Errorf("three topics over a limit of two: %d", st.resp.StatusCode)
	}
	// Per client address, from X-Forwarded-For of the trusted proxy.
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {"203.0.113.9, " + ip}} }
	if st := s.subscribe(t, "topic=a", from("198.51.100.1")); st.resp.StatusCode != 200 {
		t.Fatalf("first stream: %d", st.resp.StatusCode)
	}
	st := s.subscribe(t, "topic=a", from("198.51.100.1"))
	if st.resp.StatusCode != 429 || st.resp.Header.Get("Retry-After") == "" {
		t.Errorf("second stream from one address: %d", st.resp.StatusCode)
	}
	if st := s.subscribe(t, "topic=a", from("198.51.100.2")); st.resp.StatusCode != 200 {
		t.Errorf("stream from another address: %d", st.resp.StatusCode)
	}
	if st := s.subscribe(t, "topic=a", from("198.51.100.3")); st.resp.StatusCode != 200 {
		t.Errorf("third stream in all: %d", st.resp.StatusCode)
	}
	if st := s.subscribe(t, "topic=a", from("198.51.100.4")); st.resp.StatusCode != 429 {
		t.Errorf("fourth stream over a total of three: %d", st.resp.StatusCode)
	}
}

func do(t testing.TB, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = strings.TrimRight(parts[1], "=") + "x"
	return strings.Join(parts, ".")
}

// noneToken is an unsigned token granting everything.
func noneToken() string {
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x","herald":{"publish":[">"],"subscribe":[">"]}}`)) + "."
}

func mustPrefixes(t testing.TB, list ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range list {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}
