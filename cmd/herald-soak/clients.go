package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// subscribers runs the subscribing clients.
type subscribers struct {
	srv   *server
	st    *stats
	conn  *grpc.ClientConn
	plain *http.Client // SSE, a connection per stream
	small *http.Client // SSE with a small receive buffer, for slow readers
	token string       // long-lived, subscribe soak.>
	// noSnapshot is set when the broker cannot take snapshots: the
	// snapshot clients subscribe with a filter only.
	noSnapshot bool

	vanished atomic.Int64 // vanishing clients so far: every other one resets
}

// wait waits d or until ctx ends; it reports whether ctx is still live.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// between is a random duration in [lo, hi).
func between(lo, hi time.Duration) time.Duration { return lo + rand.N(hi-lo) }

// topicsQuery is the query of a subscription to topics.
func topicsQuery(topics ...string) url.Values {
	return url.Values{"topic": topics}
}

// read reads st until it ends, passing each event to f; it returns the
// error that ended it (nil when ctx ended it).
func read(ctx context.Context, st *sseStream, f func(sseEvent)) error {
	for {
		ev, err := st.next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		f(ev)
	}
}

// track checks an event's id against the subscription's cursor, counting
// a violation if it does not go up.
func (s *subscribers) track(c *cursor, ev sseEvent, what string) {
	if ev.typ == "herald.gap" || ev.id == "" {
		return
	}
	if ok, why := c.see(ev.id, ev.typ == "herald.synced"); !ok {
		s.st.violation(cOrderViolations, what+": "+why)
	}
}

// churn connects to one to three live topics (or the pattern soak.*),
// reads for 3-20 s, disconnects, and then mostly resumes the same
// subscription with Last-Event-ID, sometimes starts another.
func (s *subscribers) churn(ctx context.Context) {
	var topics []string
	var cur cursor
	for ctx.Err() == nil {
		if topics == nil || rand.IntN(10) < 3 {
			topics, cur = nil, cursor{}
			if rand.IntN(10) == 0 {
				topics = []string{"soak.*"}
			} else {
				for range 1 + rand.IntN(3) {
					topics = append(topics, liveTopic(rand.IntN(liveTopics)))
				}
			}
		}
		life := between(3*time.Second, 20*time.Second)
		lctx, cancel := context.WithTimeout(ctx, life)
		s.churnOnce(lctx, topics, &cur)
		cancel()
	}
}

func (s *subscribers) churnOnce(ctx context.Context, topics []string, cur *cursor) {
	st, code, err := openSSE(ctx, s.plain, s.srv, topicsQuery(topics...), s.token, cur.lastID)
	if err != nil || st == nil {
		if ctx.Err() == nil {
			s.st.fail("sse churn", fmt.Errorf("status %d: %v", code, err))
			wait(ctx, time.Second)
		}
		return
	}
	defer st.close()
	s.st.inc(cSSEConnects)
	if cur.lastID != "" {
		s.st.inc(cResumes)
	}
	err = read(ctx, st, func(ev sseEvent) {
		if ev.typ == "herald.gap" {
			s.st.inc(cResumeGaps)
			return
		}
		s.track(cur, ev, "sse churn")
		s.st.inc(cSSEEvents)
	})
	if err != nil {
		s.st.fail("sse churn", fmt.Errorf("stream ended early: %w", err))
	}
}

// expiring subscribes to soak.* with tokens that expire after 3-10 s:
// Herald must end the stream then (retry: 0), refuse the expired token
// (401), and let a fresh token resume from the last id.
func (s *subscribers) expiring(ctx context.Context) {
	var cur cursor
	q := topicsQuery("soak.*")
	for ctx.Err() == nil {
		ttl := between(3*time.Second, 10*time.Second)
		token := s.srv.token("soak-expiring", subscribeGrants, ttl)
		issued := time.Now()
		st, code, err := openSSE(ctx, s.plain, s.srv, q, token, cur.lastID)
		if err != nil || st == nil {
			if ctx.Err() == nil {
				s.st.fail("sse expiring", fmt.Errorf("status %d: %v", code, err))
				wait(ctx, time.Second)
			}
			continue
		}
		s.st.inc(cSSEConnects)
		if cur.lastID != "" {
			s.st.inc(cResumes)
		}
		err = read(ctx, st, func(ev sseEvent) {
			if ev.typ == "herald.gap" {
				s.st.inc(cResumeGaps)
				return
			}
			s.track(&cur, ev, "sse expiring")
			s.st.inc(cSSEEvents)
		})
		st.close()
		if ctx.Err() != nil {
			return
		}
		// exp has whole seconds: the stream may end up to a second early.
		lived := time.Since(issued)
		if !errors.Is(err, io.EOF) || st.retry != "0" || lived < ttl-time.Second {
			s.st.fail("sse expiring", fmt.Errorf("stream ended after %v (token valid for %v) with retry %q: %v", lived.Round(time.Millisecond), ttl, st.retry, err))
			continue
		}
		s.st.inc(cTokenExpiries)
		// Reconnecting with the expired token, as an EventSource would, is refused.
		rst, code, err := openSSE(ctx, s.plain, s.srv, q, token, cur.lastID)
		switch {
		case rst != nil:
			rst.close()
			s.st.fail("sse expiring", errors.New("the expired token was accepted"))
		case code == http.StatusUnauthorized:
			s.st.inc(cExpiredRefused)
		case ctx.Err() == nil:
			s.st.fail("sse expiring", fmt.Errorf("reconnect with the expired token: status %d, want 401: %v", code, err))
		}
	}
}

// slow subscribes to every topic (soak.>, the bulk topics' 128 KiB/s
// included) through a 4 KiB receive buffer, reads a few events, stops
// reading for 20-45 s, then reads again for 3 s: a stream Herald cut
// ends within them.
// It resumes from the last id it read.
func (s *subscribers) slow(ctx context.Context) {
	var cur cursor
	q := topicsQuery("soak.>")
	for ctx.Err() == nil {
		stall := between(20*time.Second, 45*time.Second)
		sctx, cancel := context.WithCancel(ctx)
		st, code, err := openSSE(sctx, s.small, s.srv, q, s.token, cur.lastID)
		if err != nil || st == nil {
			cancel()
			if ctx.Err() == nil {
				s.st.fail("sse slow", fmt.Errorf("status %d: %v", code, err))
				wait(ctx, time.Second)
			}
			continue
		}
		s.st.inc(cSSEConnects)
		if cur.lastID != "" {
			s.st.inc(cResumes)
		}
		onEvent := func(ev sseEvent) {
			if ev.typ == "herald.gap" {
				s.st.inc(cResumeGaps)
				return
			}
			s.track(&cur, ev, "sse slow")
			s.st.inc(cSSEEvents)
		}
		var rerr error
		for range 5 {
			ev, err := st.next()
			if err != nil {
				rerr = err
				break
			}
			onEvent(ev)
		}
		if rerr == nil {
			s.st.inc(cSlowStalls)
			if !wait(ctx, stall) {
				cancel()
				st.close()
				return
			}
			stop := time.AfterFunc(3*time.Second, cancel)
			rerr = read(sctx, st, onEvent)
			stop.Stop()
			if rerr != nil {
				s.st.inc(cSlowCut)
			}
		} else if ctx.Err() == nil {
			s.st.fail("sse slow", fmt.Errorf("stream ended before stalling: %w", rerr))
		}
		cancel()
		st.close()
	}
}

// vanish sends a raw SSE request, reads for 1-4 s, and then, in turn,
// closes the connection with a TCP reset (SO_LINGER 0) or stops reading
// for 2-8 s and then closes it with data left unread.
func (s *subscribers) vanish(ctx context.Context) {
	topic := liveTopic(rand.IntN(liveTopics))
	for ctx.Err() == nil {
		if err := s.vanishOnce(ctx, topic); err != nil && ctx.Err() == nil {
			s.st.fail("vanishing client", err)
		}
		if !wait(ctx, between(500*time.Millisecond, 2*time.Second)) {
			return
		}
	}
}

func (s *subscribers) vanishOnce(ctx context.Context, topic string) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.srv.http)
	if err != nil {
		return err
	}
	tc := conn.(*net.TCPConn)
	defer tc.Close()
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	req := "GET /v1/events?topic=" + topic + "&topic=soak.state.%3E HTTP/1.1\r\nHost: herald\r\n" +
		"Accept: text/event-stream\r\nAuthorization: Bearer " + s.token + "\r\n\r\n"
	if _, err := io.WriteString(tc, req); err != nil {
		return err
	}
	_ = tc.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(tc)
	status, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the status line: %w", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200 ") {
		return fmt.Errorf("status %q", strings.TrimSpace(status))
	}
	_ = tc.SetReadDeadline(time.Now().Add(between(time.Second, 4*time.Second)))
	_, err = io.Copy(io.Discard, br)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return fmt.Errorf("stream ended before the client vanished: %v", err)
	}
	if s.vanished.Add(1)%2 == 0 {
		_ = tc.SetLinger(0) // Close sends RST
		s.st.inc(cVanishRST)
		return nil
	}
	if !wait(ctx, between(2*time.Second, 8*time.Second)) {
		return nil
	}
	s.st.inc(cVanishClose)
	return nil
}

// A soakFilter is a CEL filter with the same predicate in Go.
type soakFilter struct {
	expr  string
	match func(n int32, region string) bool
}

func soakFilters() []soakFilter {
	var fs []soakFilter
	for k := int32(2); k <= 4; k++ {
		for j := range k {
			fs = append(fs, soakFilter{fmt.Sprintf("payload.n %% %d == %d", k, j), func(n int32, _ string) bool { return n%k == j }})
		}
	}
	for _, r := range regions {
		fs = append(fs, soakFilter{fmt.Sprintf("payload.region == %q", r), func(_ int32, region string) bool { return region == r }})
	}
	return fs
}

// probeSnapshots asks for a snapshot once. A server whose broker cannot
// take snapshots refuses with 400: why is
// then its answer. err is for any other failure.
func (s *subscribers) probeSnapshots(ctx context.Context) (why string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q := url.Values{"topic": {"soak.state.>"}, "snapshot": {"true"}}
	st, code, err := openSSE(ctx, s.plain, s.srv, q, s.token, "")
	switch {
	case st != nil:
		st.close()
		return "", nil
	case code == http.StatusBadRequest:
		return err.Error(), nil
	default:
		return "", fmt.Errorf("probing for snapshots: %w", err)
	}
}

// snapshot subscribes to the state topics with snapshot=true and a filter,
// for 5-20 s: a fresh subscription must get herald.synced; every Tick must
// match the filter. Half the time it resumes (no new snapshot), half the
// time it starts afresh with another filter.
func (s *subscribers) snapshot(ctx context.Context) {
	filters := soakFilters()
	var cur cursor
	var f soakFilter
	for ctx.Err() == nil {
		fresh := cur.lastID == "" || rand.IntN(2) == 0
		if fresh {
			cur, f = cursor{}, filters[rand.IntN(len(filters))]
		}
		q := url.Values{"topic": {"soak.state.>"}, "snapshot": {"true"}, "filter": {f.expr}}
		if s.noSnapshot {
			q.Del("snapshot")
		}
		lctx, cancel := context.WithTimeout(ctx, between(5*time.Second, 20*time.Second))
		s.snapshotOnce(lctx, q, f, &cur, fresh)
		cancel()
	}
}

func (s *subscribers) snapshotOnce(ctx context.Context, q url.Values, f soakFilter, cur *cursor, fresh bool) {
	st, code, err := openSSE(ctx, s.plain, s.srv, q, s.token, cur.lastID)
	if err != nil || st == nil {
		if ctx.Err() == nil {
			s.st.fail("sse snapshot", fmt.Errorf("status %d: %v", code, err))
			wait(ctx, time.Second)
		}
		return
	}
	defer st.close()
	s.st.inc(cSSEConnects)
	if !fresh {
		s.st.inc(cResumes)
	}
	synced := false
	err = read(ctx, st, func(ev sseEvent) {
		s.track(cur, ev, "sse snapshot")
		switch ev.typ {
		case "herald.synced":
			if fresh && !synced && !s.noSnapshot {
				s.st.inc(cSnapshots)
			}
			synced = true
		case "herald.gap":
			// A fresh snapshot follows, whose events may be older than
			// the last one seen: the order starts over.
			s.st.inc(cResumeGaps)
			*cur = cursor{}
		case tickType:
			var t struct {
				N      int32
				Region string
			}
			if err := json.Unmarshal([]byte(ev.data), &t); err != nil {
				s.st.fail("sse snapshot", fmt.Errorf("event %s: %w", ev.id, err))
				return
			}
			if !f.match(t.N, t.Region) {
				s.st.violation(cFilterViolations, fmt.Sprintf("event %s %s passed filter %s", ev.id, ev.data, f.expr))
			}
			s.st.inc(cFilterEvents)
		}
	})
	if err != nil {
		s.st.fail("sse snapshot", fmt.Errorf("stream ended early: %w", err))
	}
	if fresh && !synced && !s.noSnapshot {
		s.st.fail("sse snapshot", fmt.Errorf("no herald.synced on a stream with snapshot=true (filter %s)", f.expr))
	}
}

// grpcSubscribe subscribes to soak.* over gRPC for 5-20 s at a time,
// resuming from the last id.
func (s *subscribers) grpcSubscribe(ctx context.Context) {
	sub := heraldv1.NewSubscriberServiceClient(s.conn)
	var cur cursor
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, between(5*time.Second, 20*time.Second))
		stream, err := sub.Subscribe(withToken(lctx, s.token), &heraldv1.SubscribeRequest{Topics: []string{"soak.*"}, LastEventId: cur.lastID})
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				s.st.fail("gRPC Subscribe", err)
				wait(ctx, time.Second)
			}
			continue
		}
		s.st.inc(cGRPCSubscribes)
		if cur.lastID != "" {
			s.st.inc(cResumes)
		}
		for {
			r, err := stream.Recv()
			if err != nil {
				// The deadline is the end of this subscription's life; the
				// server may report it before the client's timer fires.
				if lctx.Err() == nil && status.Code(err) != codes.DeadlineExceeded {
					s.st.fail("gRPC Subscribe", err)
				}
				break
			}
			if r.GetGap() != nil {
				s.st.inc(cResumeGaps)
			}
			if ev := r.GetEvent(); ev != nil {
				if ok, why := cur.see(ev.GetId(), false); !ok {
					s.st.violation(cOrderViolations, "gRPC Subscribe: "+why)
				}
				s.st.inc(cGRPCEvents)
			}
		}
		cancel()
	}
}
