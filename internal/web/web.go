// Package web serves the page at GET /: plain HTML and JavaScript, no build
// step, that subscribes with EventSource and shows events live.
package web

import (
	_ "embed"
	"net/http"
)

//go:embed index.html
var page []byte

// Handler serves the page.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	})
}

// Pages returns the page as routes for bridge.Config.Pages: at / itself,
// not at every path under it, so that unknown paths stay 404.
func Pages() map[string]http.Handler {
	return map[string]http.Handler{"GET /{$}": Handler()}
}
