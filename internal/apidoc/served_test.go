package apidoc_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/apidoc"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// The contract of each operation: who may call it and every status it can
// answer with. A change to either is a change to the API, made here, in
// overlay.yaml and in the server together.
var operations = map[string]struct {
	security string // "token", "token unless public" or "open"
	statuses []string
}{
	"GET /v1/events":                  {"token unless public", []string{"200", "400", "401", "403", "429", "default"}},
	"POST /v1/topics/{topic}/events":  {"token", []string{"200", "400", "401", "403", "409", "429", "503", "default"}},
	"DELETE /v1/topics/{topic}/state": {"token", []string{"200", "400", "401", "403", "409", "429", "503", "default"}},
	"GET /v1/schemas":                 {"open", []string{"200", "default"}},
	"POST /v1/schemas":                {"token", []string{"200", "400", "401", "403", "429", "503", "default"}},
	"GET /v1/schemas/{name}":          {"open", []string{"200", "404", "default"}},
	"GET /v1/topics":                  {"token", []string{"200", "400", "401", "403", "503", "default"}},
	"GET /v1/topics/{topic}/events":   {"token", []string{"200", "400", "401", "403", "503", "default"}},
	"GET /v1/nodes":                   {"token", []string{"200", "401", "403", "503", "default"}},
	"GET /v1/revocations":             {"token", []string{"200", "401", "403", "503", "default"}},
	"POST /v1/revocations":            {"token", []string{"200", "400", "401", "403", "429", "503", "default"}},
	"GET /v1/openapi.json":            {"open", []string{"200"}},
	"GET /healthz":                    {"open", []string{"200"}},
	"GET /readyz":                     {"open", []string{"200", "503"}},
	"GET /metrics":                    {"open", []string{"200", "404"}},
}

// TestServedDocument checks the document a running server serves at
// GET /v1/openapi.json: OpenAPI 3.1 with the build's version, exactly the
// routes the server's mux serves, each with its security and its error
// statuses, and references that all resolve.
func TestServedDocument(t *testing.T) {
	s := heraldtest.Start(t, heraldtest.Options{})
	resp, err := http.Get(s.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("the served document does not parse: %v", err)
	}
	ops := operationsOf(t, doc)

	t.Run("version", func(t *testing.T) {
		if doc["openapi"] != "3.1.0" {
			t.Errorf("openapi: %v, want 3.1.0", doc["openapi"])
		}
		info := get(t, doc, "info").(map[string]any)
		if info["title"] != "Herald" {
			t.Errorf("info.title: %q", info["title"])
		}
		v, _ := info["version"].(string)
		if v == "" || v == "version not set" || v != apidoc.Version() {
			t.Errorf("info.version: %q, want the build's, %q", v, apidoc.Version())
		}
		if strings.Contains(string(body), "#/definitions/") {
			t.Error("the document still holds Swagger 2.0 references (#/definitions/)")
		}
	})

	t.Run("routes", func(t *testing.T) {
		served := muxPatterns(t, filepath.Join("..", "..", "bridge"))
		for _, route := range served {
			if ops[route] == nil {
				t.Errorf("the server serves %s; the document does not describe it", route)
			}
		}
		for route := range ops {
			if !slices.Contains(served, route) {
				t.Errorf("the document describes %s; the server's mux has no such pattern", route)
			}
			if _, ok := operations[route]; !ok {
				t.Errorf("%s has no entry in this test's operations table", route)
			}
		}
		for route := range operations {
			if ops[route] == nil {
				t.Errorf("%s, in this test's operations table, is not in the document", route)
			}
		}
		// And the running server answers each documented route itself,
		// not with its catch-all 404.
		params := regexp.MustCompile(`\{[^}]+\}`)
		for route := range ops {
			method, path, _ := strings.Cut(route, " ")
			path = params.ReplaceAllString(path, "x")
			if path == "/v1/events" {
				path += "?topic=x&not_a_parameter=1" // refused before a stream starts
			}
			var rb io.Reader
			if method == http.MethodPost {
				rb = strings.NewReader("{}")
			}
			req, err := http.NewRequest(method, s.URL+path, rb)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "no route for") {
				t.Errorf("%s %s: the server has no route for it: %d %s", method, path, resp.StatusCode, b)
			}
		}
	})

	t.Run("security", func(t *testing.T) {
		scheme := get(t, doc, "components", "securitySchemes", "bearerAuth").(map[string]any)
		if scheme["type"] != "http" || scheme["scheme"] != "bearer" || scheme["bearerFormat"] != "JWT" {
			t.Errorf("bearerAuth: %v, want an HTTP bearer scheme of JWTs", scheme)
		}
		desc, _ := scheme["description"].(string)
		for _, alt := range []string{"herald_token", "access_token", "--auth-query-token"} {
			if !strings.Contains(desc, alt) {
				t.Errorf("bearerAuth's description does not mention %s", alt)
			}
		}
		want := map[string]string{
			"token":               `[{"bearerAuth":[]}]`,
			"token unless public": `[{"bearerAuth":[]},{}]`,
			"open":                `[]`,
		}
		for route, op := range ops {
			sec, ok := op["security"]
			if !ok {
				t.Errorf("%s states no security", route)
				continue
			}
			got, _ := json.Marshal(sec)
			if exp := want[operations[route].security]; exp != "" && string(got) != exp {
				t.Errorf("%s: security %s, want %s", route, got, exp)
			}
		}
		desc, _ = ops["GET /v1/events"]["description"].(string)
		if !strings.Contains(desc, "public") {
			t.Error("GET /v1/events does not say that public topics need no token")
		}
	})

	t.Run("errors", func(t *testing.T) {
		status := get(t, doc, "components", "schemas", "rpcStatus").(map[string]any)
		props, _ := status["properties"].(map[string]any)
		for name, typ := range map[string]string{"code": "integer", "message": "string", "details": "array"} {
			p, _ := props[name].(map[string]any)
			if p == nil || p["type"] != typ {
				t.Errorf("rpcStatus.%s: %v, want a %s", name, p, typ)
			}
		}
		for route, op := range ops {
			responses, _ := op["responses"].(map[string]any)
			var codes []string
			for code := range responses {
				codes = append(codes, code)
			}
			sort.Strings(codes)
			if want := operations[route].statuses; want != nil && !slices.Equal(codes, want) {
				t.Errorf("%s answers %v, want %v", route, codes, want)
			}
			for code, r := range responses {
				r := resolve(t, doc, r)
				if code[0] == '2' || route == "GET /readyz" {
					continue
				}
				ref := get(t, r, "content", "application/json", "schema", "$ref")
				if ref != "#/components/schemas/rpcStatus" {
					t.Errorf("%s %s: body %v, want the rpcStatus schema", route, code, ref)
				}
				headers, _ := r["headers"].(map[string]any)
				for c, h := range map[string]string{"401": "WWW-Authenticate", "429": "Retry-After"} {
					if code == c && headers[h] == nil {
						t.Errorf("%s %s has no %s header", route, code, h)
					}
				}
			}
		}
	})

	t.Run("events", func(t *testing.T) {
		op := ops["GET /v1/events"]
		// The server names the parameters it takes when it refuses
		// another one.
		resp, err := http.Get(s.URL + "/v1/events?topic=x&not_a_parameter=1")
		if err != nil {
			t.Fatal(err)
		}
		var refusal struct{ Message string }
		err = json.NewDecoder(resp.Body).Decode(&refusal)
		resp.Body.Close()
		_, list, ok := strings.Cut(refusal.Message, "(expected ")
		if err != nil || !ok {
			t.Fatalf("the refusal of an unknown parameter no longer lists the known ones: %q (%v)", refusal.Message, err)
		}
		accepted := strings.Split(strings.TrimSuffix(list, ")"), ", ")
		var query []string
		header := false
		for _, p := range op["parameters"].([]any) {
			p := p.(map[string]any)
			switch p["in"] {
			case "query":
				query = append(query, p["name"].(string))
			case "header":
				header = header || p["name"] == "Last-Event-ID"
			}
		}
		sort.Strings(query)
		sort.Strings(accepted)
		if !slices.Equal(query, accepted) {
			t.Errorf("GET /v1/events documents the query parameters %v; the server takes %v", query, accepted)
		}
		if !header {
			t.Error("GET /v1/events does not document the Last-Event-ID header")
		}
		ok200 := get(t, op, "responses", "200").(map[string]any)
		if get(t, ok200, "content", "text/event-stream") == nil {
			t.Error("GET /v1/events: the 200 response is not text/event-stream")
		}
		desc, _ := ok200["description"].(string)
		for _, field := range []string{"retry:", "id:", "event:", "data:", "herald.gap", "heartbeat"} {
			if !strings.Contains(desc, field) {
				t.Errorf("the 200 response of GET /v1/events does not explain %q", field)
			}
		}
	})

	t.Run("well-formed", func(t *testing.T) {
		ids := map[string]string{}
		for route, op := range ops {
			id, _ := op["operationId"].(string)
			if id == "" || op["summary"] == nil || op["tags"] == nil {
				t.Errorf("%s lacks an operationId, a summary or tags (is it left over in overlay.yaml from a route the proto no longer has?)", route)
			}
			if other, dup := ids[id]; dup {
				t.Errorf("%s and %s share the operationId %q", route, other, id)
			}
			ids[id] = route
		}
		walk(doc, "#", func(v map[string]any, at string) {
			if ref, ok := v["$ref"].(string); ok {
				resolveRef(t, doc, ref, at)
			}
			if req, ok := v["required"].([]any); ok {
				props, _ := v["properties"].(map[string]any)
				for _, name := range req {
					if s, ok := name.(string); ok && props[s] == nil {
						t.Errorf("%s: required property %q is not one of its properties", at, s)
					}
				}
			}
		})
	})
}

// muxPatterns lists the patterns that the non-test files of the package in
// dir register on a ServeMux: the first argument of each Handle or
// HandleFunc call that is a string literal "METHOD /path". The catch-all
// "/" names no method and is not a route.
func muxPatterns(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			p, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, ok := strings.Cut(p, " "); ok {
				patterns = append(patterns, p)
			}
			return true
		})
	}
	if !slices.Contains(patterns, "GET /v1/events") || !slices.Contains(patterns, "GET /v1/openapi.json") {
		t.Fatalf("found %q in %s, not the server's routes: has the mux moved?", patterns, dir)
	}
	return patterns
}

// operationsOf indexes doc's operations by "METHOD /path".
func operationsOf(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	ops := map[string]map[string]any{}
	for path, item := range get(t, doc, "paths").(map[string]any) {
		for method, op := range item.(map[string]any) {
			ops[strings.ToUpper(method)+" "+path] = op.(map[string]any)
		}
	}
	return ops
}

// get follows keys down from v, failing the test where one is missing.
func get(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for i, k := range keys {
		m, _ := v.(map[string]any)
		if m[k] == nil {
			t.Fatalf("no %s in the document", strings.Join(keys[:i+1], "."))
		}
		v = m[k]
	}
	return v
}

// resolve returns the object v refers to when it is a reference, else v.
func resolve(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		return resolveRef(t, doc, ref, "")
	}
	return m
}

func resolveRef(t *testing.T, doc map[string]any, ref, at string) map[string]any {
	t.Helper()
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		t.Fatalf("%s: $ref %q is not local", at, ref)
	}
	var v any = doc
	for _, k := range strings.Split(path, "/") {
		k = strings.NewReplacer("~1", "/", "~0", "~").Replace(k)
		m, _ := v.(map[string]any)
		if v = m[k]; v == nil {
			t.Fatalf("%s: $ref %q does not resolve", at, ref)
		}
	}
	return v.(map[string]any)
}

// walk calls f on every object in v, with its JSON pointer.
func walk(v any, at string, f func(map[string]any, string)) {
	switch x := v.(type) {
	case map[string]any:
		f(x, at)
		for k, e := range x {
			walk(e, at+"/"+strings.NewReplacer("~", "~0", "/", "~1").Replace(k), f)
		}
	case []any:
		for i, e := range x {
			walk(e, at+"/"+strconv.Itoa(i), f)
		}
	}
}
