package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/broker/memory"
)

// TestTLS: with bridge.Config.TLS the HTTP listener speaks HTTPS, HTTP/2
// and HTTP/1.1 by ALPN, and many streams share one HTTP/2 connection.
func TestTLS(t *testing.T) {
	t.Parallel()
	cert, _, _, pool := selfSigned(t, t.TempDir())
	h := startHerald(t, "tls", bridge.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, memory.Options{})
	ctx := ctxT(t)

	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	for proto, tr := range map[string]*http.Transport{"h2": h2, "http/1.1": h1} {
		resp, err := (&http.Client{Transport: tr}).Get(h.url() + "/healthz")
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		resp.Body.Close()
		got := ""
		if resp.TLS != nil {
			got = resp.TLS.NegotiatedProtocol
		}
		if got != proto {
			t.Errorf("ALPN offering %s: negotiated %q (%s)", proto, got, resp.Proto)
		}
	}
	h1.CloseIdleConnections()
	h2.CloseIdleConnections()
	if resp, err := http.Get("http://" + h.tap.addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS listener: %s, want 400", resp.Status)
		}
	}

	// Ten go-sse streams over one HTTP/2 connection.
	before := h.tap.stats().Accepted
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	var streams []*goStream
	for i := range 10 {
		st := subscribeGo(t, client, fmt.Sprintf("%s/v1/events?topic=tls.%d", h.url(), i))
		st.waitOpen(t)
		streams = append(streams, st)
	}
	for i, st := range streams {
		s, _ := structpb.NewStruct(map[string]any{"i": float64(i)})
		id, err := h.publish(ctx, request(t, fmt.Sprintf("tls.%d", i), s))
		if err != nil {
			t.Fatal(err)
		}
		if ev := st.next(t); ev.LastEventID != id || ev.Data != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("stream %d got %q %q, want %q", i, ev.LastEventID, ev.Data, id)
		}
	}
	if n := h.tap.stats().Accepted - before; n != 1 {
		t.Errorf("10 streams took %d TCP connections, want 1 (HTTP/2)", n)
	}

	types := builtinTypes(t)
	if _, err := bridge.New(bridge.Config{Broker: h.broker, Types: types, TLS: &tls.Config{}}); err == nil || !strings.Contains(err.Error(), "Config.TLS") {
		t.Errorf("a TLS config without a certificate: %v, want an error naming Config.TLS", err)
	}
}
