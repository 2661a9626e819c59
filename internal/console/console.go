// Package console serves Herald's operator console at /console: a static
// page (index.html, console.css and console.js, the bundle built from ui/
// by `make console`) whose every data call goes to the admin API with the
// operator's token in the Authorization header. The page itself holds no
// data, so it is served without a token; the API behind it checks one.
package console

import (
	"embed"
	"net/http"
)

//go:embed index.html console.css console.js
var files embed.FS

// The page's own files, and nothing else: it talks to Herald on its origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// serve writes one embedded file.
func serve(name, contentType string) http.Handler {
	body, err := files.ReadFile(name)
	if err != nil {
		panic("console: " + name + " is not embedded")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(body)
	})
}

// Pages returns the console's routes for bridge.Config.Pages: the page at
// /console (and /console/), its script and its style sheet.
func Pages() map[string]http.Handler {
	page := serve("index.html", "text/html; charset=utf-8")
	return map[string]http.Handler{
		"GET /console":             page,
		"GET /console/{$}":         page,
		"GET /console/console.js":  serve("console.js", "text/javascript; charset=utf-8"),
		"GET /console/console.css": serve("console.css", "text/css; charset=utf-8"),
	}
}
