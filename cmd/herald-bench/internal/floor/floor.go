// Package floor holds herald-bench's reference servers: the least a server
// can do for the same work, so that Herald's costs can be read as ratios.
// They are bench code, never part of the product.
//
// SSE is the delivery floor: it accepts the same SSE requests as Herald with
// net/http, and writes pre-framed SSE bytes that the harness sends it over a
// plain TCP ingest connection. It does no broker, no JSON and no per-event
// work beyond the writes: one goroutine reads each frame and writes it to
// the topic's subscribers one after another, flushing each. So a subscriber
// that stops reading holds up every other one: with no write timeout, for
// good; with one, for that long per write to it, after which it is cut.
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
// SSEOverGRPC is the delivery floor taking its frames over a grpc-go
// PublishStream instead of the ingest connection: each message's payload
// value is a pre-framed SSE frame, written to its topic's subscribers as
// Ingest writes it, and answered with a fixed acknowledgement. Set beside
// Herald, it shows what the gRPC transport costs a server apart from
// whatever else it does.
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

// A sub is one stream. Its fields are guarded by SSE.mu.
type sub struct {
	w    http.ResponseWriter
	f    http.Flusher
	rc   *http.ResponseController // with a write timeout: deadlines, and flushes that report errors
	conn net.Conn                 // Raw: the hijacked connection
	dead bool
	// gone, with a write timeout, is closed when a write to the stream
	// fails, so that its handler returns and net/http closes the connection.
	gone chan struct{}
}

// SSE is the delivery floor. Serve it on an HTTP listener and feed it
// frames with Ingest.
type SSE struct {
	// Raw makes it hijack connections and write to the bare sockets; set
	// it before serving.
	Raw bool
	// WriteTimeout, when positive, bounds each write to one stream: a
	// stream whose write times out is cut. Zero means no deadline, as a
	// floor for healthy clients needs none. Set it before serving.
	WriteTimeout time.Duration

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

// ServeHTTP accepts GET /v1/events?topic=T (the parameter may repeat) and
// holds the stream open until the client goes away or a write to it fails.
func (s *SSE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	topics := r.URL.Query()["topic"]
	f, ok := w.(http.Flusher)
	if len(topics) == 0 || !ok {
		http.Error(w, "want ?topic=", http.StatusBadRequest)
		return
	}
	if s.Raw {
		s.serveRaw(w, topics)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	c := &sub{w: w, f: f}
	if s.WriteTimeout > 0 {
		c.rc, c.gone = http.NewResponseController(w), make(chan struct{})
	}
	s.mu.Lock() // the headers go out before any frame can
	for _, topic := range topics {
		s.topics[topic] = append(s.topics[topic], c)
	}
	w.WriteHeader(http.StatusOK)
	f.Flush()
	s.mu.Unlock()
	select {
	case <-r.Context().Done():
	case <-c.gone:
	}
	s.mu.Lock()
	c.dead = true
	for _, topic := range topics {
		subs := s.topics[topic]
		for i, x := range subs {
			if x == c {
				subs[i] = subs[len(subs)-1]
				subs[len(subs)-1] = nil
				s.topics[topic] = subs[:len(subs)-1]
				break
			}
		}
	}
	s.mu.Unlock()
}

const rawHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"

func (s *SSE) serveRaw(w http.ResponseWriter, topics []string) {
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
	for _, topic := range topics {
		s.topics[topic] = append(s.topics[topic], c)
	}
}

// write writes b to c. The caller holds s.mu.
func (s *SSE) write(c *sub, b []byte) {
	if c.dead {
		return
	}
	if c.conn != nil {
		if s.WriteTimeout > 0 {
			_ = c.conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		}
		if _, err := c.conn.Write(b); err != nil {
			c.dead = true
			c.conn.Close()
		}
		return
	}
	if c.rc == nil {
		if _, err := c.w.Write(b); err != nil {
			c.dead = true
			return
		}
		c.f.Flush()
		return
	}
	_ = c.rc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	_, err := c.w.Write(b)
	if err == nil {
		err = c.rc.Flush()
	}
	if err != nil {
		c.dead = true
		close(c.gone)
	}
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

// Publish accepts POST /v1/topics/{topic}/events, the REST publish, for
// scenarios run with a REST publisher: it reads the body and writes it,
// as it is, as the data line of a frame to the topic's subscribers (the
// harness finds its stamp by a scan, so the body needs no decoding), then
// answers with a fixed id. It is the least a REST publish can cost: no
// JSON, no schema, no broker.
func (s *SSE) Publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxFrame))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	frame := make([]byte, 0, len(body)+64)
	frame = append(frame, "event: chat.v1.ChatMessage\ndata: "...)
	frame = append(frame, body...)
	frame = append(frame, "\n\n"...)
	s.mu.Lock()
	for _, c := range s.topics[r.PathValue("topic")] {
		s.write(c, frame)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"floor-1"}`)
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

// SSEOverGRPC is the SSE floor's gRPC ingest (see the package comment).
type SSEOverGRPC struct {
	heraldv1.UnimplementedPublisherServiceServer
	SSE *SSE
}

// PublishStream implements herald.v1.PublisherService.
func (g SSEOverGRPC) PublishStream(stream grpc.BidiStreamingServer[heraldv1.PublishRequest, heraldv1.PublishResponse]) error {
	s := g.SSE
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		frame := req.GetPayload().GetValue()
		s.mu.Lock()
		for _, c := range s.topics[req.GetTopic()] {
			s.write(c, frame)
		}
		s.mu.Unlock()
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}
