package e2e

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/web"
)

// plainConfig is the server most node tests talk to: defaults (1 MiB
// events, 15 s heartbeat) but a short retry, so that reconnects are quick.
var plainConfig = bridge.Config{RetryInterval: 200 * time.Millisecond}

// TestWire reads raw streams with fetch and the npm eventsource-parser.
func TestWire(t *testing.T) {
	t.Parallel()
	needNode(t)
	servers := map[string]*herald{
		"plain":     startHerald(t, "plain", plainConfig, memory.Options{}),
		"heartbeat": startHerald(t, "heartbeat", bridge.Config{HeartbeatInterval: 100 * time.Millisecond}, memory.Options{}),
	}
	runNode(t, "wire.test.mjs", nodeConfig(t, servers, nil), []string{
		"S1 status 200 and Content-Type text/event-stream",
		"S2 headers and the retry hint arrive at once, before any event",
		"S4 UTF-8 without a byte order mark",
		"S5 no raw CR or LF inside a field: payloads cannot inject fields or events",
		`S6 "data: " with exactly one space`,
		"S7 every event ends with a blank line and is flushed at once",
		"S9 ids are short CORS-safe ASCII and increase",
		"S11 retry is digits only",
		"S12 idle streams get a comment line every heartbeat interval",
		"S13 no-cache, X-Accel-Buffering: no, no Content-Length, never compressed",
		"S17 every block Herald sends carries data: no id-only or empty events",
	})
}

// TestNodeEventSource runs the npm eventsource client.
func TestNodeEventSource(t *testing.T) {
	t.Parallel()
	needNode(t)
	plain := startHerald(t, "plain", plainConfig, memory.Options{})
	servers := map[string]*herald{"plain": plain}
	runNode(t, "eventsource.test.mjs", nodeConfig(t, servers, nil), []string{
		`named events reach addEventListener(type); onmessage sees only type "message"`,
		"envelope=true: every event reaches onmessage, its type inside the data, gaps too",
		"filter= delivers exactly the events the expression accepts",
		"JSON equals the published payload, non-ASCII and line breaks intact",
		"an event exactly at the size limit arrives whole; one byte over is refused",
		"a burst of 500 events arrives complete and in order",
		"after the connection drops it reconnects and gets every missed event exactly once",
		"after the server restarts it reconnects and gets every missed event exactly once",
		"an unknown Last-Event-ID gets a herald.gap event and status 200, never an error",
		"a refused subscription (404, 400) closes the EventSource for good",
	})
	// The server agrees: four refusals, none repeated (404s are not SSE
	// refusals, they never reach the stream handler).
	if got := plain.metric(t, `herald_sse_refused_total{status="400"}`); got != 3 {
		t.Errorf("herald_sse_refused_total{status=400} = %v, want 3", got)
	}
}

// nodeConfig is the HERALD_E2E a node test file gets.
func nodeConfig(t testing.TB, servers map[string]*herald, extra map[string]any) map[string]any {
	t.Helper()
	ctl := startControl(t, servers)
	infos := map[string]serverInfo{}
	for name, h := range servers {
		infos[name] = h.info()
	}
	cfg := map[string]any{"control": ctl.url, "servers": infos}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

// TestBrowser drives headless Chromium: one launch, every browser check.
func TestBrowser(t *testing.T) {
	t.Parallel()
	needNode(t)
	chrome := chromePath(t)
	cert, _, _, _ := selfSigned(t, t.TempDir())
	listed, unlisted := pageServer(t), pageServer(t)
	servers := map[string]*herald{
		"plain":   startHerald(t, "plain", plainConfig, memory.Options{}),
		"tls":     startHerald(t, "tls", bridge.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, memory.Options{}),
		"h1":      startHerald(t, "h1", bridge.Config{}, memory.Options{}),
		"cors":    startHerald(t, "cors", bridge.Config{CORSOrigins: []string{listed}, RetryInterval: 200 * time.Millisecond}, memory.Options{}),
		"corsAny": startHerald(t, "corsAny", bridge.Config{CORSOrigins: []string{"*"}}, memory.Options{}),
		"auth":    startHerald(t, "auth", bridge.Config{CORSOrigins: []string{listed}, Auth: cookieAuth(t)}, memory.Options{}),
		// The demo page (internal/web) on an open server and on one that
		// checks tokens.
		"demo":    startHerald(t, "demo", bridge.Config{Pages: web.Pages(), MaxConnections: 2}, memory.Options{}),
		"secured": startHerald(t, "secured", bridge.Config{Pages: web.Pages(), Auth: cookieAuth(t), AllowQueryToken: true}, memory.Options{}),
	}
	runNode(t, "browser.test.mjs", nodeConfig(t, servers, map[string]any{
		"chrome": chrome,
		"pages":  map[string]string{"listed": listed, "unlisted": unlisted},
		"auth": map[string]string{"token": signTestToken(t, []string{"e2e.auth-ok.>"}), "cookie": "herald_token",
			"pageToken": signTestToken(t, []string{"orders.>", "monitoring.>", "chat.>"})},
	}), []string{
		`page: named events reach addEventListener(type); onmessage sees only type "message", or every event with envelope=true`,
		"page: JSON equals the published payload, non-ASCII and line breaks intact",
		"page: onopen fires at once, before any event is published",
		"page: an event exactly at the size limit arrives whole",
		"page: a burst of 500 events arrives complete and in order",
		"page: after the connection drops it reconnects with Last-Event-ID and gets every missed event exactly once",
		"page: after the server restarts it reconnects with Last-Event-ID and gets every missed event exactly once",
		"page: a refused subscription (404, 400) leaves the EventSource CLOSED, never retrying",
		"page: stream headers as the browser gets them: no-cache, not buffered, not compressed",
		"page: 10 EventSources at once over HTTP/2 (TLS) share one connection",
		"page: over HTTP/1.1 only 6 of 10 EventSources open (why HTTP/2 matters)",
		"page on a listed origin subscribes with credentials; reconnects need no preflight",
		"page on an unlisted origin is blocked",
		`with CORS origin "*" a page subscribes without credentials; withCredentials is blocked`,
		"page: the typed wrapper of docs/clients.md, as written there",
		"page on a listed origin subscribes with a token cookie and withCredentials; without them it is refused",
		"the demo page (internal/web): says which patterns it opens, prints commands for its own server, and says why a server refuses it",
		"the demo page starts with every game server (snapshot=true), drops one that shuts down, and reloads to the same table",
	})
}

// TestDefaultsFitTheChecklist pins the defaults the checklist asks for,
// which the tests above run with shorter values to stay fast.
func TestDefaultsFitTheChecklist(t *testing.T) {
	if d := bridge.DefaultHeartbeatInterval; d <= 0 || d > 15*time.Second {
		t.Errorf("DefaultHeartbeatInterval = %v: S12 wants a comment line at least every 15 s", d)
	}
	if bridge.DefaultQueueSize <= 0 || bridge.DefaultWriteTimeout <= 0 {
		t.Errorf("DefaultQueueSize %d, DefaultWriteTimeout %v: S16 wants both bounded", bridge.DefaultQueueSize, bridge.DefaultWriteTimeout)
	}
	if d := bridge.DefaultRetryInterval; d <= 0 {
		t.Errorf("DefaultRetryInterval = %v", d)
	}
}
