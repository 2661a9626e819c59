package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/auth/jwtauth"
	"github.com/heraldhq/herald/internal/broker"
)

var testSecret = []byte("e2e-secret-of-at-least-32-bytes-long!")

// cookieAuth is Herald's JWT authenticator for subscribers. Publishing is
// left open to callers without credentials, so the harness's control API
// can publish; subscriptions need the token.
func cookieAuth(t testing.TB) auth.Authenticator {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, testSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := jwtauth.New(context.Background(), jwtauth.Config{HMACSecretFiles: []string{f}})
	if err != nil {
		t.Fatal(err)
	}
	return harnessPublishes{a}
}

type harnessPublishes struct{ *jwtauth.Authenticator }

func (h harnessPublishes) Authenticate(ctx context.Context, c auth.Credentials) (auth.Permissions, error) {
	perms, err := h.Authenticator.Authenticate(ctx, c)
	if err == nil && c.Empty() {
		all, _ := broker.ParsePattern(">")
		perms.Publish = []broker.Pattern{all}
	}
	return perms, err
}

func signTestToken(t testing.TB, subscribe []string) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Subject("browser").Expiration(time.Now().Add(time.Hour)).
		Claim(jwtauth.ClaimName, jwtauth.Grants{Subscribe: subscribe}).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}
