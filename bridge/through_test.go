package bridge_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// stalledH2C is an h2c client of one stream that grants the server 64
// bytes of window on it and no more until told to: after the first few
// bytes, every write to the stream waits. It answers the server's
// SETTINGS and PINGs, so the connection itself stays healthy, and keeps
// the stream's body.
type stalledH2C struct {
	mu   sync.Mutex // serializes the framer's writes
	fr   *http2.Framer
	body chan []byte
}

func openStalledH2C(t *testing.T, url, topic string) *stalledH2C {
	t.Helper()
	host := strings.TrimPrefix(url, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c := &stalledH2C{fr: http2.NewFramer(conn, conn), body: make(chan []byte, 1024)}
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 64}); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", host}, {":path", "/v1/events?topic=" + topic}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	headers := make(chan struct{})
	go func() {
		defer close(c.body)
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return
			}
			c.mu.Lock()
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = c.fr.WriteSettingsAck()
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					_ = c.fr.WritePing(true, f.Data)
				}
			case *http2.HeadersFrame:
				close(headers)
			case *http2.DataFrame:
				c.body <- bytes.Clone(f.Data())
			}
			c.mu.Unlock()
		}
	}()
	select {
	case <-headers:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled stream got no response headers")
	}
	return c
}

// grant opens the stream's and the connection's windows wide.
func (c *stalledH2C) grant(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fr.WriteWindowUpdate(1, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		t.Fatal(err)
	}
}

// ids reads the stream's body until it holds n events, and returns their
// ids in order.
func (c *stalledH2C) ids(t *testing.T, n int) []string {
	t.Helper()
	var body []byte
	timeout := time.After(10 * time.Second)
	for {
		var ids []string
		for _, line := range strings.Split(string(body), "\n") {
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				ids = append(ids, id)
			}
		}
		if len(ids) >= n && bytes.HasSuffix(body, []byte("\n\n")) {
			return ids
		}
		select {
		case b, ok := <-c.body:
			if !ok {
				t.Fatalf("the stalled stream ended after %d events: %q", len(ids), body)
			}
			body = append(body, b...)
		case <-timeout:
			t.Fatalf("the stalled stream, given window, brought %d events in 10s, want %d", len(ids), n)
		}
	}
}

// healthyH2C opens one h2c stream of topic per shard that writes such
// streams: as streams are spread over the shards in turn, one of them
// shares a shard with any stream opened before.
func healthyH2C(t *testing.T, s *testServer, topic string) []*stream {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	var healthy []*stream
	for range bridge.ThroughShards(runtime.GOMAXPROCS(0)) {
		st := s.subscribeVia(t, client, "topic="+topic, nil)
		if st.resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s, want HTTP/2", st.resp.Proto)
		}
		healthy = append(healthy, st)
	}
	return healthy
}

// TestStalledHTTP2SubscriberDoesNotDelayOthers: HTTP/2 streams are
// written by shards (shard_through.go), whose writes wait on the client's
// flow-control window. A client that grants none must not hold up the
// other streams of its shard for the write timeout: the shard goes on
// without it, and its events wait in its own queue.
func TestStalledHTTP2SubscriberDoesNotDelayOthers(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{QueueSize: 64, WriteTimeout: time.Minute}})
	stalled := openStalledH2C(t, s.url, "orders.eu")

	healthy := healthyH2C(t, s, "orders.eu")

	msg := &chatv1.ChatMessage{Text: strings.Repeat("x", 200)}
	const n = 20
	var ids []string
	for range n {
		ids = append(ids, s.publish(t, "orders.eu", msg))
	}
	// Each waits at most 10 s; without the watchdog a stream sharing the
	// stalled one's shard would wait the write timeout, a minute.
	for i, st := range healthy {
		for _, id := range ids {
			if ev := st.next(t); ev.LastEventID != id {
				t.Fatalf("healthy stream %d got %q, want %q", i, ev.LastEventID, id)
			}
		}
	}
	if got := metricValue(t, s.url, "herald_sse_stuck_writes_total"); got < 1 {
		t.Fatalf("herald_sse_stuck_writes_total = %v, want at least 1", got)
	}
	// Its events waited in its queue: given window, it gets every one,
	// in order, the one whose write got stuck first.
	stalled.grant(t)
	if got := stalled.ids(t, n); !slices.Equal(got, ids) {
		t.Fatalf("the stalled stream got %q, want %q", got, ids)
	}
}

// TestShutdownDoesNotWaitForAStuckWrite: the goroutine left waiting in a
// stuck write is not the shard's any more, and shutting down does not wait
// for it beyond its context: the server's closing of the connections ends
// the write.
func TestShutdownDoesNotWaitForAStuckWrite(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Config: bridge.Config{WriteTimeout: time.Minute}, ShutsDownItself: true})
	s := &testServer{Server: h.Server, url: h.URL, client: heraldv1.NewPublisherServiceClient(h.Conn)}
	openStalledH2C(t, s.url, "orders.eu")
	healthy := healthyH2C(t, s, "orders.eu")
	msg := &chatv1.ChatMessage{Text: strings.Repeat("x", 200)}
	const n = 4
	for range n {
		s.publish(t, "orders.eu", msg)
	}
	// Every healthy stream got them: the one sharing the stalled one's
	// shard only once the watchdog gave up on its write.
	for _, st := range healthy {
		for range n {
			st.next(t)
		}
	}
	if got := metricValue(t, s.url, "herald_sse_stuck_writes_total"); got < 1 {
		t.Fatalf("herald_sse_stuck_writes_total = %v, want at least 1", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	begun := time.Now()
	err := s.Shutdown(ctx)
	if took := time.Since(begun); took > 5*time.Second {
		t.Fatalf("Shutdown with a 1s context took %v (%v): it waited for the stuck write (write timeout: a minute)", took, err)
	}
}
