package jwtauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
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
