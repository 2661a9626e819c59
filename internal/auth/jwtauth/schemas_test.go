package jwtauth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/auth/jwtauth"
)

// TestSchemasClaim: the "schemas" list of the claim becomes
// Permissions.Schemas, separate from the topic grants; a malformed one
// refuses the token.
func TestSchemasClaim(t *testing.T) {
	a := newAuth(t)
	ctx := context.Background()
	perms, err := a.Authenticate(ctx, auth.Credentials{Token: sign(t, jwtauth.Grants{Publish: []string{"sandbox.x"}, Schemas: []string{"shop.>", "billing.v1"}}, time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(perms.Schemas) != 2 || perms.Schemas[0].String() != "shop.>" || perms.Schemas[1].String() != "billing.v1" {
		t.Fatalf("Schemas = %v, want [shop.> billing.v1]", perms.Schemas)
	}
	if !perms.Schemas[0].Match("shop.v1") || perms.Schemas[0].Match("shopping.v1") {
		t.Fatal("shop.> does not select the packages under shop")
	}

	perms, err = a.Authenticate(ctx, auth.Credentials{Token: sign(t, jwtauth.Grants{Publish: []string{">"}}, time.Hour)})
	if err != nil || len(perms.Schemas) != 0 {
		t.Fatalf("a publish grant grants schemas: %v %v", perms.Schemas, err)
	}

	for name, claim := range map[string]any{
		"bad pattern":         jwtauth.Grants{Schemas: []string{"shop.>.v1"}},
		"not a list":          map[string]any{"schemas": "shop.>"},
		"list of non-strings": map[string]any{"schemas": []int{1}},
	} {
		_, err := a.Authenticate(ctx, auth.Credentials{Token: sign(t, claim, time.Hour)})
		if !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "schemas") {
			t.Errorf("%s: %v, want unauthenticated naming the schemas claim", name, err)
		}
	}
}

func TestDevGrantsEverySchema(t *testing.T) {
	perms, err := auth.Dev().Authenticate(context.Background(), auth.Credentials{})
	if err != nil || len(perms.Schemas) != 1 || perms.Schemas[0].String() != ">" {
		t.Fatalf("dev permissions %+v, %v: want schemas >", perms, err)
	}
}

func TestPermissionsInContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := auth.FromContext(ctx); ok {
		t.Fatal("permissions found in a bare context")
	}
	want := auth.Permissions{Schemas: auth.Everything, RateKey: "sub:x"}
	got, ok := auth.FromContext(auth.NewContext(ctx, want))
	if !ok || got.RateKey != "sub:x" || len(got.Schemas) != 1 {
		t.Fatalf("FromContext = %+v, %v", got, ok)
	}
}
