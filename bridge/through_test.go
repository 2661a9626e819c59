package bridge_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
)

// stalledH2C opens an h2c stream of topic as a client that grants the
// server 64 bytes of window on it and never more: after the first few
// bytes, every write to the stream waits. It answers the server's
// SETTINGS and PINGs, so the connection itself stays healthy.
func stalledH2C(t *testing.T, url, topic string) net.Conn {
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
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 64}); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", host}, {":path", "/v1/events?topic=" + topic}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	headers := make(chan struct{})
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					_ = fr.WritePing(true, f.Data)
				}
			case *http2.HeadersFrame:
				close(headers)
			}
		}
	}()
	select {
	case <-headers:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled stream got no response headers")
	}
	return conn
}

// TestStalledHTTP2SubscriberDoesNotDelayOthers: HTTP/2 streams are
// written by shards (shard_through.go), whose writes wait on the client's
// flow-control window. A client that grants none must not hold up the
// other streams of its shard for the write timeout: the shard goes on
// without it, and its events wait in its own queue.
func TestStalledHTTP2SubscriberDoesNotDelayOthers(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{QueueSize: 64, WriteTimeout: time.Minute}})
	stalledH2C(t, s.url, "orders.eu")

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	// Streams are spread over one shard per core in turn: as many as
	// there are cores share a shard with the stalled one.
	var healthy []*stream
	for range runtime.GOMAXPROCS(0) {
		st := s.subscribeVia(t, client, "topic=orders.eu", nil)
		if st.resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s, want HTTP/2", st.resp.Proto)
		}
		healthy = append(healthy, st)
	}

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
}
