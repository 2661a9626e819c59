// Package apidoc serves the OpenAPI description of Herald's REST API,
// generated from proto/ by protoc-gen-openapiv2 (make generate).
package apidoc

import (
	_ "embed"
	"net/http"
)

//go:embed herald.swagger.json
var spec []byte

// Spec returns the OpenAPI v2 document.
func Spec() []byte { return spec }

// Handler serves the document as JSON.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(spec)
	})
}
