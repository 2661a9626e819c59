package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
	defer release()
	s, err := h.hub.subscribe(sub.patterns, sub.render)
	if err != nil {
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
	defer h.hub.unsubscribe(s)

	rc := &streamConn{ResponseController: http.NewResponseController(w)}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Del("Content-Length")
	w.WriteHeader(http.StatusOK)

	// The first bytes go out at once, so that onopen fires and proxies see
	// a live response. Replayed events (if any) follow in the same flush.
	buf := sse.AppendRetry(make([]byte, 0, 512), h.retry.Milliseconds())
	reason := "client"
	defer func() { h.metrics.streams.WithLabelValues(reason).Inc() }()

	lastSeq := uint64(0)
	if sub.resume {
		var ok bool
		lastSeq, buf, ok = h.replay(r.Context(), w, rc, sub, s.render, buf)
		if !ok {
			reason = "write"
			return
		}
	}
	if !h.write(w, rc, buf) {
		reason = "write"
		return
	}

	ctx := r.Context()
	expired, stop := expiryTimer(perms)
	defer stop()
	for {
		select {
		case <-expired:
			// The client reconnects at once and must bring a fresh token.
			reason = "expired"
			b := sse.AppendComment(buf[:0], "token expired, reconnect with a fresh one")
			b = sse.AppendRetry(b, 0)
			h.write(w, rc, b)
			return
		case ev := <-s.queue:
			n := 0
			var out []byte
			if len(s.queue) == 0 {
				// The usual case, one event: its shared frame goes out
				// as it is, not copied.
				if ev == heartbeat || ev.Seq > lastSeq {
					out = h.hub.frameFor(ev, s.render)
					if ev != heartbeat {
						n++
					}
				}
			} else {
				// Behind: coalesce what is queued into one write.
				buf = buf[:0]
				for {
					if ev == heartbeat || ev.Seq > lastSeq {
						buf = append(buf, h.hub.frameFor(ev, s.render)...)
						if ev != heartbeat {
							n++
						}
					}
					if len(buf) >= 32<<10 || len(s.queue) == 0 {
						break
					}
					ev = <-s.queue
				}
				out = buf
			}
			if len(out) > 0 && !h.write(w, rc, out) {
				reason = "write"
				return
			}
			h.metrics.delivered.Add(float64(n))
			if cap(buf) > 64<<10 {
				buf = make([]byte, 0, 512) // don't pin a burst's buffer
			}
		case <-s.done:
			if s.reason.Load() == dropShutdown {
				reason = "shutdown"
				// Spread the reconnects of all clients over a second or
				// two, so that they do not all land at once.
				jitter := time.Duration(rand.Int64N(int64(time.Second)))
				b := sse.AppendComment(buf[:0], "server shutting down, reconnect")
				b = sse.AppendRetry(b, (h.retry/2 + jitter).Milliseconds())
				h.write(w, rc, b)
			} else {
				reason = "slow"
			}
			return
		case <-ctx.Done():
			return
		}
	}
}

// replay writes the retained events after sub.lastEventID into buf,
// flushing as it grows, preceded by a gap event when the history does not
// reach back that far. It returns the last replayed Seq.
func (h *streamHandler) replay(ctx context.Context, w http.ResponseWriter, rc *streamConn, sub subscription, render *Rendering, buf []byte) (uint64, []byte, bool) {
	res, err := h.hub.resume(ctx, sub.patterns, sub.lastEventID)
	if err != nil {
		// Ask the client to come back with the same Last-Event-ID rather
		// than skip what it missed.
		h.log.Warn("cannot resume a stream; the client will retry", "err", err)
		buf = sse.AppendComment(buf, "history unavailable, reconnecting")
		h.write(w, rc, buf)
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
		if len(buf) >= 32<<10 {
			if !h.write(w, rc, buf) {
				return 0, nil, false
			}
			buf = buf[:0]
		}
	}
	h.metrics.delivered.Add(float64(len(res.events)))
	return res.lastSeq, buf, true
}

// streamConn is a stream's ResponseController and the write deadline in
// force on it. Arming a deadline updates a runtime timer, which at one per
// write was a noticeable share of a delivery's CPU, so write re-arms it only
// once an eighth of the write timeout has passed, an eighth beyond the
// timeout: every write still gets at least the write timeout, and a stalled
// one is cut within 9/8 of it.
type streamConn struct {
	*http.ResponseController
	deadline time.Time
}

// write writes b and flushes it within the write timeout.
func (h *streamHandler) write(w http.ResponseWriter, rc *streamConn, b []byte) bool {
	if now := time.Now(); rc.deadline.Sub(now) < h.writeTimeout {
		d := now.Add(h.writeTimeout + h.writeTimeout/8)
		if err := rc.SetWriteDeadline(d); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		rc.deadline = d
	}
	if _, err := w.Write(b); err != nil {
		return false
	}
	return rc.Flush() == nil
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
