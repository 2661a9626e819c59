package bridge

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// streamSendBuffer, when not 0, is the socket send buffer of streams taken
// over; tests set it small to make streams fall behind.
var streamSendBuffer atomic.Int64

// takeOver hijacks a plain HTTP/1.1 stream's connection once its head and
// first bytes are out, for its shard to write to. It returns nil when the
// connection cannot be taken over; the stream then goes on through
// net/http with its queue. The caller watches for the client going away
// (hangups), which net/http no longer does for it.
func (h *streamHandler) takeOver(out *streamOut) net.Conn {
	// Held from Hijack, which ends net/http's tracking of the connection,
	// until the connection is in taken, so that wait never misses it.
	h.takenMu.Lock()
	conn, _, err := out.rc.Hijack()
	if err != nil {
		h.takenMu.Unlock()
		return nil
	}
	if h.taken == nil {
		h.taken = make(map[net.Conn]struct{})
	}
	h.taken[conn] = struct{}{}
	h.takenMu.Unlock()
	// Hijack cleared the deadlines net/http had set and this stream's.
	out.conn, out.deadline = conn, time.Time{}
	if n := streamSendBuffer.Load(); n > 0 {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(int(n))
		}
	}
	return conn
}

// watchByReading watches conn for its client going away with a goroutine
// blocked in Read. SSE clients send nothing after the request: a read
// returns when the client closes the connection (or when it is closed
// here, after the stream ended). A client that does send something is not
// read further, as net/http does: its leaving shows when a write fails.
func watchByReading(h *Hub, conn net.Conn, s *subscriber) {
	go func() {
		var b [1]byte
		if _, err := conn.Read(b[:]); err != nil {
			h.drop(s, dropGone)
		}
	}()
}

// wait waits until the streams taken over from net/http have ended, as
// they do once the hub is closed, or until ctx is done; then it closes
// what is left.
func (h *streamHandler) wait(ctx context.Context) error {
	h.takenMu.Lock()
	if len(h.taken) == 0 {
		h.takenMu.Unlock()
		return nil
	}
	if h.drained == nil {
		h.drained = make(chan struct{})
	}
	done := h.drained
	h.takenMu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.takenMu.Lock()
		for c := range h.taken {
			_ = c.Close()
		}
		h.takenMu.Unlock()
		return ctx.Err()
	}
}
