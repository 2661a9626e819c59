package jwtauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/auth/jwtauth"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func newAuth(t testing.TB) *jwtauth.Authenticator {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := jwtauth.New(context.Background(), jwtauth.Config{HMACSecretFiles: []string{f}, Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sign(t testing.TB, claim any, exp time.Duration) string {
	t.Helper()
	b := jwt.NewBuilder().Subject("s").Expiration(time.Now().Add(exp))
	if claim != nil {
		b = b.Claim(jwtauth.ClaimName, claim)
	}
	tok, _ := b.Build()
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), secret))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func TestClaims(t *testing.T) {
	a := newAuth(t)
	cases := []struct {
		name  string
		token string
		want  string // "" for success
	}{
		{"grants", sign(t, jwtauth.Grants{Publish: []string{"a.*"}, Subscribe: []string{"b.>"}}, time.Hour), ""},
		{"no claim", sign(t, nil, time.Hour), ""},
		{"bad pattern", sign(t, jwtauth.Grants{Publish: []string{"a.>.b"}}, time.Hour), "publish claim"},
		{"null claim", sign(t, json.RawMessage("null"), time.Hour), ""},
		{"claim not an object", sign(t, "everything", time.Hour), "not an object"},
		{"claim a list", sign(t, []string{"orders.>"}, time.Hour), "not an object"},
		{"publish not a list", sign(t, map[string]any{"publish": "orders.>"}, time.Hour), "not an object"},
		{"expired", sign(t, jwtauth.Grants{}, -time.Second), "expired"},
		{"garbage", "a.b.c", "not a well-formed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			perms, err := a.Authenticate(context.Background(), auth.Credentials{Token: tc.token})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !perms.Expires.After(time.Now()) || perms.RateKey != "sub:s" {
					t.Fatalf("perms %+v", perms)
				}
				if tc.name == "grants" && (len(perms.Publish) != 1 || perms.Publish[0].String() != "a.*" || len(perms.Subscribe) != 1) {
					t.Fatalf("grants not read from the claim: %+v", perms)
				}
				return
			}
			if !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want unauthenticated mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Fatal("the error echoes the token")
			}
		})
	}
}

func TestKeyFilesAreChecked(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	_ = os.WriteFile(short, []byte("too short"), 0o600)
	if _, err := jwtauth.New(context.Background(), jwtauth.Config{HMACSecretFiles: []string{short}}); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short secret: %v", err)
	}
	notPEM := filepath.Join(dir, "key.pem")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o600)
	if _, err := jwtauth.New(context.Background(), jwtauth.Config{PublicKeyFiles: []string{notPEM}}); err == nil || !strings.Contains(err.Error(), "not a PEM public key") {
		t.Errorf("not PEM: %v", err)
	}
	if _, err := jwtauth.New(context.Background(), jwtauth.Config{PublicTopics: []string{"a..b"}}); err == nil {
		t.Error("bad public topic accepted")
	}
}

// FuzzAuthenticate: no token but a correctly signed one is accepted, and
// nothing panics.
func FuzzAuthenticate(f *testing.F) {
	a := newAuth(f)
	good := sign(f, jwtauth.Grants{Publish: []string{">"}}, time.Hour)
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("Bearer x.y.z")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		perms, err := a.Authenticate(context.Background(), auth.Credentials{Token: token})
		if token == good || token == "" {
			return
		}
		if err == nil {
			// Only a differently encoded copy of a valid signature may pass.
			if len(perms.Publish) > 1 {
				t.Fatalf("token %q accepted with %v", token, perms.Publish)
			}
			return
		}
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("token %q: %v, want ErrUnauthenticated", token, err)
		}
	})
}

// keyKind is one way of trusting a key, with what signs for it.
type keyKind struct {
	name string
	alg  string                    // the algorithm the key verifies
	sign func(input []byte) []byte // signs with the key, under alg
	// config trusts the key.
	config func(t *testing.T) jwtauth.Config
	// others are header algorithms that sign or claim to sign with the
	// same key material, all refused.
	others []string
}

func keyKinds(t *testing.T) []keyKind {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signRS256 := func(in []byte) []byte {
		sum := sha256.Sum256(in)
		sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	pemFile := func(pub any) func(t *testing.T) jwtauth.Config {
		return func(t *testing.T) jwtauth.Config {
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
				t.Fatal(err)
			}
			return jwtauth.Config{PublicKeyFiles: []string{f}}
		}
	}
	jwks := func(t *testing.T, withAlg bool) []byte {
		k, err := jwk.Import(rsaKey.Public())
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, "k1")
		if withAlg {
			_ = k.Set(jwk.AlgorithmKey, jwa.RS256())
		}
		set := jwk.NewSet()
		_ = set.AddKey(k)
		b, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rsaOthers := []string{"none", "RS384", "RS512", "PS256", "HS256", ""}
	return []keyKind{
		{
			name: "HS256 secret file", alg: "HS256",
			sign:   func(in []byte) []byte { m := hmac.New(sha256.New, secret); m.Write(in); return m.Sum(nil) },
			config: func(t *testing.T) jwtauth.Config { return jwtauth.Config{HMACSecretFiles: []string{writeSecret(t)}} },
			others: []string{"none", "HS384", "HS512", "RS256", ""},
		},
		{name: "RSA PEM", alg: "RS256", sign: signRS256, config: pemFile(rsaKey.Public()), others: rsaOthers},
		{
			name: "ECDSA PEM", alg: "ES256",
			sign: func(in []byte) []byte {
				sum := sha256.Sum256(in)
				r, s, err := ecdsa.Sign(rand.Reader, ecKey, sum[:])
				if err != nil {
					t.Fatal(err)
				}
				return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
			},
			config: pemFile(ecKey.Public()),
			others: []string{"none", "ES384", "ES512", "HS256", ""},
		},
		{
			name: "Ed25519 PEM", alg: "EdDSA",
			sign:   func(in []byte) []byte { return ed25519.Sign(edKey, in) },
			config: pemFile(edKey.Public()),
			others: []string{"none", "Ed25519", "HS256", ""},
		},
		{
			name: "JWKS file", alg: "RS256", sign: signRS256, others: rsaOthers,
			config: func(t *testing.T) jwtauth.Config {
				f := filepath.Join(t.TempDir(), "keys.json")
				if err := os.WriteFile(f, jwks(t, false), 0o600); err != nil {
					t.Fatal(err)
				}
				return jwtauth.Config{JWKSFile: f}
			},
		},
		{
			name: "JWKS URL", alg: "RS256", sign: signRS256, others: rsaOthers,
			config: func(t *testing.T) jwtauth.Config {
				body := jwks(t, true)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write(body)
				}))
				t.Cleanup(srv.Close)
				return jwtauth.Config{JWKSURL: srv.URL, HTTPClient: srv.Client()}
			},
		},
	}
}

// forge returns a compact JWS of header and claims whose signature sign
// computes over them, whatever the header says.
func forge(header map[string]any, claims map[string]any, sign func([]byte) []byte) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	return input + "." + enc.EncodeToString(sign([]byte(input)))
}

func header(alg string) map[string]any {
	if alg == "" {
		return map[string]any{"typ": "JWT"}
	}
	return map[string]any{"alg": alg, "typ": "JWT"}
}

func validClaims() map[string]any {
	return map[string]any{"sub": "s", "exp": time.Now().Add(time.Hour).Unix(), jwtauth.ClaimName: map[string]any{"publish": []string{">"}}}
}

// refused checks that err refuses token for a reason mentioning want, in a
// message an RFC 6750 challenge can carry as it is.
func refused(t *testing.T, err error, token, want string) {
	t.Helper()
	if !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("err = %v, want unauthenticated", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, want) {
		t.Fatalf("err = %v, want it to mention %q", err, want)
	}
	if len(msg) > 160 || strings.ContainsAny(msg, "\"\\") || strings.IndexFunc(msg, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		t.Errorf("message %q is not short printable ASCII without quotes", msg)
	}
	for part := range strings.SplitSeq(token, ".") {
		if len(part) > 8 && strings.Contains(msg, part) {
			t.Errorf("message %q echoes the token", msg)
		}
	}
}

// TestAlgorithmMatchesTheKey: a signature made with a trusted key counts
// only under the algorithm that key verifies, named in the protected
// header; a header with another algorithm, none, or none at all is refused
// for its algorithm, for every kind of key.
func TestAlgorithmMatchesTheKey(t *testing.T) {
	for _, kind := range keyKinds(t) {
		t.Run(kind.name, func(t *testing.T) {
			a, err := jwtauth.New(context.Background(), kind.config(t))
			if err != nil {
				t.Fatal(err)
			}
			good := forge(header(kind.alg), validClaims(), kind.sign)
			perms, err := a.Authenticate(context.Background(), auth.Credentials{Token: good})
			if err != nil || len(perms.Publish) != 1 {
				t.Fatalf("a token under %s: %+v, %v", kind.alg, perms, err)
			}
			for _, alg := range kind.others {
				t.Run("alg="+alg, func(t *testing.T) {
					tok := forge(header(alg), validClaims(), kind.sign)
					_, err := a.Authenticate(context.Background(), auth.Credentials{Token: tok})
					refused(t, err, tok, "algorithm")
					refused(t, err, tok, "does not match")
					if strings.Contains(err.Error(), "signature") {
						t.Errorf("refused for its signature, not its algorithm: %v", err)
					}
				})
			}
		})
	}
}

// TestKeyConfusion: an HS256 token whose secret is a trusted public key's
// PEM is refused: a public key never verifies HMACs.
func TestKeyConfusion(t *testing.T) {
	kinds := keyKinds(t)
	cfg := kinds[1].config(t) // RSA PEM
	pemBytes, err := os.ReadFile(cfg.PublicKeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	a, err := jwtauth.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := forge(header("HS256"), validClaims(), func(in []byte) []byte { m := hmac.New(sha256.New, pemBytes); m.Write(in); return m.Sum(nil) })
	_, err = a.Authenticate(context.Background(), auth.Credentials{Token: tok})
	refused(t, err, tok, "the token's algorithm HS256 does not match any trusted key")
}

// TestTimeClaims: the time claims are judged only after the signature
// verified, each refusal names its claim, and no time claim is reported as
// a bad signature.
func TestTimeClaims(t *testing.T) {
	hs := keyKinds(t)[0]
	now := time.Now()
	with := func(claims map[string]any) map[string]any {
		c := validClaims()
		for k, v := range claims {
			if v == nil {
				delete(c, k)
				continue
			}
			c[k] = v
		}
		return c
	}
	cases := []struct {
		name       string
		claims     map[string]any
		allowNoExp bool
		badSig     bool
		want       string // "" for accepted
	}{
		{name: "valid", claims: with(nil)},
		{name: "iat now", claims: with(map[string]any{"iat": now.Unix()})},
		{name: "iat within the leeway", claims: with(map[string]any{"iat": now.Add(20 * time.Second).Unix()})},
		{name: "iat in the future", claims: with(map[string]any{"iat": now.Add(time.Hour).Unix()}), want: "the token is not valid yet: iat is in the future"},
		{name: "nbf within the leeway", claims: with(map[string]any{"nbf": now.Add(20 * time.Second).Unix()})},
		{name: "nbf in the future", claims: with(map[string]any{"nbf": now.Add(time.Hour).Unix()}), want: "the token is not valid yet: nbf is in the future"},
		{name: "expired within the leeway", claims: with(map[string]any{"exp": now.Add(-20 * time.Second).Unix()})},
		{name: "expired", claims: with(map[string]any{"exp": now.Add(-time.Hour).Unix()}), want: "the token has expired"},
		{name: "no exp", claims: with(map[string]any{"exp": nil}), want: "the token has no exp claim ("},
		{name: "no exp, allowed", claims: with(map[string]any{"exp": nil}), allowNoExp: true},
		{name: "exp not a number", claims: with(map[string]any{"exp": "tomorrow"}), want: "the token's claims are not valid"},
		{name: "iat in the future, bad signature", claims: with(map[string]any{"iat": now.Add(time.Hour).Unix()}), badSig: true, want: "the token's signature does not match any trusted HS256 key"},
		{name: "expired, bad signature", claims: with(map[string]any{"exp": now.Add(-time.Hour).Unix()}), badSig: true, want: "signature does not match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hs.config(t)
			cfg.AllowNoExp = tc.allowNoExp
			a, err := jwtauth.New(context.Background(), cfg) // the default leeway, 30s
			if err != nil {
				t.Fatal(err)
			}
			sign := hs.sign
			if tc.badSig {
				sign = func(in []byte) []byte { s := hs.sign(in); s[0] ^= 1; return s }
			}
			tok := forge(header("HS256"), tc.claims, sign)
			perms, err := a.Authenticate(context.Background(), auth.Credentials{Token: tok})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, hasExp := tc.claims["exp"]; !hasExp && !perms.Expires.IsZero() {
					t.Errorf("a token without exp expires at %v", perms.Expires)
				}
				return
			}
			refused(t, err, tok, tc.want)
			if !tc.badSig && strings.Contains(err.Error(), "signature") {
				t.Errorf("a well-signed token refused for its signature: %v", err)
			}
		})
	}
}

func writeSecret(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// An admin claim grants the admin API and nothing else; the subject is what
// a revocation names.
func TestAdminClaim(t *testing.T) {
	a := newAuth(t)
	perms, err := a.Authenticate(context.Background(), auth.Credentials{Token: sign(t, map[string]any{"admin": true}, time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !perms.Admin || perms.Subject != "s" || len(perms.Publish) != 0 || len(perms.Subscribe) != 0 || len(perms.Schemas) != 0 {
		t.Errorf("admin token gave %+v, want Admin, Subject s and no topics or schemas", perms)
	}
	perms, err = a.Authenticate(context.Background(), auth.Credentials{Token: sign(t, jwtauth.Grants{Publish: []string{">"}}, time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if perms.Admin {
		t.Error("a token without the admin claim is admin")
	}
	if _, err := a.Authenticate(context.Background(), auth.Credentials{Token: sign(t, map[string]any{"admin": "yes"}, time.Hour)}); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("admin claim that is not a boolean: %v, want ErrUnauthenticated", err)
	}
}
