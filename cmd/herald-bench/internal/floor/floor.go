// Package floor holds herald-bench's reference servers: the least a server
// can do for the same work, so that Herald's costs can be read as ratios.
// They are bench code, never part of the product.
//
// SSE is the delivery floor: it accepts the same SSE requests as Herald with
// net/http, and writes pre-framed SSE bytes that the harness sends it over a
// plain TCP ingest connection. It does no broker, no JSON and no per-event
// work beyond the writes: one goroutine reads each frame and writes it to
// the topic's subscribers one after another, flushing each.
//
// With Raw set, the SSE floor is leaner still, down to the sockets: each
// handler hijacks its connection, writes the response head itself (no
// chunked encoding: the body ends when the connection does) and returns, so
// that no goroutine and no net/http buffer stays behind per connection;
// frames go to the bare socket in one write each, and a client that left
// is noticed when a write to it fails. This is the machine's limit more
// than a server's: Herald, built on net/http, cannot go below the first
// floor without leaving net/http.
//
// GRPC is the publish floor: herald.v1.PublisherService with nothing behind
// it, answering every Publish and every PublishStream message with a fixed
// acknowledgement.
package floor

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// MaxFrame bounds one ingest frame.
const MaxFrame = 1 << 20

// AppendIngest appends one ingest message: a big-endian uint16 topic
// length, a uint32 frame length, the topic, then the frame bytes.
func AppendIngest(dst []byte, topic string, frame []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(topic)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(frame)))
	dst = append(dst, topic...)
	return append(dst, frame...)
}

// ReadIngest reads one ingest message into buf (grown as needed) and
// returns the topic and frame, which alias buf.
func ReadIngest(r *bufio.Reader, buf []byte) (topic, frame, grown []byte, err error) {
	var hdr [6]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, buf, err
	}
	tn := int(binary.BigEndian.Uint16(hdr[:2]))
	fn := int(binary.BigEndian.Uint32(hdr[2:]))
	if fn > MaxFrame {
		return nil, nil, buf, fmt.Errorf("floor: ingest frame of %d bytes", fn)
	}
	if cap(buf) < tn+fn {
		buf = make([]byte, tn+fn)
	}
	buf = buf[:tn+fn]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, nil, buf, err
	}
	return buf[:tn], buf[tn:], buf, nil
}

type sub struct {
	w    http.ResponseWriter
	f    http.Flusher
	conn net.Conn // Raw: the hijacked connection
	dead bool
}

// SSE is the delivery floor. Serve it on an HTTP listener and feed it
// frames with Ingest.
type SSE struct {
	// Raw makes it hijack connections and write to the bare sockets; set
	// it before serving.
	Raw bool

	mu     sync.Mutex // held while writing, so no handler returns mid-write
	topics map[string][]*sub
}

// NewSSE returns an SSE floor that sends a heartbeat comment to every
// stream once per heartbeat, from the same lock as the frames.
func NewSSE(heartbeat time.Duration, stop <-chan struct{}) *SSE {
	s := &SSE{topics: make(map[string][]*sub)}
	go func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		hb := []byte(":\n")
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.mu.Lock()
				for _, subs := range s.topics {
					for _, c := range subs {
						s.write(c, hb)
					}
				}
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// ServeHTTP accepts GET /v1/events?topic=T (one topic) and holds the
// stream open until the client goes away.
func (s *SSE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	topic := r.URL.Query().Get("topic")
	f, ok := w.(http.Flusher)
	if topic == "" || !ok {
		http.Error(w, "want ?topic=", http.StatusBadRequest)
		return
	}
	if s.Raw {
		s.serveRaw(w, topic)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	c := &sub{w: w, f: f}
	s.mu.Lock() // the headers go out before any frame can
	s.topics[topic] = append(s.topics[topic], c)
	w.WriteHeader(http.StatusOK)
	f.Flush()
	s.mu.Unlock()
	<-r.Context().Done()
	s.mu.Lock()
	c.dead = true
	subs := s.topics[topic]
	for i, x := range subs {
		if x == c {
			subs[i] = subs[len(subs)-1]
			subs[len(subs)-1] = nil
			s.topics[topic] = subs[:len(subs)-1]
			break
		}
	}
	s.mu.Unlock()
}

const rawHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"

func (s *SSE) serveRaw(w http.ResponseWriter, topic string) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	conn, _, err := hj.Hijack() // the client sends nothing more
	if err != nil {
		return
	}
	c := &sub{conn: conn}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := io.WriteString(conn, rawHead); err != nil {
		conn.Close()
		return
	}
	s.topics[topic] = append(s.topics[topic], c)
}

func (s *SSE) write(c *sub, b []byte) {
	if c.dead {
		return
	}
	if c.conn != nil {
		if _, err := c.conn.Write(b); err != nil {
			c.dead = true
			c.conn.Close()
		}
		return
	}
	if _, err := c.w.Write(b); err != nil {
		c.dead = true
		return
	}
	c.f.Flush()
}

// Ingest reads frames from conn until it closes, writing each to its
// topic's subscribers one after another.
func (s *SSE) Ingest(conn net.Conn) error {
	r := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	for {
		topic, frame, grown, err := ReadIngest(r, buf)
		buf = grown
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		for _, c := range s.topics[string(topic)] {
			s.write(c, frame)
		}
		s.mu.Unlock()
	}
}

// GRPC is the publish floor: it acknowledges every message and does
// nothing else.
type GRPC struct {
	heraldv1.UnimplementedPublisherServiceServer
}

var ack = &heraldv1.PublishResponse{Id: "floor-1"}

// Publish implements herald.v1.PublisherService.
func (GRPC) Publish(ctx context.Context, _ *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error) {
	return ack, nil
}

// PublishStream implements herald.v1.PublisherService.
func (GRPC) PublishStream(stream grpc.BidiStreamingServer[heraldv1.PublishRequest, heraldv1.PublishResponse]) error {
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}
