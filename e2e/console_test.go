package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/auth/jwtauth"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/console"
	"github.com/heraldhq/herald/internal/schema"
)

// TestConsole drives the operator console (internal/console) in headless
// Chromium against a server that checks tokens: console.test.mjs. With
// HERALD_CONSOLE_SCREENSHOTS=1 it also writes docs/console/*.png.
func TestConsole(t *testing.T) {
	t.Parallel()
	needNode(t)
	chrome := chromePath(t)
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, testSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := jwtauth.New(context.Background(), jwtauth.Config{HMACSecretFiles: []string{f}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startHerald(t, "console", bridge.Config{
		Pages: console.Pages(), Schemas: schema.NewService(builtinTypes(t)), Auth: a, AllowQueryToken: true, NodeName: "node-a",
		RetryInterval: 200 * time.Millisecond, PresenceInterval: 500 * time.Millisecond,
	}, memory.Options{})
	runNode(t, "console.test.mjs", nodeConfig(t, map[string]*herald{"console": srv}, map[string]any{
		"chrome": chrome,
		"tokens": map[string]string{
			// An operator's token: the admin API, and the topics the
			// inspector follows and the form publishes to.
			"admin": signGrants(t, "ops", jwtauth.Grants{Admin: true, Publish: []string{"e2e.>"}, Subscribe: []string{"e2e.>"}}),
			// A user's: subscribes, but is not admin.
			"user": signGrants(t, "browser", jwtauth.Grants{Subscribe: []string{"e2e.>"}}),
		},
		"screenshots": os.Getenv("HERALD_CONSOLE_SCREENSHOTS") == "1",
	}), []string{
		"a token that is not admin is refused with a visible message",
		"the topics table's subscriber count rises as EventSources open elsewhere and falls as they close",
		"the nodes view shows the node and its broker's health",
		"an event published from the form appears in the live inspector with its id, and in the history",
		"the inspector pauses, filters by text and by a CEL expression",
		"a payload Herald refuses shows its error inline under the form",
		"the history pages backwards and forwards through the retained events",
		"the publish form's fields, generated from the type's JSON Schema, write its JSON",
		"the schema browser shows a type's fields and an example payload",
		"a subject is revoked from the revocations view, and the revocation lifted",
		"every view fits 390 px wide, in dark mode",
	})
}

// signGrants signs a token for subject with grants, valid for an hour.
func signGrants(t testing.TB, subject string, grants jwtauth.Grants) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Subject(subject).Expiration(time.Now().Add(time.Hour)).
		Claim(jwtauth.ClaimName, grants).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}
