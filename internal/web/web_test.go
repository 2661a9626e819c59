package web

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The page runs on whatever address its server has (a demo on :8080, a
// test server on a free port, a node behind a balancer), so it names none:
// the commands it prints use location.origin. What it shows in a browser
// is tested in e2e/browser.test.mjs.
func TestPageNamesNoServer(t *testing.T) {
	for _, s := range []string{"localhost", "127.0.0.1", ":8080"} {
		if bytes.Contains(page, []byte(s)) {
			t.Errorf("index.html names %q: the page must work on any origin", s)
		}
	}
}

func TestPagesServeOnlyTheRoot(t *testing.T) {
	mux := http.NewServeMux()
	for pattern, h := range Pages() {
		mux.Handle(pattern, h)
	}
	for path, want := range map[string]int{"/": 200, "/index.html": 404, "/x": 404} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d, want %d", path, rec.Code, want)
		}
		if want == 200 && rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", path, rec.Header().Get("Content-Type"))
		}
	}
}
