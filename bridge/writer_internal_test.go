package bridge

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoregistry"
)

// loopbackPair returns the two ends of a loopback TCP connection, the
// server end with a small send buffer.
func loopbackPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); sc.Close() })
	_ = sc.(*net.TCPConn).SetWriteBuffer(8 << 10)
	return sc.(*net.TCPConn), c.(*net.TCPConn)
}

// A shard's write that the socket takes only in part leaves the rest to
// the stream's goroutine; when that goroutine takes the connection back
// for the stream's last words before it wrote the rest, detach must hand
// the rest over, or the client would get a torn frame.
func TestDetachHandsOverTheUnwrittenRest(t *testing.T) {
	h := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), newMetrics(), 4)
	sh := newShard(h)
	srv, cli := loopbackPair(t)
	s := &subscriber{queue: make(chan *Event, 4), done: make(chan struct{}), d: &direct{lag: make(chan struct{}, 1)}}
	if !s.d.attach(srv) {
		t.Fatal("a TCP connection cannot be written directly")
	}
	frame := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: more than the buffers hold
	s.d.mu.Lock()
	sh.writeLocked(s, frame)
	lagging := s.d.lagging
	s.d.mu.Unlock()
	if !lagging {
		t.Fatal("a write the socket could not take whole did not put the subscriber behind")
	}

	rest := s.d.detach()
	if len(rest) == 0 || len(rest) >= len(frame) {
		t.Fatalf("detach returned %d bytes of a %d-byte frame, want the unwritten part", len(rest), len(frame))
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(cli)
		got <- b
	}()
	_ = srv.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := srv.Write(rest); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if b := <-got; !bytes.Equal(b, frame) {
		t.Fatalf("client got %d bytes, not the frame", len(b))
	}

	// Once detached, the shard leaves the connection alone.
	s.d.mu.Lock()
	closed := s.d.closed
	s.d.mu.Unlock()
	if !closed {
		t.Fatal("detach did not close the subscriber to its shard")
	}
}
