package bridge

import (
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/sse"
)

// The SSE handler: GET /v1/events parses and authorizes a subscription,
// subscribes it to the hub, writes the response head and the history it
// resumes from, then hands the stream over: to the shards (takeover.go) for
// a plain HTTP/1.1 connection, or to its own goroutine (stream.go).

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
	auth         auth.Authenticator // nil: everything allowed
	cookie       string
	queryToken   bool
	maxTopics    int
	conns        *connLimiter
	// resumeFailures paces the log line of resumes the broker could not
	// serve.
	resumeFailures    logSampler
	maxSnapshotTopics int
	// taken are the connections taken over from net/http, which its
	// Shutdown neither waits for nor closes.
	takenMu sync.Mutex
	taken   map[net.Conn]struct{}
	drained chan struct{} // closed when taken empties, if wait waits
	// hangups notices the clients of taken-over connections leaving.
	hangups hangups
}

// subscription is a parsed GET /v1/events request.
type subscription struct {
	patterns []broker.Pattern
	// lastEventID is the raw resume position; resume is false when the
	// client sent none.
	lastEventID string
	resume      bool
	// render is the JSON form asked for; nil for the default.
	render *Rendering
	// filter is the CEL expression asked for, uncompiled: it is compiled
	// after authentication; "" for none.
	filter string
	// snapshot asks for the latest event of each topic first.
	snapshot bool
}

// subscriptionParams are the query parameters of GET /v1/events besides
// the rendering's.
var subscriptionParams = []string{"topic", "last_event_id", "access_token", "filter", "snapshot"}

func parseSubscription(r *http.Request, maxTopics int) (subscription, error) {
	var sub subscription
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return sub, fmt.Errorf("%w: malformed query string: %v", broker.ErrBadRequest, err)
	}
	for k := range q {
		if !slices.Contains(subscriptionParams, k) && !slices.Contains(renderParams, k) {
			return sub, fmt.Errorf("%w: unknown query parameter %q (expected %s, %s)", broker.ErrBadRequest, broker.Printable(k), strings.Join(subscriptionParams, ", "), strings.Join(renderParams, ", "))
		}
	}
	if sub.render, err = parseRendering(q); err != nil {
		return sub, err
	}
	if sub.patterns, err = parseTopics(q["topic"], maxTopics, "?topic= parameters"); err != nil {
		return sub, err
	}
	if fs := q["filter"]; len(fs) > 1 {
		return sub, fmt.Errorf("%w: filter given %d times; combine the conditions with && in one", broker.ErrBadRequest, len(fs))
	} else if len(fs) == 1 {
		sub.filter = fs[0]
	}
	if v := q.Get("snapshot"); v != "" {
		if sub.snapshot, err = strconv.ParseBool(v); err != nil {
			return sub, fmt.Errorf("%w: snapshot=%q: want true or false", broker.ErrBadRequest, broker.Printable(v))
		}
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
	if r.ProtoMajor == 1 && r.TLS == nil {
		// A plain HTTP/1.1 stream is taken over once started and this
		// goroutine returns; it runs here only if it cannot be.
		if st := h.start(w, r); st != nil {
			st.run(r.Context().Done())
		}
		return
	}
	// An HTTP/2 or TLS stream keeps this goroutine, parked in run, for
	// its life. Starting it (authentication, history, the first write)
	// takes a deeper stack than running it, and a goroutine's stack does
	// not shrink back while its parked frames use more than a quarter of
	// it: start runs on a goroutine of its own, which ends, so that this
	// one keeps only the stack that run needs.
	started := make(chan startResult, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				started <- startResult{panicked: p}
			}
		}()
		started <- startResult{st: h.start(w, r)}
	}()
	res := <-started
	if res.panicked != nil {
		panic(res.panicked) // where net/http recovers it, as if start ran here
	}
	if res.st != nil {
		res.st.run(r.Context().Done())
	}
}

// startResult is what start returned on its own goroutine, or its panic.
type startResult struct {
	st       *stream
	panicked any
}

// start does everything a stream needs before its first queued event:
// it returns the stream to run in the handler's goroutine, or nil when
// it answered or handed the stream to another goroutine.
func (h *streamHandler) start(w http.ResponseWriter, r *http.Request) *stream {
	// Parsing is bounded by the request line's size; everything that
	// costs more comes after authentication.
	sub, err := parseSubscription(r, h.maxTopics)
	if err == nil && !h.queryToken && r.URL.Query().Has("access_token") {
		err = fmt.Errorf("%w: this server does not take tokens in the access_token query parameter (--auth-query-token); use a cookie or the Authorization header", broker.ErrBadRequest)
	}
	creds := httpCredentials(r, h.cookie, h.queryToken)
	var perms auth.Permissions
	if err == nil && h.auth != nil {
		if perms, err = h.auth.Authenticate(r.Context(), creds); err == nil {
			err = authorizeSubscribe(creds, perms, sub.patterns)
		}
	}
	if err == nil && sub.render != nil {
		err = checkFields(r.Context(), h.hub.types, sub.render.Fields)
	}
	var f *filter
	if err == nil && sub.filter != "" {
		f, err = h.hub.filters.compile(sub.filter)
	}
	var release func()
	if err == nil {
		release, err = h.conns.acquire(h.conns.clientIP(r))
	}
	if err != nil {
		h.refuse(w, creds, err)
		return nil
	}
	// Once its head and history are out, a stream is written by one of
	// the hub's shards: a plain HTTP/1.1 stream's socket directly
	// (shard.go), an HTTP/2 or TLS stream through net/http
	// (shard_through.go).
	plain := r.ProtoMajor == 1 && r.TLS == nil
	var s *subscriber
	s, err = h.hub.subscribeDirect(perms.Subject, sub.patterns, sub.render, f, !plain)
	if err != nil {
		release()
		// Shutting down, or the node's first subscriber could not
		// subscribe it to the broker. A 503 would close an EventSource
		// for good: send it away like the streams that were open, to
		// reconnect (elsewhere, or later).
		hdr := w.Header()
		hdr.Set("Content-Type", "text/event-stream")
		hdr.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		why, wait := "server shutting down, reconnect", h.retry/2+time.Duration(rand.Int64N(int64(time.Second)))
		if !errors.Is(err, broker.ErrClosed) {
			if n, ok := h.resumeFailures.note(time.Now()); ok {
				h.log.Warn("cannot subscribe this node to the broker; streams retry", "streams", n, "err", err)
			}
			why, wait = "broker unavailable, reconnecting", h.outageRetry()
		}
		_, _ = w.Write(sse.AppendRetry(sse.AppendComment(nil, why), wait.Milliseconds()))
		return nil
	}
	// What the stream starts with is read before its head, so that a
	// snapshot over the limit is still a 400.
	begun, err := h.hub.begin(r.Context(), sub.patterns, sub.lastEventID, sub.resume, sub.snapshot, s, h.maxSnapshotTopics)
	if err != nil && !errors.Is(err, broker.ErrUnavailable) {
		h.hub.unsubscribe(s)
		release()
		h.refuse(w, creds, err)
		return nil
	}
	st := &stream{h: h, s: s, release: release, perms: perms, reason: endClient}
	st.out = &streamOut{w: w, rc: http.NewResponseController(w), timeout: h.writeTimeout}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Del("Content-Length")
	if plain {
		// No chunked encoding: the body runs until the connection
		// closes, as the SSE specification suggests, so that frames can
		// go to the socket as they are. net/http then closes the
		// connection after the response.
		hdr.Set("Transfer-Encoding", "identity")
	}
	w.WriteHeader(http.StatusOK)

	if err != nil { // the broker's history cannot be read now
		h.unreadable(st.out, err)
		st.reason = endWrite
		st.finish()
		return nil
	}
	// The first bytes go out at once, so that onopen fires and proxies see
	// a live response. Replayed events (if any) follow in the same flush.
	st.buf = sse.AppendRetry(make([]byte, 0, 512), h.retry.Milliseconds())
	var ok bool
	if st.buf, ok = h.writeStart(st.out, sub, begun, s.render, st.buf); !ok {
		st.reason = st.out.failure()
		st.finish()
		return nil
	}
	st.lastSeq = begun.lastSeq
	if !st.out.write(st.buf) {
		st.reason = st.out.failure()
		st.finish()
		return nil
	}

	if !plain && s.d != nil {
		// Its shard writes to it through net/http whenever it does not
		// lag; this goroutine writes what queued meanwhile, and then
		// hands it over.
		st.through = true
		s.d.mu.Lock()
		s.d.minSeq, s.d.through = st.lastSeq, st.out
		s.d.mu.Unlock()
		s.d.settle(s)
		return st
	}
	if s.d != nil {
		if conn := h.takeOver(st.out); conn != nil {
			st.conn = conn
			// The connection is the stream's now: this handler returns,
			// and net/http lets go of its goroutine and buffers for it.
			// The stream needs a buffer of its own only when it is behind.
			st.out.w, st.out.rc = nil, nil
			st.buf = nil
			st.watch = h.hangups.watch(conn, s)
			if !s.d.attach(conn) {
				go st.run(nil)
				return nil
			}
			// The shard writes to this stream whenever it does not lag,
			// and the stream has no goroutine until it has something to
			// do that the shard does not (stream.wake).
			st.direct = true
			s.d.mu.Lock()
			s.d.minSeq = st.lastSeq
			s.d.mu.Unlock()
			// From here on, whatever gives the stream work wakes it; this
			// handler holds running until the stream is set up, then
			// hands over what came meanwhile.
			st.running.Store(true)
			s.d.stream.Store(st)
			st.expiry = afterExpiry(st.perms, st.onExpiry)
			st.out.settle(s)
			if st.yield() {
				go st.serve()
			}
			return nil
		}
	}
	return st
}

// writeStart writes what a subscription starts with (Hub.begin) into buf,
// flushing as it grows: a gap event, the replayed or snapshot events, and
// herald.synced after a snapshot.
func (h *streamHandler) writeStart(out *streamOut, sub subscription, st start, render *Rendering, buf []byte) ([]byte, bool) {
	if st.gap != "" {
		data, _ := json.Marshal(struct {
			LastEventID string `json:"lastEventId"`
			Reason      string `json:"reason"`
		}{sub.lastEventID, st.gap})
		if render != nil && render.Envelope {
			buf = sse.AppendEvent(buf, "", "", envelope(GapEventType, data))
		} else {
			buf = sse.AppendEvent(buf, "", GapEventType, data)
		}
	}
	for _, ev := range st.events {
		buf = append(buf, h.hub.frameFor(ev, render)...)
		if len(buf) >= coalesceMax {
			if !out.write(buf) {
				return nil, false
			}
			buf = buf[:0]
		}
	}
	h.metrics.delivered.Add(float64(len(st.events)))
	if st.synced {
		buf = h.hub.syncedFrame(buf, st, render)
	}
	return buf, true
}

// unreadable answers a subscription whose history (or snapshot) the
// broker could not read: it is to come back with the same Last-Event-ID
// rather than skip what it missed, after a spread-out delay: during an
// outage every resuming client lands here, and they must not all come
// back at once, nor each add a line to the log.
func (h *streamHandler) unreadable(out *streamOut, err error) {
	if n, ok := h.resumeFailures.note(time.Now()); ok {
		h.log.Warn("cannot resume streams while the broker's history is unreadable; clients retry with the same id", "streams", n, "err", err)
	}
	b := sse.AppendRetry(nil, h.outageRetry().Milliseconds())
	out.write(sse.AppendComment(b, "history unavailable, reconnecting"))
}

// outageRetry is the retry hint for a stream sent away because the broker
// cannot be reached: between one and two retry intervals, so that the
// clients of an outage do not all come back at once.
func (h *streamHandler) outageRetry() time.Duration {
	return h.retry + time.Duration(rand.Int64N(int64(h.retry)+1))
}

// refuse answers a subscription that cannot start with a real status and a
// JSON error body, so that EventSource gives up instead of reconnecting.
func (h *streamHandler) refuse(w http.ResponseWriter, creds auth.Credentials, err error) {
	code := HTTPStatus(err)
	h.metrics.refused.WithLabelValues(fmt.Sprint(code)).Inc()
	var limit *LimitError
	switch {
	case errors.As(err, &limit):
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(limit.RetryAfter.Seconds()))))
	case errors.Is(err, auth.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", bearerChallenge(!creds.Empty(), err.Error()))
	}
	writeError(w, err)
}
