package console_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/console"
)

// TestPages checks what the page loads is embedded and served with a
// policy that keeps it to its own files and its own origin.
func TestPages(t *testing.T) {
	mux := http.NewServeMux()
	for pattern, h := range console.Pages() {
		mux.Handle(pattern, h)
	}
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	page := get("/console")
	if page.Code != http.StatusOK {
		t.Fatalf("GET /console: %d", page.Code)
	}
	for _, ref := range []string{`src="/console/console.js"`, `href="/console/console.css"`} {
		if !strings.Contains(page.Body.String(), ref) {
			t.Errorf("the page does not load %s", ref)
		}
	}
	if csp := page.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	js := get("/console/console.js")
	// The bundle is the built TypeScript, not a placeholder: it reads the
	// token from sessionStorage and calls the admin API.
	for _, s := range []string{"sessionStorage", "/v1/topics", "/v1/nodes", "Authorization"} {
		if !strings.Contains(js.Body.String(), s) {
			t.Errorf("console.js lacks %q", s)
		}
	}
	if ct := js.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("console.js Content-Type = %q", ct)
	}
}
