package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	"github.com/heraldhq/herald/internal/poll"
)

// rawSubscribe opens a plain HTTP/1.1 SSE stream on its own socket and
// returns the connection with the response head read. A test that wants the
// server's writes to fill the socket makes the server's send buffer small
// (bridge.SetStreamSendBuffer) and stops reading.
func rawSubscribe(t *testing.T, s *testServer, query string) (net.Conn, *bufio.Reader, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /v1/events?%s HTTP/1.1\r\nHost: herald\r\nAccept: text/event-stream\r\n\r\n", query)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return conn, r, resp.Header
}

// readEvents parses the stream with go-sse until want events arrived or
// the stream ended, and returns them.
func readEvents(t *testing.T, r io.Reader, want int) []gosse.Event {
	t.Helper()
	var evs []gosse.Event
	for ev, err := range gosse.Read(r, &gosse.ReadConfig{MaxEventSize: 4 << 20}) {
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
		if len(evs) == want {
			break
		}
	}
	return evs
}

// A plain HTTP/1.1 stream whose client stops reading falls behind its
// shard mid-frame: the rest of that frame and everything after it must
// reach the client, whole and in order, once it reads again.
func TestDirectStreamFallsBehindAndCatchesUp(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{QueueSize: 4096, WriteTimeout: 30 * time.Second}})
	conn, r, hdr := rawSubscribe(t, s, "topic=chat.rooms.big")
	if te := hdr.Get("Transfer-Encoding"); te != "" {
		t.Errorf("Transfer-Encoding %q: a taken-over stream is not chunked", te)
	}

	// 400 events of ~40 KB: 16 MB, far more than two loopback socket
	// buffers hold, published while the client reads nothing.
	const n = 400
	text := strings.Repeat("ü", 20000)
	var ids []string
	for i := range n {
		ids = append(ids, s.publish(t, "chat.rooms.big", &chatv1.ChatMessage{Room: "big", MessageId: fmt.Sprint(i), Text: text}))
	}
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	evs := readEvents(t, r, n)
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if ev.LastEventID != ids[i] {
			t.Fatalf("event %d has id %q, want %q", i, ev.LastEventID, ids[i])
		}
		var m chatv1.ChatMessage
		if err := protojson.Unmarshal([]byte(ev.Data), &m); err != nil {
			t.Fatalf("event %d: data is not whole JSON: %v", i, err)
		}
		if m.GetMessageId() != fmt.Sprint(i) || m.GetText() != text {
			t.Fatalf("event %d carries message %q with %d bytes of text", i, m.GetMessageId(), len(m.GetText()))
		}
	}

	// Caught up, the shard writes to it again.
	id := s.publish(t, "chat.rooms.big", &chatv1.ChatMessage{Room: "big", MessageId: "after", Text: "short"})
	if evs := readEvents(t, r, 1); evs[0].LastEventID != id {
		t.Fatalf("after catching up got %q, want %q", evs[0].LastEventID, id)
	}
}

// net/http no longer watches a taken-over connection: Herald must notice
// the client leaving by itself, without waiting for a write to fail, so
// that its connection slot is freed at once.
func TestDirectStreamClientLeavingFreesItsSlot(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{MaxConnections: 1, HeartbeatInterval: time.Hour}})
	conn, _, _ := rawSubscribe(t, s, "topic=orders.eu")
	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(s.url + "/v1/events?topic=orders.eu")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot of a closed stream was not freed: status %d", resp.StatusCode)
		}
		<-tick.C
	}
}

// A stream that is behind when the server shuts down still ends on a whole
// frame, followed by the reconnect hint; Shutdown waits for it.
func TestShutdownEndsLaggingDirectStreamOnAWholeFrame(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{QueueSize: 4096, WriteTimeout: 20 * time.Second}})
	conn, r, _ := rawSubscribe(t, s, "topic=chat.rooms.big")
	text := strings.Repeat("x", 50000)
	for i := range 200 {
		s.publish(t, "chat.rooms.big", &chatv1.ChatMessage{MessageId: fmt.Sprint(i), Text: text})
	}

	var wg sync.WaitGroup
	var shutdownErr error
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shutdownErr = s.Shutdown(ctx)
	})
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	body, err := io.ReadAll(r)
	wg.Wait()
	if err != nil {
		t.Fatalf("stream did not end cleanly: %v", err)
	}
	if shutdownErr != nil {
		t.Fatalf("shutdown: %v", shutdownErr)
	}
	if tail := string(body[max(0, len(body)-200):]); !strings.HasSuffix(tail, "\n") || !strings.Contains(tail, "\n\n: server shutting down, reconnect\nretry: ") {
		t.Fatalf("stream ended with %q, want a reconnect hint after whole frames", body[max(0, len(body)-200):])
	}
	evs := readEvents(t, strings.NewReader(string(body)), -1)
	if len(evs) == 0 {
		t.Fatal("no event before the end")
	}
	for i, ev := range evs {
		var m chatv1.ChatMessage
		if err := protojson.Unmarshal([]byte(ev.Data), &m); err != nil || m.GetMessageId() != fmt.Sprint(i) || m.GetText() != text {
			t.Fatalf("event %d is torn or out of order (id %q, %d bytes of data): %v", i, ev.LastEventID, len(ev.Data), err)
		}
	}
}

// A client that reads in spurts while events keep coming makes its stream
// fall behind and catch up again and again, with new events arriving while
// it catches up: every event must still arrive once, whole and in order.
func TestDirectStreamFallingBehindRepeatedlyKeepsOrder(t *testing.T) {
	defer bridge.SetStreamSendBuffer(16 << 10)()
	s := startServer(t, serverOpts{cfg: bridge.Config{QueueSize: 8192, WriteTimeout: 30 * time.Second}})
	conn, r, _ := rawSubscribe(t, s, "topic=chat.rooms.big")
	_ = conn.(*net.TCPConn).SetReadBuffer(32 << 10)
	const n = 1500
	text := strings.Repeat("ë", 3000) // ~6 KB events

	var published atomic.Int64
	go func() {
		stream, err := s.client.PublishStream(t.Context())
		if err != nil {
			t.Error(err)
			return
		}
		for i := range n {
			if err := stream.Send(request(t, "chat.rooms.big", &chatv1.ChatMessage{MessageId: fmt.Sprint(i), Text: text})); err != nil {
				t.Error(err)
				return
			}
			if _, err := stream.Recv(); err != nil {
				t.Error(err)
				return
			}
			published.Add(1)
		}
	}()

	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	i := 0
	for ev, err := range gosse.Read(r, &gosse.ReadConfig{MaxEventSize: 4 << 20}) {
		if err != nil {
			t.Fatalf("after %d events: %v", i, err)
		}
		var m chatv1.ChatMessage
		if err := protojson.Unmarshal([]byte(ev.Data), &m); err != nil || m.GetMessageId() != fmt.Sprint(i) {
			t.Fatalf("event %d: id %q, message %q: %v", i, ev.LastEventID, m.GetMessageId(), err)
		}
		if i++; i == n {
			break
		}
		// Every 40 events, stop reading until 80 more (~500 KB, more
		// than the socket buffers hold) are published, then read on
		// while publishing goes on.
		if i%40 == 0 {
			for published.Load() < int64(min(n, i+80)) && t.Context().Err() == nil {
				<-tick.C
			}
		}
	}
	if i != n {
		t.Fatalf("stream ended after %d events, want %d", i, n)
	}
}

// A heartbeat is a comment line in every JSON rendering, on direct streams
// (HTTP/1.1) and queued ones (HTTP/2) alike: never an event, never an id.
func TestHeartbeatsWithARenderingAreComments(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{HeartbeatInterval: 10 * time.Millisecond}})
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	for _, tc := range []struct {
		name  string
		proto int
		rt    http.RoundTripper
	}{{"HTTP/1.1", 1, http.DefaultTransport}, {"HTTP/2", 2, h2c}} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+"/v1/events?topic=orders.eu&proto_names=true", nil)
			resp, err := tc.rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != tc.proto {
				t.Fatalf("protocol %s", resp.Proto)
			}
			r := bufio.NewReader(resp.Body)
			comments := 0
			for comments < 3 {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case strings.HasPrefix(line, ":"):
					comments++
				case line == "\n", strings.HasPrefix(line, "retry: "):
				default:
					t.Fatalf("before any event the stream sent %q, want only heartbeat comments", line)
				}
			}
			id := s.publish(t, "orders.eu", order("o-1"))
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasPrefix(line, ":") || line == "\n" {
					continue
				}
				if line != "id: "+id+"\n" {
					t.Fatalf("the first event line is %q, want the published event's id %q", line, id)
				}
				return
			}
		})
	}
}

// An idle plain HTTP/1.1 stream costs no goroutine: its shard writes its
// events, the node's hang-up watcher notices its client leaving, and its
// own goroutine runs only while it has work (a queue to catch up on, its
// end). Idle memory per connection depends on it: a goroutine's stack is
// more than the rest of an idle stream together.
func TestIdleDirectStreamsHoldNoGoroutine(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{HeartbeatInterval: time.Hour}})
	before := runtime.NumGoroutine()
	const n = 200
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], readers[i], _ = rawSubscribe(t, s, fmt.Sprintf("topic=orders.t%d", i%3))
	}
	// The handlers return once their streams are taken over.
	poll.Until(t, 10*time.Second, fmt.Sprintf("%d idle streams to hold well under one goroutine each", n), func() bool {
		return runtime.NumGoroutine() < before+n/4
	})
	// And they still get their events, and notice the client leaving.
	id := s.publish(t, "orders.t1", order("after"))
	for i := 1; i < n; i += 3 {
		_ = conns[i].SetReadDeadline(time.Now().Add(20 * time.Second))
		if evs := readEvents(t, readers[i], 1); evs[0].LastEventID != id {
			t.Fatalf("stream %d got %q, want %q", i, evs[0].LastEventID, id)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	poll.Until(t, 10*time.Second, "every subscriber gone once its client closed", func() bool {
		return metricValue(t, s.url, "herald_subscribers") == 0
	})
}
