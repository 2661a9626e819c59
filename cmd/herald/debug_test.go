package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestServeDebugAddr(t *testing.T) {
	cmd := herald(t, context.Background(), "serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--log-format", "json", "--debug-addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var debugAddr, httpAddr string
	lines := bufio.NewScanner(stderr)
	for httpAddr == "" && lines.Scan() {
		var rec struct{ Msg, Addr, HTTP string }
		if json.Unmarshal(lines.Bytes(), &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "debug listening":
			debugAddr = rec.Addr
		case "herald listening":
			httpAddr = rec.HTTP
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if debugAddr == "" || httpAddr == "" {
		t.Fatalf("want a debug listener logged before herald listening; got debug %q, http %q (%v)", debugAddr, httpAddr, lines.Err())
	}
	for _, tc := range []struct {
		url  string
		want int
	}{
		{"http://" + debugAddr + "/debug/pprof/", http.StatusOK},
		{"http://" + debugAddr + "/debug/pprof/goroutine?debug=1", http.StatusOK},
		{"http://" + httpAddr + "/debug/pprof/", http.StatusNotFound}, // never on the public port
	} {
		resp, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.url, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(string(body), "goroutine") {
			t.Errorf("GET %s: body does not look like pprof: %.200s", tc.url, body)
		}
	}
}
