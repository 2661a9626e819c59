// Package apidoc builds and serves the OpenAPI 3.1 description of Herald's
// HTTP API, GET /v1/openapi.json.
//
// The document comes from two sources, so that what the proto says is
// written only there:
//
//   - herald.swagger.json, generated from proto/ by protoc-gen-openapiv2
//     (make generate; make check-generate fails when it is stale): the REST
//     routes of the gRPC services, their messages, and the summaries and
//     descriptions in the proto comments. It is Swagger 2.0; it is converted
//     to OpenAPI 3.1, which can state what 2.0 cannot: a text/event-stream
//     response and a bearer-token scheme.
//   - overlay.yaml, written by hand: what the proto cannot say. The routes
//     served beside the gateway (the SSE stream, health, readiness, metrics,
//     this document), the security scheme and the operations that need it,
//     every error status of every operation, the title.
//
// The overlay is merged over the converted document: objects key by key; an
// object holding $ref replaces what it lands on whole; arrays of named
// objects (tags, parameters) element by element, matched by name and "in",
// the overlay's elements first, in its order; anything else from the overlay
// replaces the generated value. The overlay holds no nulls, so it can only
// add and override, never silently delete. Then info.version becomes the
// build's version (Version), and what the generator wrote for the gRPC API
// alone goes: the tags that no operation carries (the gRPC-only services')
// and the schemas that nothing reaches.
package apidoc

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

var (
	//go:embed herald.swagger.json
	generated []byte
	//go:embed overlay.yaml
	overlay []byte
)

var document = sync.OnceValues(func() ([]byte, error) {
	return build(generated, overlay, Version())
})

// Document returns the OpenAPI document as JSON, built on first use. An
// error means the embedded sources do not make a document, which the
// package's tests rule out for the sources it is built with.
func Document() ([]byte, error) { return document() }

// Spec returns the OpenAPI document as JSON. It panics where Document
// returns an error.
func Spec() []byte {
	doc, err := document()
	if err != nil {
		panic(err)
	}
	return doc
}

// Handler serves the document as JSON.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc, err := document()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
}

// build makes the document from the generated Swagger 2.0 file and the
// overlay, as the package comment says.
func build(generated, overlay []byte, version string) ([]byte, error) {
	var swagger map[string]any
	if err := json.Unmarshal(generated, &swagger); err != nil {
		return nil, fmt.Errorf("apidoc: herald.swagger.json: %w", err)
	}
	doc, err := convert(swagger)
	if err != nil {
		return nil, fmt.Errorf("apidoc: converting herald.swagger.json to OpenAPI 3.1: %w", err)
	}
	var raw any
	if err := yaml.Unmarshal(overlay, &raw); err != nil {
		return nil, fmt.Errorf("apidoc: overlay.yaml: %w", err)
	}
	over, err := jsonValue(raw, "overlay.yaml")
	if err != nil {
		return nil, fmt.Errorf("apidoc: %w", err)
	}
	if _, ok := over.(map[string]any); !ok {
		return nil, fmt.Errorf("apidoc: overlay.yaml is not a mapping")
	}
	generatedSchemas := schemaNames(doc)
	doc = merge(doc, over).(map[string]any)
	info, ok := doc["info"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("apidoc: the document has no info object")
	}
	info["version"] = version
	dropUnusedTags(doc)
	dropUnreachable(doc, generatedSchemas)
	return marshal(doc)
}

// merge returns over merged onto base by the rules of the package comment.
// It may modify base and share parts of over.
func merge(base, over any) any {
	switch o := over.(type) {
	case map[string]any:
		b, ok := base.(map[string]any)
		if _, ref := o["$ref"]; ref || !ok {
			return o
		}
		for k, v := range o {
			b[k] = merge(b[k], v)
		}
		return b
	case []any:
		b, ok := base.([]any)
		if !ok || !named(b) || !named(o) {
			return o
		}
		out := make([]any, 0, len(b)+len(o))
		taken := make(map[string]bool, len(o))
		for _, oe := range o {
			k := nameKey(oe)
			taken[k] = true
			var match any
			for _, be := range b {
				if nameKey(be) == k {
					match = be
					break
				}
			}
			out = append(out, merge(match, oe))
		}
		for _, be := range b {
			if !taken[nameKey(be)] {
				out = append(out, be)
			}
		}
		return out
	default:
		return over
	}
}

// named reports whether every element of a is an object with a name.
func named(a []any) bool {
	for _, e := range a {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

// nameKey identifies a named object: a tag by its name, a parameter by its
// name and location.
func nameKey(e any) string {
	m := e.(map[string]any)
	in, _ := m["in"].(string)
	return m["name"].(string) + "\x00" + in
}

// jsonValue turns a decoded YAML value into the types encoding/json
// decodes to, refusing what JSON cannot hold and nulls (see the package
// comment). Mapping keys such as 200 become strings.
func jsonValue(v any, at string) (any, error) {
	switch x := v.(type) {
	case string, bool, int, float64:
		return x, nil
	case map[string]any:
		for k, e := range x {
			var err error
			if x[k], err = jsonValue(e, at+"."+k); err != nil {
				return nil, err
			}
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			switch k.(type) {
			case string, int, bool:
			default:
				return nil, fmt.Errorf("%s: key %v is not a string", at, k)
			}
			ks := fmt.Sprint(k)
			var err error
			if m[ks], err = jsonValue(e, at+"."+ks); err != nil {
				return nil, err
			}
		}
		return m, nil
	case []any:
		for i, e := range x {
			var err error
			if x[i], err = jsonValue(e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return nil, err
			}
		}
		return x, nil
	case nil:
		return nil, fmt.Errorf("%s is null: the overlay adds and overrides, it does not delete (an empty YAML value is null; write '' or {})", at)
	default:
		return nil, fmt.Errorf("%s: a %T has no JSON form", at, v)
	}
}

// dropUnusedTags removes the tags that no operation carries.
func dropUnusedTags(doc map[string]any) {
	used := map[string]bool{}
	paths, _ := doc["paths"].(map[string]any)
	for _, item := range paths {
		ops, _ := item.(map[string]any)
		for _, op := range ops {
			o, _ := op.(map[string]any)
			tags, _ := o["tags"].([]any)
			for _, t := range tags {
				if s, ok := t.(string); ok {
					used[s] = true
				}
			}
		}
	}
	tags, _ := doc["tags"].([]any)
	kept := tags[:0]
	for _, t := range tags {
		if m, ok := t.(map[string]any); ok && used[fmt.Sprint(m["name"])] {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		delete(doc, "tags")
	} else {
		doc["tags"] = kept
	}
}

func schemaNames(doc map[string]any) []string {
	comps, _ := doc["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	names := make([]string, 0, len(schemas))
	for name := range schemas {
		names = append(names, name)
	}
	return names
}

// dropUnreachable removes the generated schemas that nothing outside the
// schemas reaches: the generator also writes out types that no REST
// message uses (google.protobuf.NullValue, for Struct). Schemas of the
// overlay stay, so that the lint finds the unused ones.
func dropUnreachable(doc map[string]any, generated []string) {
	comps, _ := doc["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	const prefix = "#/components/schemas/"
	reached := map[string]bool{}
	var queue []string
	var visit func(v any)
	visit = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				if name, ok := strings.CutPrefix(ref, prefix); ok && !reached[name] {
					reached[name] = true
					queue = append(queue, name)
				}
			}
			for _, e := range x {
				visit(e)
			}
		case []any:
			for _, e := range x {
				visit(e)
			}
		}
	}
	for k, v := range doc {
		if k != "components" {
			visit(v)
		}
	}
	for k, v := range comps {
		if k != "schemas" {
			visit(v)
		}
	}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		visit(schemas[name])
	}
	for _, name := range generated {
		if !reached[name] {
			delete(schemas, name)
		}
	}
}

// topOrder is the order of the document's top-level keys, so that a reader
// meets the version and the description before the schemas. Other keys
// follow, sorted; everything below the top level is sorted by
// encoding/json.
var topOrder = []string{"openapi", "info", "servers", "security", "tags", "paths", "webhooks", "components", "externalDocs"}

func marshal(doc map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		for i, t := range topOrder {
			if t == k {
				return i
			}
		}
		return len(topOrder)
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, rj := rank(keys[i]), rank(keys[j])
		if ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		// Descriptions are full of > (topic patterns) and <: no HTML
		// escaping, so that the document reads as written.
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(k); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
		buf.WriteByte(':')
		if err := enc.Encode(doc[k]); err != nil {
			return nil, fmt.Errorf("apidoc: %s: %w", k, err)
		}
		buf.Truncate(buf.Len() - 1)
	}
	buf.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
