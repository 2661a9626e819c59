package apidoc

import (
	"fmt"
	"strings"
)

// convert turns the Swagger 2.0 document that protoc-gen-openapiv2 writes
// into OpenAPI 3.1. It knows the part of Swagger 2.0 the generator emits
// with the options in buf.gen.yaml and refuses any other key, so that a new
// generator version or option fails this package's tests (and so make
// check-generate's users) instead of leaking Swagger into an OpenAPI 3.1
// document.
func convert(sw map[string]any) (map[string]any, error) {
	if sw["swagger"] != "2.0" {
		return nil, fmt.Errorf(`swagger is %v, want "2.0"`, sw["swagger"])
	}
	out := map[string]any{"openapi": "3.1.0"}
	for k, v := range sw {
		var err error
		switch k {
		case "swagger":
		case "info":
			out[k] = v
		case "tags":
			out[k] = v
		case "consumes", "produces":
			// The gateway reads and writes JSON whatever the request
			// says; bodies below are application/json, so nothing else
			// may be declared.
			if l, ok := v.([]any); !ok || len(l) != 1 || l[0] != mediaType {
				err = fmt.Errorf("%s is %v, want [%s]", k, v, mediaType)
			}
		case "paths":
			out[k], err = convertPaths(v)
		case "definitions":
			var schemas map[string]any
			if schemas, err = convertSchemaMap(v, "definitions"); err == nil {
				out["components"] = map[string]any{"schemas": schemas}
			}
		default:
			err = fmt.Errorf("%s: not converted", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

const mediaType = "application/json"

func convertPaths(v any) (map[string]any, error) {
	paths, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("paths is not an object")
	}
	out := make(map[string]any, len(paths))
	for p, item := range paths {
		ops, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("paths.%s is not an object", p)
		}
		outOps := make(map[string]any, len(ops))
		for method, op := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
			default:
				return nil, fmt.Errorf("paths.%s.%s: not converted", p, method)
			}
			var err error
			if outOps[method], err = convertOperation(op, "paths."+p+"."+method); err != nil {
				return nil, err
			}
		}
		out[p] = outOps
	}
	return out, nil
}

func convertOperation(v any, at string) (map[string]any, error) {
	op, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not an object", at)
	}
	out := make(map[string]any, len(op))
	for k, v := range op {
		var err error
		switch k {
		case "summary":
			// A summary is one line; the proto comment's paragraph was
			// wrapped to fit the source.
			s, _ := v.(string)
			out[k] = strings.Join(strings.Fields(s), " ")
		case "description", "operationId", "tags", "deprecated":
			out[k] = v
		case "parameters":
			err = convertParameters(v, out, at+".parameters")
		case "responses":
			out[k], err = convertResponses(v, at+".responses")
		default:
			err = fmt.Errorf("%s.%s: not converted", at, k)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// convertParameters sets op's parameters and, from a body parameter, its
// requestBody.
func convertParameters(v any, op map[string]any, at string) error {
	params, ok := v.([]any)
	if !ok {
		return fmt.Errorf("%s is not an array", at)
	}
	var out []any
	for i, pv := range params {
		pat := fmt.Sprintf("%s[%d]", at, i)
		p, ok := pv.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not an object", pat)
		}
		if p["in"] == "body" {
			body := map[string]any{}
			for k, v := range p {
				switch k {
				case "name", "in":
				case "description", "required":
					body[k] = v
				case "schema":
					s, err := convertSchema(v, pat+".schema")
					if err != nil {
						return err
					}
					body["content"] = map[string]any{mediaType: map[string]any{"schema": s}}
				default:
					return fmt.Errorf("%s.%s: not converted", pat, k)
				}
			}
			op["requestBody"] = body
			continue
		}
		param, schema := map[string]any{}, map[string]any{}
		for k, v := range p {
			switch k {
			case "name", "in", "description", "required":
				param[k] = v
			case "collectionFormat":
				// Only a query parameter may repeat, as name=a&name=b
				// (multi) or name=a,b (csv).
				switch v {
				case "multi":
					param["style"], param["explode"] = "form", true
				case "csv":
					param["style"], param["explode"] = "form", false
				default:
					return fmt.Errorf("%s.collectionFormat %v: not converted", pat, v)
				}
			default:
				schema[k] = v
			}
		}
		s, err := convertSchema(schema, pat)
		if err != nil {
			return err
		}
		param["schema"] = s
		out = append(out, param)
	}
	if len(out) > 0 {
		op["parameters"] = out
	}
	return nil
}

func convertResponses(v any, at string) (map[string]any, error) {
	resps, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not an object", at)
	}
	out := make(map[string]any, len(resps))
	for code, rv := range resps {
		rat := at + "." + code
		r, ok := rv.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s is not an object", rat)
		}
		resp := map[string]any{}
		for k, v := range r {
			switch k {
			case "description":
				resp[k] = v
			case "schema":
				s, err := convertSchema(v, rat+".schema")
				if err != nil {
					return nil, err
				}
				resp["content"] = map[string]any{mediaType: map[string]any{"schema": s}}
			case "headers":
				hs, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s.headers is not an object", rat)
				}
				headers := make(map[string]any, len(hs))
				for name, hv := range hs {
					h, _ := hv.(map[string]any)
					header, schema := map[string]any{}, map[string]any{}
					for k, v := range h {
						if k == "description" {
							header[k] = v
						} else {
							schema[k] = v
						}
					}
					s, err := convertSchema(schema, rat+".headers."+name)
					if err != nil {
						return nil, err
					}
					header["schema"] = s
					headers[name] = header
				}
				resp[k] = headers
			default:
				return nil, fmt.Errorf("%s.%s: not converted", rat, k)
			}
		}
		out[code] = resp
	}
	return out, nil
}

func convertSchemaMap(v any, at string) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not an object", at)
	}
	out := make(map[string]any, len(m))
	for k, sv := range m {
		var err error
		if out[k], err = convertSchema(sv, at+"."+k); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// convertSchema converts a Swagger 2.0 schema, the JSON Schema draft 4
// subset the generator uses, to an OpenAPI 3.1 (JSON Schema 2020-12) one.
func convertSchema(v any, at string) (map[string]any, error) {
	s, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not a schema", at)
	}
	out := make(map[string]any, len(s))
	for k, v := range s {
		var err error
		switch k {
		case "$ref":
			ref, _ := v.(string)
			name, ok := strings.CutPrefix(ref, "#/definitions/")
			if !ok {
				return nil, fmt.Errorf("%s.$ref %q: not converted", at, ref)
			}
			out[k] = "#/components/schemas/" + name
		case "type", "format", "title", "description", "enum", "default", "required", "readOnly",
			"pattern", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "uniqueItems":
			// The same keyword in both, with the same meaning.
			out[k] = v
		case "example":
			out["examples"] = []any{v}
		case "items":
			out[k], err = convertSchema(v, at+".items")
		case "properties":
			out[k], err = convertSchemaMap(v, at+".properties")
		case "additionalProperties":
			if b, ok := v.(bool); ok {
				out[k] = b
			} else {
				out[k], err = convertSchema(v, at+".additionalProperties")
			}
		case "allOf":
			l, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("%s.allOf is not an array", at)
			}
			all := make([]any, len(l))
			for i, e := range l {
				if all[i], err = convertSchema(e, fmt.Sprintf("%s.allOf[%d]", at, i)); err != nil {
					return nil, err
				}
			}
			out[k] = all
		default:
			// x-nullable, exclusiveMinimum and the like mean something
			// else, or nothing, in 2020-12.
			err = fmt.Errorf("%s.%s: not converted", at, k)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, ok := out["$ref"]; ok && out["type"] == "object" {
		// The generator writes type: object beside every $ref in an
		// array's items; the referenced schema says so already.
		delete(out, "type")
	}
	return out, nil
}
