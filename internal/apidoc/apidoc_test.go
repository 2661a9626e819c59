package apidoc

import (
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"
)

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name, base, over, want string
	}{
		{"objects merge key by key",
			`{"a": {"x": 1, "y": 2}, "b": 3}`, `{"a": {"y": 20, "z": 30}}`,
			`{"a": {"x": 1, "y": 20, "z": 30}, "b": 3}`},
		{"a reference replaces whole",
			`{"default": {"description": "d", "content": {}}}`, `{"default": {"$ref": "#/r"}}`,
			`{"default": {"$ref": "#/r"}}`},
		{"named objects merge by name and in, the overlay's first",
			`{"p": [{"name": "a", "in": "query", "x": 1}, {"name": "b", "in": "query"}, {"name": "a", "in": "path"}]}`,
			`{"p": [{"name": "c", "in": "query"}, {"name": "a", "in": "query", "y": 2}]}`,
			`{"p": [{"name": "c", "in": "query"}, {"name": "a", "in": "query", "x": 1, "y": 2}, {"name": "b", "in": "query"}, {"name": "a", "in": "path"}]}`},
		{"other arrays are replaced",
			`{"tags": ["A"], "security": [{"s": []}]}`, `{"tags": ["B"], "security": []}`,
			`{"tags": ["B"], "security": []}`},
		{"scalars are replaced",
			`{"a": "x", "b": {"c": 1}}`, `{"a": "y", "b": 2}`,
			`{"a": "y", "b": 2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var base, over, want any
			for _, d := range []struct {
				s string
				v *any
			}{{tc.base, &base}, {tc.over, &over}, {tc.want, &want}} {
				if err := json.Unmarshal([]byte(d.s), d.v); err != nil {
					t.Fatal(err)
				}
			}
			got, _ := json.Marshal(merge(base, over))
			w, _ := json.Marshal(want)
			if string(got) != string(w) {
				t.Errorf("got  %s\nwant %s", got, w)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	const swagger = `{"swagger": "2.0", "info": {"title": "x.proto", "version": "version not set"},
		"tags": [{"name": "Used"}, {"name": "GRPCOnly"}],
		"paths": {"/v1/things/{id}": {"get": {"summary": "GetThing gets\na thing.", "operationId": "S_GetThing", "tags": ["Used"],
			"parameters": [{"name": "id", "in": "path", "required": true, "type": "string"}],
			"responses": {"200": {"description": "ok", "schema": {"$ref": "#/definitions/Thing"}}}}}},
		"definitions": {"Thing": {"type": "object", "properties": {"parts": {"type": "array", "items": {"type": "object", "$ref": "#/definitions/Part"}}}},
			"Part": {"type": "object"}, "Orphan": {"type": "string"}}}`
	const overlay = `
info:
  title: Things
paths:
  /v1/things/{id}:
    get:
      responses:
        '404':
          $ref: '#/components/responses/NotFound'
components:
  responses:
    NotFound:
      description: none
  schemas:
    Mine:
      type: string
`
	out, err := build([]byte(swagger), []byte(overlay), "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string
		Info    struct{ Title, Version string }
		Tags    []struct{ Name string }
		Paths   map[string]map[string]struct {
			Summary    string
			Parameters []map[string]any
			Responses  map[string]map[string]any
		}
		Components struct{ Schemas map[string]map[string]any }
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	op := doc.Paths["/v1/things/{id}"]["get"]
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"openapi", doc.OpenAPI, "3.1.0"},
		{"title", doc.Info.Title, "Things"},
		{"version", doc.Info.Version, "v1.2.3"},
		{"tags", len(doc.Tags), 1},
		{"summary", op.Summary, "GetThing gets a thing."},
		{"parameter schema", op.Parameters[0]["schema"], map[string]any{"type": "string"}},
		{"200", op.Responses["200"]["content"], map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Thing"}}}},
		{"404", op.Responses["404"]["$ref"], "#/components/responses/NotFound"},
		{"items", doc.Components.Schemas["Thing"]["properties"], map[string]any{"parts": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/components/schemas/Part"}}}},
		{"unreachable generated schema", doc.Components.Schemas["Orphan"], map[string]any(nil)},
		{"overlay schema", doc.Components.Schemas["Mine"], map[string]any{"type": "string"}},
	} {
		g, _ := json.Marshal(c.got)
		w, _ := json.Marshal(c.want)
		if string(g) != string(w) {
			t.Errorf("%s: %s, want %s", c.what, g, w)
		}
	}
	if !strings.HasPrefix(string(out), "{\n  \"openapi\": \"3.1.0\",\n  \"info\"") {
		t.Errorf("the document does not start with its version and info:\n%.80s", out)
	}
}

// The converter refuses what it does not know rather than pass Swagger 2.0
// through, and the overlay cannot delete.
func TestBuildRefuses(t *testing.T) {
	const ok = `{"swagger": "2.0", "info": {"title": "t"}, "paths": {}, "definitions": {}}`
	for _, tc := range []struct{ name, swagger, overlay, want string }{
		{"a Swagger key", `{"swagger": "2.0", "info": {}, "securityDefinitions": {}}`, `{}`, "securityDefinitions: not converted"},
		{"a schema keyword", `{"swagger": "2.0", "definitions": {"A": {"type": "string", "x-nullable": true}}}`, `{}`, "definitions.A.x-nullable: not converted"},
		{"a collection format", `{"swagger": "2.0", "paths": {"/a": {"get": {"parameters": [{"name": "q", "in": "query", "type": "array", "items": {"type": "string"}, "collectionFormat": "pipes"}]}}}}`, `{}`, "collectionFormat pipes: not converted"},
		{"another media type", `{"swagger": "2.0", "produces": ["application/xml"]}`, `{}`, "produces is [application/xml]"},
		{"a null in the overlay", ok, "info:\n  description:\n", "overlay.yaml.info.description is null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build([]byte(tc.swagger), []byte(tc.overlay), "v")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestVersionOf(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "false"}}
	dirty := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"a release", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v1.4.0"}}, "v1.4.0"},
		{"a pseudo-version", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v0.0.0-20261203084300-75363a3abcde+dirty"}, Settings: rev}, "v0.0.0-20261203084300-75363a3abcde+dirty"},
		{"a revision only", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}, Settings: rev}, "0123456789ab"},
		{"a modified tree", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}, Settings: dirty}, "0123456789ab+dirty"},
		{"neither", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}}, "devel"},
		{"a dependency", debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "v9.0.0"}, Deps: []*debug.Module{{Path: modulePath, Version: "v1.4.0"}}, Settings: rev}, "v1.4.0"},
		{"another program's revision", debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "(devel)"}, Settings: rev}, "devel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionOf(&tc.bi); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
