package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

var (
	grpcurlOnce sync.Once
	grpcurlBin  string
	grpcurlErr  error
)

// grpcurl builds the real grpcurl, pinned in tools/go.mod, once per test
// process.
func grpcurl(t *testing.T) string {
	t.Helper()
	grpcurlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-grpcurl-")
		if err != nil {
			grpcurlErr = err
			return
		}
		grpcurlBin = filepath.Join(dir, "grpcurl")
		cmd := exec.Command("go", "build", "-modfile=tools/go.mod", "-o", grpcurlBin, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			grpcurlErr = err
			grpcurlBin = string(out)
		}
	})
	if grpcurlErr != nil {
		t.Fatalf("building grpcurl: %v\n%s", grpcurlErr, grpcurlBin)
	}
	return grpcurlBin
}

const cartProto = `syntax = "proto3";
package shop.v1;
import "buf/validate/validate.proto";

message CartUpdated {
  string cart_id = 1 [(buf.validate.field).string.min_len = 1];
  int32 items = 2;
}
`

// grpcurl, through server reflection, describes a type pushed at run time
// and publishes an Any of it: reflection knows the registry's types, not
// only the ones compiled in.
func TestGRPCurlKnowsPushedTypes(t *testing.T) {
	t.Parallel()
	bin := grpcurl(t)
	s := heraldtest.Start(t, heraldtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	set := schematest.Compile(t, map[string]string{"shop/v1/cart.proto": cartProto})
	if _, err := heraldv1.NewSchemaServiceClient(s.Conn).RegisterSchemas(ctx, &heraldv1.RegisterSchemasRequest{Descriptors: set}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, bin, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run(s.GRPCAddr, "list"); !strings.Contains(out, "herald.v1.PublisherService") || !strings.Contains(out, "herald.v1.SchemaService") {
		t.Fatalf("grpcurl list:\n%s", out)
	}
	if out := run(s.GRPCAddr, "describe", "shop.v1.CartUpdated"); !strings.Contains(out, "message CartUpdated") || !strings.Contains(out, "cart_id") {
		t.Fatalf("grpcurl describe of a pushed type:\n%s", out)
	}
	out := run("-d", `{"topic":"shop.carts","payload":{"@type":"type.googleapis.com/shop.v1.CartUpdated","cartId":"c-1","items":2}}`,
		s.GRPCAddr, "herald.v1.PublisherService/Publish")
	if !strings.Contains(out, `"id"`) {
		t.Fatalf("grpcurl publish of a pushed type:\n%s", out)
	}
	p, err := broker.ParsePattern("shop.carts")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Broker.Replay(ctx, []broker.Pattern{p}, broker.EventID{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 1 || res.Events[0].TypeURL != "type.googleapis.com/shop.v1.CartUpdated" {
		t.Fatalf("stored %d events, want the one grpcurl published", len(res.Events))
	}
	// And the server refuses through grpcurl what it refuses elsewhere: the
	// pushed constraint holds.
	out2, err := exec.CommandContext(ctx, bin, "-plaintext", "-d", `{"topic":"shop.carts","payload":{"@type":"type.googleapis.com/shop.v1.CartUpdated","cartId":""}}`,
		s.GRPCAddr, "herald.v1.PublisherService/Publish").CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "InvalidArgument") || !strings.Contains(string(out2), "cart_id") {
		t.Fatalf("grpcurl publish breaking the constraint: %v\n%s", err, out2)
	}
}
