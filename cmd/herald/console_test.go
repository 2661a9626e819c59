package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServeConsole: herald serve serves the console at /console, its
// script and its style sheet, and --console=false takes them away.
func TestServeConsole(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, url string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	t.Run("on", func(t *testing.T) {
		t.Parallel()
		_, httpAddr, _ := startServe(t)
		for path, want := range map[string]string{
			"/console":             "text/html",
			"/console/":            "text/html",
			"/console/console.js":  "text/javascript",
			"/console/console.css": "text/css",
		} {
			status, ct, body := get(t, "http://"+httpAddr+path)
			if status != http.StatusOK || !strings.HasPrefix(ct, want) || body == "" {
				t.Errorf("GET %s: %d %q, %d bytes; want 200 %s", path, status, ct, len(body), want)
			}
		}
		if status, _, _ := get(t, "http://"+httpAddr+"/console/other"); status != http.StatusNotFound {
			t.Errorf("GET /console/other: %d, want 404", status)
		}
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		_, httpAddr, _ := startServe(t, "--console=false")
		if status, _, _ := get(t, "http://"+httpAddr+"/console"); status != http.StatusNotFound {
			t.Errorf("GET /console with --console=false: %d, want 404", status)
		}
	})
}
