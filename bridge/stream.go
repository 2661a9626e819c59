package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/heraldhq/herald/internal/sse"
)

// GapEventType is the SSE event sent to a resuming client whose
// Last-Event-ID reaches back further than the retained history (or cannot be
// placed in it): events may have been missed between that id and the events
// replayed after this one. Its data is a JSON object:
//
//	{"lastEventId": "<the id the client sent>", "reason": "<why>"}
const GapEventType = "herald.gap"

// streamHandler serves GET /v1/events: one SSE stream per request.
type streamHandler struct {
	hub          *Hub
	log          *slog.Logger
	metrics      *metrics
	retry        time.Duration // reconnect hint sent on connect
	writeTimeout time.Duration
	auth         Authenticator // nil: everything allowed
	cookie       string
	queryToken   bool
	maxTopics    int
	conns        *connLimiter
	// taken are the connections taken over from net/http, which its
	// Shutdown neither waits for nor closes.
	takenMu sync.Mutex
	taken   map[net.Conn]struct{}
	drained chan struct{} // closed when taken empties, if wait waits
}

// subscription is a parsed GET /v1/events request.
type subscription struct {
	patterns []Pattern
	// lastEventID is the raw resume position; resume is false when the
	// client sent none.
	lastEventID string
	resume      bool
	// render is the JSON form asked for; nil for the default.
	render *Rendering
}

func parseSubscription(r *http.Request, maxTopics int) (subscription, error) {
	var sub subscription
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return sub, fmt.Errorf("%w: malformed query string: %v", ErrBadRequest, err)
	}
	for k := range q {
		if k != "topic" && k != "last_event_id" && k != "access_token" && !slices.Contains(renderParams, k) {
			return sub, fmt.Errorf("%w: unknown query parameter %q (expected topic, last_event_id, access_token, %s)", ErrBadRequest, printable(k), strings.Join(renderParams, ", "))
		}
	}
	if sub.render, err = parseRendering(q); err != nil {
		return sub, err
	}
	topics := q["topic"]
	if len(topics) == 0 {
		return sub, fmt.Errorf("%w: no topic: give one or more ?topic= parameters", ErrBadRequest)
	}
	if len(topics) > maxTopics {
		return sub, fmt.Errorf("%w: %d topics, more than the limit of %d per subscription", ErrBadRequest, len(topics), maxTopics)
	}
	seen := make(map[string]bool, len(topics))
	for _, t := range topics {
		if seen[t] {
			continue
		}
		seen[t] = true
		p, err := ParsePattern(t)
		if err != nil {
			return sub, err
		}
		sub.patterns = append(sub.patterns, p)
	}
	// The header is what EventSource sends when it reconnects, so it is
	// newer than a last_event_id the page put in the URL.
	if ids := r.Header.Values("Last-Event-ID"); len(ids) > 0 {
		sub.lastEventID, sub.resume = ids[0], true
	} else if ids := q["last_event_id"]; len(ids) > 0 {
		sub.lastEventID, sub.resume = ids[0], true
	}
	if sub.resume && sub.lastEventID == "" {
		sub.resume = false // an empty id means "no position", as in EventSource
	}
	return sub, nil
}

func (h *streamHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sub, err := parseSubscription(r, h.maxTopics)
	if err == nil && sub.render != nil {
		err = checkFields(h.hub.types, sub.render.Fields)
	}
	if err == nil && !h.queryToken && r.URL.Query().Has("access_token") {
		err = fmt.Errorf("%w: this server does not take tokens in the access_token query parameter (--auth-query-token); use a cookie or the Authorization header", ErrBadRequest)
	}
	var perms Permissions
	if err == nil && h.auth != nil {
		creds := httpCredentials(r, h.cookie, h.queryToken)
		if perms, err = h.auth.Authenticate(r.Context(), creds); err == nil {
			err = authorizeSubscribe(creds, perms, sub.patterns)
		}
	}
	var release func()
	if err == nil {
		release, err = h.conns.acquire(r)
	}
	if err != nil {
		h.refuse(w, err)
		return
	}
	// A plain HTTP/1.1 stream can be written by the hub's shards directly
	// once its head is out (writer.go); others keep a goroutine writing.
	plain := r.ProtoMajor == 1 && r.TLS == nil
	var s *subscriber
	if plain {
		s, err = h.hub.subscribeDirect(sub.patterns, sub.render)
	} else {
		s, err = h.hub.subscribe(sub.patterns, sub.render)
	}
	if err != nil {
		release()
		// Shutting down. A 503 would close an EventSource for good: send
		// it away like the streams that were open, to reconnect elsewhere.
		hdr := w.Header()
		hdr.Set("Content-Type", "text/event-stream")
		hdr.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		b := sse.AppendComment(nil, "server shutting down, reconnect")
		_, _ = w.Write(sse.AppendRetry(b, (h.retry/2 + time.Duration(rand.Int64N(int64(time.Second)))).Milliseconds()))
		return
	}
	st := &stream{h: h, s: s, release: release, perms: perms, reason: "client"}
	st.out = &streamOut{w: w, rc: http.NewResponseController(w), timeout: h.writeTimeout}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Del("Content-Length")
	if s.d != nil {
		// No chunked encoding: the body runs until the connection
		// closes, as the SSE specification suggests, so that frames can
		// go to the socket as they are. net/http then closes the
		// connection after the response.
		hdr.Set("Transfer-Encoding", "identity")
	}
	w.WriteHeader(http.StatusOK)

	// The first bytes go out at once, so that onopen fires and proxies see
	// a live response. Replayed events (if any) follow in the same flush.
	st.buf = sse.AppendRetry(make([]byte, 0, 512), h.retry.Milliseconds())
	if sub.resume {
		var ok bool
		if st.lastSeq, st.buf, ok = h.replay(r.Context(), st.out, sub, s.render, st.buf); !ok {
			st.reason = "write"
			st.finish()
			return
		}
	}
	if !st.out.write(st.buf) {
		st.reason = "write"
		st.finish()
		return
	}

	if s.d != nil {
		if conn := h.takeOver(st.out, s); conn != nil {
			st.conn = conn
			if s.d.attach(conn) {
				// The shard writes to this stream whenever it does
				// not lag.
				st.direct = true
				s.d.mu.Lock()
				s.d.minSeq = st.lastSeq
				s.d.mu.Unlock()
				st.out.settle(s)
			}
			// The connection is the stream's now: this handler returns,
			// and net/http lets go of its goroutine and buffers for it.
			// The stream needs a buffer of its own only when it is behind.
			st.out.w, st.out.rc = nil, nil
			st.buf = nil
			go st.run(nil)
			return
		}
	}
	st.run(r.Context().Done())
}

// A stream is one SSE stream once its head and history are written: its
// subscriber, where it writes, and what to release when it ends.
type stream struct {
	h       *streamHandler
	s       *subscriber
	out     *streamOut
	conn    net.Conn // set once taken over from net/http
	direct  bool     // its shard writes to it (writer.go)
	release func()   // its connection slot
	perms   Permissions
	buf     []byte
	lastSeq uint64 // the last replayed event
	reason  string // why it ended, for herald_sse_streams_ended_total
}

// run writes what the subscriber's queue brings until the stream ends: the
// client leaves (gone closes), the hub drops it, or its token expires.
func (st *stream) run(gone <-chan struct{}) {
	defer st.finish()
	h, s, out := st.h, st.s, st.out
	expired, stop := expiryTimer(st.perms)
	defer stop()
	for {
		select {
		case <-expired:
			// The client reconnects at once and must bring a fresh token.
			st.reason = "expired"
			b := sse.AppendComment(st.buf[:0], "token expired, reconnect with a fresh one")
			st.last(sse.AppendRetry(b, 0))
			return
		case ev := <-s.queue:
			n := 0
			var b []byte
			if len(s.queue) == 0 {
				// The usual case, one event: its shared frame goes out
				// as it is, not copied.
				b, n = h.frameOf(s, ev, st.lastSeq)
			} else {
				// Behind: coalesce what is queued into one write.
				st.buf = st.buf[:0]
				for {
					f, k := h.frameOf(s, ev, st.lastSeq)
					st.buf, n = append(st.buf, f...), n+k
					if len(st.buf) >= coalesceMax || len(s.queue) == 0 {
						break
					}
					ev = <-s.queue
				}
				b = st.buf
			}
			if len(b) > 0 && !out.write(b) {
				st.reason = "write"
				return
			}
			h.metrics.delivered.Add(float64(n))
			if cap(st.buf) > 64<<10 {
				st.buf = make([]byte, 0, 512) // don't pin a burst's buffer
			}
			if st.direct {
				out.settle(s)
			}
		case <-s.done:
			switch s.reason.Load() {
			case dropShutdown:
				st.reason = "shutdown"
				// Spread the reconnects of all clients over a second or
				// two, so that they do not all land at once.
				jitter := time.Duration(rand.Int64N(int64(time.Second)))
				b := sse.AppendComment(st.buf[:0], "server shutting down, reconnect")
				st.last(sse.AppendRetry(b, (h.retry/2 + jitter).Milliseconds()))
			case dropGone:
				st.reason = "client"
			case dropWrite:
				st.reason = "write"
			default:
				st.reason = "slow"
				// End on a whole frame: write what the shard left of
				// one, if anything, before closing.
				st.last(nil)
			}
			return
		case <-gone:
			return
		}
	}
}

// last writes a stream's last words (if any), after what its shard left
// unwritten of a frame.
func (st *stream) last(b []byte) {
	if st.direct {
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
	if st.conn != nil {
		if st.s.d != nil {
			st.s.d.detach()
		}
		_ = st.conn.Close()
		h.takenMu.Lock()
		delete(h.taken, st.conn)
		if len(h.taken) == 0 && h.drained != nil {
			close(h.drained)
			h.drained = nil
		}
		h.takenMu.Unlock()
	}
	h.metrics.streams.WithLabelValues(st.reason).Inc()
	h.hub.unsubscribe(st.s)
	st.release()
}

// streamSendBuffer, when not 0, is the socket send buffer of streams taken
// over; tests set it small to make streams fall behind.
var streamSendBuffer atomic.Int64

// frameOf returns what to write for a queued item and whether it counts as
// a delivered event: an event's frame (nothing if it was replayed already),
// a heartbeat, or the rest of a frame its shard could not write whole.
func (h *streamHandler) frameOf(s *subscriber, ev *Event, replayed uint64) ([]byte, int) {
	switch {
	case ev == heartbeat:
		return h.hub.frameFor(ev, nil), 0
	case ev == restOfFrame:
		return s.d.takePending(), 0
	case ev.Seq <= replayed:
		return nil, 0
	}
	return h.hub.frameFor(ev, s.render), 1
}

// takeOver hijacks a plain HTTP/1.1 stream's connection once its head and
// first bytes are out, for its shard to write to, and watches for the
// client going away, which net/http no longer does for it. It returns nil
// when the connection cannot be taken over; the stream then goes on
// through net/http with its queue.
func (h *streamHandler) takeOver(out *streamOut, s *subscriber) net.Conn {
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
	go func() {
		// SSE clients send nothing after the request: a read returns
		// when the client closes the connection (or when it is closed
		// here, after the stream ended). A client that does send
		// something is not read further, as net/http does: its leaving
		// shows when a write fails.
		var b [1]byte
		if _, err := conn.Read(b[:]); err != nil {
			h.hub.drop(s, dropGone)
		}
	}()
	return conn
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

// replay writes the retained events after sub.lastEventID into buf,
// flushing as it grows, preceded by a gap event when the history does not
// reach back that far. It returns the last replayed Seq.
func (h *streamHandler) replay(ctx context.Context, out *streamOut, sub subscription, render *Rendering, buf []byte) (uint64, []byte, bool) {
	res, err := h.hub.resume(ctx, sub.patterns, sub.lastEventID)
	if err != nil {
		// Ask the client to come back with the same Last-Event-ID rather
		// than skip what it missed.
		h.log.Warn("cannot resume a stream; the client will retry", "err", err)
		buf = sse.AppendComment(buf, "history unavailable, reconnecting")
		out.write(buf)
		return 0, nil, false
	}
	if res.gap != "" {
		data, _ := json.Marshal(struct {
			LastEventID string `json:"lastEventId"`
			Reason      string `json:"reason"`
		}{sub.lastEventID, res.gap})
		buf = sse.AppendEvent(buf, "", GapEventType, data)
	}
	for _, ev := range res.events {
		buf = append(buf, h.hub.frameFor(ev, render)...)
		if len(buf) >= coalesceMax {
			if !out.write(buf) {
				return 0, nil, false
			}
			buf = buf[:0]
		}
	}
	h.metrics.delivered.Add(float64(len(res.events)))
	return res.lastSeq, buf, true
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
}

// write writes b and flushes it within the write timeout.
func (o *streamOut) write(b []byte) bool {
	if now := time.Now(); o.deadline.Sub(now) < o.timeout {
		d := now.Add(o.timeout + o.timeout/8)
		var err error
		if o.conn != nil {
			err = o.conn.SetWriteDeadline(d)
		} else {
			err = o.rc.SetWriteDeadline(d)
		}
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		o.deadline = d
	}
	if o.conn != nil {
		_, err := o.conn.Write(b)
		return err == nil
	}
	if _, err := o.w.Write(b); err != nil {
		return false
	}
	return o.rc.Flush() == nil
}

// settle hands a direct stream whose queue is empty back to its shard,
// clearing the write deadline, which the shard's writes do not use (an
// expired one would fail them).
func (o *streamOut) settle(s *subscriber) {
	if len(s.queue) > 0 {
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

// refuse answers a subscription that cannot start with a real status and a
// JSON error body, so that EventSource gives up instead of reconnecting.
func (h *streamHandler) refuse(w http.ResponseWriter, err error) {
	code := HTTPStatus(err)
	h.metrics.refused.WithLabelValues(fmt.Sprint(code)).Inc()
	var limit *LimitError
	switch {
	case errors.As(err, &limit):
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(limit.RetryAfter.Seconds()))))
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	}
	writeError(w, err)
}

// writeError writes err as the REST API's error body:
// {"code": <gRPC code>, "message": "..."}.
func writeError(w http.ResponseWriter, err error) {
	c := Code(err)
	msg := err.Error()
	if c == codes.Internal { // never show internal causes
		msg = "internal error"
	}
	body, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{int(c), msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(HTTPStatus(err))
	_, _ = w.Write(append(body, '\n'))
}
