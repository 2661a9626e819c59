package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// TestSchemasGrant: herald token --schemas mints the grant that herald
// schemas push needs; a publish grant does not do, nor a grant of other
// packages.
func TestSchemasGrant(t *testing.T) {
	secret := writeSecret(t)
	_, _, grpcAddr, _ := startServeLog(t, "--auth-hs256-secret-file", secret)
	ctx := context.Background()
	mint := func(args ...string) string {
		out, err := herald(t, ctx, append([]string{"token", "--key", secret}, args...)...).Output()
		if err != nil {
			t.Fatalf("herald token %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	file := schematest.WriteSet(t, t.TempDir(), "ops.binpb", schematest.Compile(t, map[string]string{"ops/v1/ping.proto": pingV1}))
	push := func(token string) (string, error) {
		out, err := herald(t, ctx, "schemas", "--server", grpcAddr, "--token", token, "push", file).CombinedOutput()
		return string(out), err
	}
	if out, err := push(mint("--publish", ">")); err == nil || !strings.Contains(out, "PermissionDenied") || !strings.Contains(out, "schemas") {
		t.Fatalf("push with a publish grant: %v %s", err, out)
	}
	if out, err := push(mint("--schemas", "shop.>")); err == nil || !strings.Contains(out, "PermissionDenied") || !strings.Contains(out, "ops.v1.Ping") {
		t.Fatalf("push with a grant of other packages: %v %s", err, out)
	}
	if out, err := push(mint("--schemas", "ops.>")); err != nil || !strings.Contains(out, "added   ops.v1.Ping") {
		t.Fatalf("push with a grant of ops.>: %v %s", err, out)
	}
	if err := herald(t, ctx, "token", "--key", secret, "--schemas", "ops.>.x").Run(); err == nil {
		t.Error("herald token accepted a malformed schemas pattern")
	}
	help, _ := herald(t, ctx, "token", "--help").CombinedOutput()
	if !strings.Contains(string(help), "--schemas") || !strings.Contains(string(help), `"schemas"`) {
		t.Errorf("herald token --help does not describe --schemas and the claim:\n%s", help)
	}
}

// TestSchemaPushFlags: the limits of schema pushes are serve flags, checked
// before anything starts, with the registry's defaults.
func TestSchemaPushFlags(t *testing.T) {
	for _, flag := range []string{"max-schema-push-bytes", "max-schema-push-types", "max-pushed-types", "max-pushed-schema-bytes", "schema-pushes-per-minute"} {
		c, err := parseServeFlags([]string{"--dev", "--" + flag, "0"}, io.Discard)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "--"+flag+" must be positive") {
			t.Errorf("--%s 0: %v", flag, err)
		}
	}
	c, err := parseServeFlags([]string{"--dev", "--max-pushed-types", "7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var o schema.Options
	c.schemaPush.apply(&o)
	if o.MaxPushedTypes != 7 || o.MaxPushBytes != schema.DefaultMaxPushBytes || o.MaxPushTypes != schema.DefaultMaxPushTypes ||
		o.MaxPushedBytes != schema.DefaultMaxPushedBytes || o.PushesPerMinute != schema.DefaultPushesPerMinute {
		t.Fatalf("options %+v", o)
	}
}
