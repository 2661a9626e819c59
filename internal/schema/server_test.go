package schema_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth/jwtauth"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/demo"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

var testSecret = []byte("a-test-secret-of-at-least-32-bytes!!")

// tokenServer is a real server that checks tokens signed with testSecret,
// over a registry with opts.
type tokenServer struct {
	*heraldtest.Server
	reg *schema.Registry
	b   *memory.Broker
}

func startTokenServer(t *testing.T, opts schema.Options) *tokenServer {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, testSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := jwtauth.New(context.Background(), jwtauth.Config{HMACSecretFiles: []string{f}})
	if err != nil {
		t.Fatal(err)
	}
	b := memory.New(memory.Options{})
	t.Cleanup(func() { b.Close() })
	opts.Store, opts.Compiled = b, demo.Files()
	reg, err := schema.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	s := heraldtest.Start(t, heraldtest.Options{Config: bridge.Config{Auth: a, Broker: b, Types: reg, Schemas: schema.NewService(reg)}})
	return &tokenServer{Server: s, reg: reg, b: b}
}

func mint(t *testing.T, g jwtauth.Grants) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Subject("team-"+strings.Join(g.Schemas, "+")).Expiration(time.Now().Add(time.Hour)).Claim(jwtauth.ClaimName, g).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// answer is a push's outcome over one transport.
type answer struct {
	code    codes.Code
	http    int
	msg     string
	headers http.Header
}

func (s *tokenServer) pushGRPC(t *testing.T, token string, set *descriptorpb.FileDescriptorSet) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, err := heraldv1.NewSchemaServiceClient(s.Conn).RegisterSchemas(ctx, &heraldv1.RegisterSchemasRequest{Descriptors: set})
	st := status.Convert(err)
	return answer{code: st.Code(), msg: st.Message()}
}

func (s *tokenServer) pushREST(t *testing.T, token string, set *descriptorpb.FileDescriptorSet) answer {
	t.Helper()
	body, err := protojson.Marshal(&heraldv1.RegisterSchemasRequest{Descriptors: set})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/schemas", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{http: resp.StatusCode, msg: string(raw), headers: resp.Header}
}

// TestPushAuthorizationOverTheWire: through a real server, over gRPC and
// REST, a push takes credentials (401), a schemas grant (403, not a
// publish grant), and packages within it (403 naming the type); reserved
// packages are refused whatever the grant; nothing refused is stored.
func TestPushAuthorizationOverTheWire(t *testing.T) {
	s := startTokenServer(t, schema.Options{})
	cart := schematest.Compile(t, map[string]string{"shop/v1/cart.proto": "syntax = \"proto3\";\npackage shop.v1;\nmessage Cart { string id = 1; }\n"})
	orders := schematest.Compile(t, map[string]string{"x/refund.proto": "syntax = \"proto3\";\npackage orders.v1;\nmessage Refund { string id = 1; }\n"})
	publisher := mint(t, jwtauth.Grants{Publish: []string{">"}, Subscribe: []string{">"}})
	sandbox := mint(t, jwtauth.Grants{Publish: []string{"sandbox.x"}, Schemas: []string{"sandbox.x"}})
	shop := mint(t, jwtauth.Grants{Schemas: []string{"shop.>"}})
	everything := mint(t, jwtauth.Grants{Schemas: []string{">"}})

	for _, tc := range []struct {
		name  string
		token string
		set   *descriptorpb.FileDescriptorSet
		code  codes.Code
		words []string
	}{
		{"no token", "", cart, codes.Unauthenticated, []string{"schemas", "claim lists the packages"}},
		{"a publish grant alone", publisher, cart, codes.PermissionDenied, []string{"schemas", "claim lists the packages", "list none"}},
		{"another team's package", sandbox, cart, codes.PermissionDenied, []string{"shop.v1.Cart", "sandbox.x"}},
		{"a compiled-in package", everything, orders, codes.PermissionDenied, []string{"orders.v1", "reserved"}},
		{"herald.v1", everything, schematest.Compile(t, map[string]string{"x/h.proto": "syntax = \"proto3\";\npackage herald.v1;\nmessage Evil { string a = 1; }\n"}), codes.PermissionDenied, []string{"herald.v1", "reserved"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			httpStatus := map[codes.Code]int{codes.Unauthenticated: 401, codes.PermissionDenied: 403}[tc.code]
			g, r := s.pushGRPC(t, tc.token, tc.set), s.pushREST(t, tc.token, tc.set)
			if g.code != tc.code {
				t.Errorf("gRPC: %s %q, want %s", g.code, g.msg, tc.code)
			}
			if r.http != httpStatus {
				t.Errorf("REST: %d %s, want %d", r.http, r.msg, httpStatus)
			}
			for _, w := range tc.words {
				if !strings.Contains(g.msg, w) || !strings.Contains(r.msg, w) {
					t.Errorf("the refusals %q and %q do not say %q", g.msg, r.msg, w)
				}
			}
			if tc.code == codes.Unauthenticated && r.headers.Get("WWW-Authenticate") == "" {
				t.Error("REST 401 without WWW-Authenticate")
			}
		})
	}
	if sets, _ := s.b.LoadSchemas(context.Background(), 0); len(sets) != 0 {
		t.Fatalf("%d refused pushes were stored", len(sets))
	}
	if _, _, ok := s.reg.Lookup("shop.v1.Cart"); ok {
		t.Fatal("a refused type is known")
	}
	// The owner pushes, over either transport.
	if a := s.pushGRPC(t, shop, cart); a.code != codes.OK {
		t.Fatalf("the owner's push over gRPC: %s %s", a.code, a.msg)
	}
	v2 := schematest.Compile(t, map[string]string{"shop/v1/cart.proto": "syntax = \"proto3\";\npackage shop.v1;\nmessage Cart { string id = 1; string note = 2; }\n"})
	if a := s.pushREST(t, shop, v2); a.http != 200 || !strings.Contains(a.msg, "shop.v1.Cart") {
		t.Fatalf("the owner's push over REST: %d %s", a.http, a.msg)
	}
}

// TestPushRateOverTheWire: the pushes per minute of one token are bounded;
// over it, RESOURCE_EXHAUSTED and HTTP 429 with Retry-After.
func TestPushRateOverTheWire(t *testing.T) {
	s := startTokenServer(t, schema.Options{PushesPerMinute: 1})
	shop := mint(t, jwtauth.Grants{Schemas: []string{"shop.>"}})
	set := func(name string) *descriptorpb.FileDescriptorSet {
		return schematest.Compile(t, map[string]string{"shop/v1/" + name + ".proto": "syntax = \"proto3\";\npackage shop.v1;\nmessage " + name + " { string id = 1; }\n"})
	}
	if a := s.pushGRPC(t, shop, set("A")); a.code != codes.OK {
		t.Fatalf("first push: %s %s", a.code, a.msg)
	}
	if a := s.pushGRPC(t, shop, set("B")); a.code != codes.ResourceExhausted || !strings.Contains(a.msg, "--schema-pushes-per-minute") {
		t.Fatalf("second push over gRPC: %s %s", a.code, a.msg)
	}
	if a := s.pushREST(t, shop, set("C")); a.http != 429 || a.headers.Get("Retry-After") == "" || !strings.Contains(a.msg, "--schema-pushes-per-minute") {
		t.Fatalf("third push over REST: %d %q (Retry-After %q)", a.http, a.msg, a.headers.Get("Retry-After"))
	}
}
