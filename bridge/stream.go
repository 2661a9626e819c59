package bridge

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/sse"
)

// A stream is one SSE stream once its head and history are written: its
// subscriber, where it writes, and what to release when it ends.
type stream struct {
	h       *streamHandler
	s       *subscriber
	out     *streamOut
	conn    net.Conn // set once taken over from net/http
	direct  bool     // its shard writes to its socket (shard.go)
	through bool     // its shard writes to it through net/http (shard_through.go)
	release func()   // its connection slot
	perms   auth.Permissions
	buf     []byte
	lastSeq uint64    // the last replayed event
	reason  endReason // why it ended
	watch   uint64    // its key in hangups, once taken over

	// A direct stream's goroutine runs only while it has work (wake);
	// expired is set when its token expires, by expiry's function.
	running atomic.Bool
	expired atomic.Bool
	expiry  *time.Timer
}

// run writes what the subscriber's queue brings until the stream ends: the
// client leaves (gone closes), the hub drops it, or its token expires. It
// is the goroutine of a stream that is not direct.
func (st *stream) run(gone <-chan struct{}) {
	defer st.finish()
	s := st.s
	expired, stop := expiryTimer(st.perms)
	defer stop()
	for {
		select {
		case <-expired:
			st.expire()
			return
		case <-s.queue.ready:
			if !st.writeQueued() {
				return
			}
		case <-s.done:
			st.end()
			return
		case <-gone:
			return
		}
	}
}

// wake runs a direct stream's goroutine, if it is not running. A direct
// stream's shard writes its events; the stream itself has work only when
// it lags (its queue), when the hub drops it, or when its token expires,
// and whatever brings that work calls wake. So an idle direct stream has
// no goroutine at all, and a lagging one has one until it has caught up.
func (st *stream) wake() {
	if st.running.CompareAndSwap(false, true) {
		go st.serve()
	}
}

// serve is a direct stream's goroutine: it does what there is to do and
// returns, or ends the stream.
func (st *stream) serve() {
	s := st.s
	for {
		switch {
		case st.expired.Load():
			st.expire()
			st.finish()
			return
		case s.reason.Load() != dropNone:
			st.end()
			st.finish()
			return
		case s.queue.len() > 0:
			if !st.writeQueued() {
				st.finish()
				return
			}
			continue
		}
		if !st.yield() {
			return
		}
	}
}

// yield gives up running a direct stream, whose goroutine found nothing
// left to do. Work that came after it last looked found running still set
// and started no goroutine: yield looks again once running is cleared, and
// reports true when there is some and it took running back to do it.
func (st *stream) yield() bool {
	st.running.Store(false)
	return st.busy() && st.running.CompareAndSwap(false, true)
}

// busy reports whether a direct stream has work for its goroutine.
func (st *stream) busy() bool {
	return st.expired.Load() || st.s.reason.Load() != dropNone || st.s.queue.len() > 0
}

// onExpiry is called when a direct stream's token expires.
func (st *stream) onExpiry() {
	st.expired.Store(true)
	st.wake()
}

// expire ends a stream whose token expired: the client reconnects at once
// and must bring a fresh token.
func (st *stream) expire() {
	st.reason = endExpired
	b := sse.AppendComment(st.buf[:0], "token expired, reconnect with a fresh one")
	st.last(sse.AppendRetry(b, 0))
}

// writeQueued writes what the subscriber's queue holds, a write's worth at
// a time, and reports false when the write failed, which ends the stream.
func (st *stream) writeQueued() bool {
	h, s, out := st.h, st.s, st.out
	it, ok := s.queue.pop()
	if !ok {
		return true
	}
	n := 0
	var b []byte
	if s.queue.len() == 0 {
		// The usual case, one event: its shared frame goes out as it
		// is, not copied.
		b, n = h.frameOf(s, it, st.lastSeq)
	} else {
		// Behind: coalesce what is queued into one write.
		st.buf = st.buf[:0]
		for {
			f, k := h.frameOf(s, it, st.lastSeq)
			st.buf, n = append(st.buf, f...), n+k
			if len(st.buf) >= coalesceMax {
				break
			}
			if it, ok = s.queue.pop(); !ok {
				break
			}
		}
		b = st.buf
	}
	if st.through && s.d.stuck.Load() {
		// Its shard gave up on a write that may still wait, holding
		// direct.mu: this write goes after it.
		s.d.mu.Lock()
		s.d.mu.Unlock()
	}
	if len(b) > 0 && !out.write(b) {
		st.reason = out.failure()
		return false
	}
	h.metrics.delivered.Add(float64(n))
	if cap(st.buf) > 64<<10 {
		st.buf = make([]byte, 0, 512) // don't pin a burst's buffer
	}
	s.queue.rearm() // a write's worth was taken; more may wait
	if st.direct {
		out.settle(s)
	} else if st.through {
		s.d.settle(s)
	}
	return true
}

// end ends a stream the hub dropped, with last words that say why.
func (st *stream) end() {
	h := st.h
	switch st.s.reason.Load() {
	case dropShutdown:
		st.reason = endShutdown
		// Spread the reconnects of all clients over a second or two, so
		// that they do not all land at once.
		jitter := time.Duration(rand.Int64N(int64(time.Second)))
		b := sse.AppendComment(st.buf[:0], "server shutting down, reconnect")
		st.last(sse.AppendRetry(b, (h.retry/2 + jitter).Milliseconds()))
	case dropGone:
		st.reason = endClient
	case dropWrite:
		st.reason = endWrite
	case dropRevoked:
		// EventSource reconnects, is refused with 401, and closes for
		// good.
		st.reason = endRevoked
		st.last(sse.AppendComment(st.buf[:0], "token revoked"))
	default:
		st.reason = endSlow
		// End on a whole frame: write what the shard left of one, if
		// anything, before closing.
		st.last(nil)
	}
}

// last writes a stream's last words (if any), after what its shard left
// unwritten of a frame.
func (st *stream) last(b []byte) {
	if st.direct || st.through {
		if p := st.s.d.detach(); len(p) > 0 && !st.out.write(p) {
			return
		}
	}
	if len(b) > 0 {
		st.out.write(b)
	}
}

// finish releases what the stream held.
func (st *stream) finish() {
	h := st.h
	if st.expiry != nil {
		st.expiry.Stop()
	}
	if st.through {
		st.s.d.detach() // waits out a write of its shard
	}
	if st.conn != nil {
		if st.s.d != nil {
			st.s.d.detach()
		}
		h.hangups.forget(st.watch, st.conn)
		_ = st.conn.Close()
		h.takenMu.Lock()
		delete(h.taken, st.conn)
		if len(h.taken) == 0 && h.drained != nil {
			close(h.drained)
			h.drained = nil
		}
		h.takenMu.Unlock()
	}
	h.metrics.ended[st.reason].Inc()
	h.hub.unsubscribe(st.s)
	st.release()
}

// frameOf returns what to write for a queued item and whether it counts as
// a delivered event: an event's frame (nothing if it was replayed already),
// a heartbeat, or the rest of a frame its shard could not write whole.
func (h *streamHandler) frameOf(s *subscriber, it item, replayed uint64) ([]byte, int) {
	switch {
	case it.kind == itemHeartbeat:
		return heartbeatFrame, 0
	case it.kind == itemRestOfFrame:
		return s.d.takePending(), 0
	case it.ev.Seq <= replayed:
		return nil, 0
	}
	return h.hub.frameFor(it.ev, s.render), 1
}

// streamOut is where a stream's goroutine writes: the ResponseWriter, or
// the connection once it is taken over; and the write deadline in force.
// Arming a deadline updates a runtime timer, which at one per write was a
// noticeable share of a delivery's CPU, so write re-arms it only once an
// eighth of the write timeout has passed, an eighth beyond the timeout:
// every write still gets at least the write timeout, and a stalled one is
// cut within 9/8 of it.
type streamOut struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	conn     net.Conn // set once taken over
	timeout  time.Duration
	deadline time.Time
	err      error // of the last write
}

// write writes b and flushes it within the write timeout.
func (o *streamOut) write(b []byte) bool {
	o.err = o.writeErr(b)
	return o.err == nil
}

func (o *streamOut) writeErr(b []byte) error {
	if now := time.Now(); o.deadline.Sub(now) < o.timeout {
		d := now.Add(o.timeout + o.timeout/8)
		var err error
		if o.conn != nil {
			err = o.conn.SetWriteDeadline(d)
		} else {
			err = o.rc.SetWriteDeadline(d)
		}
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		o.deadline = d
	}
	if o.conn != nil {
		_, err := o.conn.Write(b)
		return err
	}
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	return o.rc.Flush()
}

// failure is why the last write failed: the client took longer than the
// write timeout (too slow), or the connection broke.
func (o *streamOut) failure() endReason {
	if isTimeout(o.err) {
		return endSlow
	}
	return endWrite
}

// settle hands a direct stream whose queue is empty back to its shard,
// clearing the write deadline, which the shard's writes do not use (an
// expired one would fail them).
func (o *streamOut) settle(s *subscriber) {
	if s.queue.len() > 0 {
		return
	}
	if !o.deadline.IsZero() {
		if o.conn.SetWriteDeadline(time.Time{}) != nil {
			return
		}
		o.deadline = time.Time{}
	}
	s.d.settle(s)
}
