package bridge

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoregistry"
)

// A subscription that arrives while the server shuts down is told to
// reconnect (200 and retry:), not refused: a 503 would close an
// EventSource for good.
func TestSubscriptionDuringShutdownIsSentToReconnect(t *testing.T) {
	m := newMetrics()
	hub := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), m, 4)
	hub.close()
	h := &streamHandler{hub: hub, log: slog.New(slog.DiscardHandler), metrics: m, retry: 2 * time.Second,
		writeTimeout: time.Second, maxTopics: 8, conns: &connLimiter{perIPs: map[netip.Addr]int{}}}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/events?topic=a", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/event-stream" || !strings.Contains(body, "retry: ") {
		t.Fatalf("%d %q %q: want 200 with a retry hint", rec.Code, rec.Header().Get("Content-Type"), body)
	}
}
