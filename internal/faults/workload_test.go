//go:build faults && linux

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/poll"
)

// The workload: four topics, one publisher each, publishing 1, 2, 3 … one
// event at a time (the next once the last was acknowledged), odd numbers
// over gRPC and even ones over REST, to the nodes in turn; a refused or
// unanswered call is retried on the next node with the same idempotency
// key. Two subscribers on every node: one to every topic, one to two.
var rooms = []string{"r0", "r1", "r2", "r3"}

func topicOf(room string) string { return "chat.rooms." + room }

const (
	publishPace   = 20 * time.Millisecond // between one publisher's events
	retryPause    = 50 * time.Millisecond // before a retry
	callTimeout   = 4 * time.Second       // a publisher's own deadline
	resubscribe   = 100 * time.Millisecond
	maxRefusal    = brokerTimeout + 1500*time.Millisecond
	drainDeadline = 90 * time.Second
)

var checkRules = Rules{RefusalCodes: []string{codes.Unavailable.String(), "503"}, MaxRefusal: maxRefusal}

// workload runs the publishers and subscribers of one test against a
// cluster and records them in a History.
type workload struct {
	t      *testing.T
	c      *cluster
	h      *History
	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	pubWG  sync.WaitGroup
	subWG  sync.WaitGroup
	subs   []*subscriber
	rest   *http.Client
	began  time.Time
	opts   options
}

// subscriber reads one SSE stream from one node for the whole run,
// resuming with Last-Event-ID whenever the stream ends.
type subscriber struct {
	name   string
	node   int
	base   string // the URL it connects to: the node's, or a proxy's
	client *http.Client
	query  string
	topics []string
	ready  chan struct{}
	once   sync.Once

	mu     sync.Mutex
	read   int // events read
	conns  int
	lastID string
	heard  time.Time // when its stream last carried any bytes (heartbeats included)
}

func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read
}

// options vary the workload.
type options struct {
	via map[int]string // node i's subscribers connect to via[i] (a proxy) instead of the node
	pad int            // bytes of padding in every event (its author field)
	// h2c: node i's subscribers are as many again over HTTP/2 (h2c, a
	// connection each, as the HTTP/1.1 ones), which Herald writes
	// through net/http rather than to the socket.
	h2c map[int]bool
}

// h2cClient speaks HTTP/2 without TLS, by prior knowledge.
func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// heardReader notes when a subscriber's stream last carried bytes.
type heardReader struct {
	r io.Reader
	s *subscriber
}

func (h *heardReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.s.mu.Lock()
		h.s.heard = time.Now()
		h.s.mu.Unlock()
	}
	return n, err
}

// stalled names the subscribers whose streams have carried nothing, not
// even a heartbeat, for longer than a few heartbeat intervals: a stream
// stuck open, which EventSource would wait on for ever.
func (w *workload) stalled() []string {
	var names []string
	for _, s := range w.subs {
		s.mu.Lock()
		if since := time.Since(s.heard); since > 5*time.Second {
			names = append(names, fmt.Sprintf("%s (silent for %v)", s.name, since.Round(time.Second)))
		}
		s.mu.Unlock()
	}
	return names
}

// startWorkload subscribes on every node, waits until every subscriber is
// subscribed, and starts publishing.
func startWorkload(t *testing.T, c *cluster, opts options) *workload {
	t.Helper()
	w := &workload{t: t, c: c, h: &History{}, opts: opts, stop: make(chan struct{}), began: time.Now(),
		rest: &http.Client{Timeout: callTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	t.Cleanup(w.halt)
	for i, n := range c.nodes {
		base := n.httpURL
		if v, ok := opts.via[i]; ok {
			base = v
		}
		all := make([]string, len(rooms))
		for k, r := range rooms {
			all[k] = topicOf(r)
		}
		w.subs = append(w.subs,
			&subscriber{name: fmt.Sprintf("%s/all", n.host.name), node: i, base: base, client: http.DefaultClient, query: "topic=chat.rooms.>", topics: all},
			&subscriber{name: fmt.Sprintf("%s/two", n.host.name), node: i, base: base, client: http.DefaultClient, query: "topic=chat.rooms.r1&topic=chat.rooms.r2", topics: []string{topicOf("r1"), topicOf("r2")}},
		)
		if opts.h2c[i] {
			w.subs = append(w.subs,
				&subscriber{name: fmt.Sprintf("%s/all-h2c", n.host.name), node: i, base: base, client: h2cClient(), query: "topic=chat.rooms.>", topics: all},
				&subscriber{name: fmt.Sprintf("%s/two-h2c", n.host.name), node: i, base: base, client: h2cClient(), query: "topic=chat.rooms.r1&topic=chat.rooms.r2", topics: []string{topicOf("r1"), topicOf("r2")}},
			)
		}
	}
	for _, s := range w.subs {
		s.ready = make(chan struct{})
		w.h.AddSubscriber(Subscriber{Name: s.name, Node: s.node, Topics: s.topics, Since: time.Now()})
		w.subWG.Go(func() { w.subscribe(s) })
	}
	for _, s := range w.subs {
		select {
		case <-s.ready:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s could not subscribe", s.name)
		}
	}
	for i, r := range rooms {
		w.pubWG.Go(func() { w.publish(topicOf(r), i) })
	}
	return w
}

// halt stops everything (idempotent).
func (w *workload) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.pubWG.Wait()
	w.cancel()
	w.subWG.Wait()
}

func (w *workload) subscribe(s *subscriber) {
	for w.ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(w.ctx, http.MethodGet, s.base+"/v1/events?"+s.query, nil)
		s.mu.Lock()
		if s.lastID != "" {
			req.Header.Set("Last-Event-ID", s.lastID)
		}
		conn := s.conns
		s.conns++
		s.mu.Unlock()
		resp, err := s.client.Do(req)
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				w.h.Connected(s.name)
				s.once.Do(func() { close(s.ready) })
				w.readStream(s, conn, resp)
			}
			resp.Body.Close()
		}
		select {
		case <-w.ctx.Done():
		case <-time.After(resubscribe): // EventSource's retry, shortened
		}
	}
}

func (w *workload) readStream(s *subscriber, conn int, resp *http.Response) {
	for ev, err := range gosse.Read(&heardReader{r: resp.Body, s: s}, nil) {
		if err != nil {
			return
		}
		d := Delivery{Sub: s.name, Conn: conn, At: time.Now(), Type: ev.Type, ID: ev.LastEventID}
		if ev.Type == "chat.v1.ChatMessage" {
			var m chatv1.ChatMessage
			if protojson.Unmarshal([]byte(ev.Data), &m) != nil {
				d.Topic = "unparsable: " + ev.Data
			} else {
				d.Topic = topicOf(m.GetRoom())
				d.N, _ = strconv.Atoi(m.GetText())
			}
		}
		w.h.Deliver(d)
		if ev.Type == GapType {
			w.t.Logf("%s (connection %d) read a herald.gap: %s", s.name, conn, ev.Data)
		}
		s.mu.Lock()
		if ev.Type != GapType {
			s.read++
		}
		if ev.LastEventID != "" {
			s.lastID = ev.LastEventID
		}
		s.mu.Unlock()
	}
}

// publish publishes 1, 2, 3 … to topic until stopped; an event is retried
// until acknowledged (or the run is over).
func (w *workload) publish(topic string, first int) {
	pace := time.NewTicker(publishPace)
	defer pace.Stop()
	room := strings.TrimPrefix(topic, "chat.rooms.")
	for n := 1; ; n++ {
		select {
		case <-w.stop:
			return
		case <-pace.C:
		}
		payload, _ := anypb.New(&chatv1.ChatMessage{Room: room, Text: strconv.Itoa(n), Author: strings.Repeat("x", w.opts.pad)})
		key := fmt.Sprintf("%s-%d", room, n)
		node := (first + n) % len(w.c.nodes)
		for try := 0; ; try++ {
			a := Attempt{Topic: topic, N: n, Node: node, Start: time.Now()}
			if n%2 == 1 {
				a.API = "grpc"
				w.publishGRPC(&a, payload, key)
			} else {
				a.API = "rest"
				w.publishREST(&a, payload, key)
			}
			a.Latency = time.Since(a.Start)
			w.h.Attempt(a)
			if a.Outcome == Acked {
				break
			}
			node = (node + 1) % len(w.c.nodes)
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(retryPause):
			}
			select {
			case <-w.stop:
				if try > 40 { // the run is over and the event still not accepted
					return
				}
			default:
			}
		}
	}
}

func (w *workload) publishGRPC(a *Attempt, payload *anypb.Any, key string) {
	ctx, cancel := context.WithTimeout(w.ctx, callTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+w.c.token)
	resp, err := w.c.nodes[a.Node].client.Publish(ctx, &heraldv1.PublishRequest{Topic: a.Topic, Payload: payload, IdempotencyKey: key})
	if err == nil {
		a.Outcome, a.ID, a.Duplicate = Acked, resp.GetId(), resp.GetDuplicate()
		return
	}
	st := status.Convert(err)
	msg := st.Message()
	// A call that never reached Herald, or whose answer never came back,
	// is no refusal: the client's deadline, or the transport's own errors.
	if st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled ||
		(st.Code() == codes.Unavailable && (strings.Contains(msg, "connection error") || strings.Contains(msg, "error reading from server") || strings.Contains(msg, "transport"))) {
		a.Outcome = NoAnswer
		a.Code = st.Code().String() + ": " + msg
		return
	}
	a.Outcome, a.Code = Refused, st.Code().String()
}

func (w *workload) publishREST(a *Attempt, payload *anypb.Any, key string) {
	body, _ := protojson.Marshal(&heraldv1.PublishRequest{Payload: payload, IdempotencyKey: key})
	req, _ := http.NewRequestWithContext(w.ctx, http.MethodPost, w.c.nodes[a.Node].httpURL+"/v1/topics/"+a.Topic+"/events", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+w.c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.rest.Do(req)
	if err != nil {
		a.Outcome, a.Code = NoAnswer, err.Error()
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.Outcome, a.Code = Refused, strconv.Itoa(resp.StatusCode)
		return
	}
	var out struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		a.Outcome, a.Code = NoAnswer, "unreadable answer: "+err.Error()
		return
	}
	a.Outcome, a.ID, a.Duplicate = Acked, out.ID, out.Duplicate
}

// readMore waits until every subscriber has read at least n more events
// than it had when called.
func (w *workload) readMore(n int, timeout time.Duration, what string) {
	w.t.Helper()
	base := make([]int, len(w.subs))
	for i, s := range w.subs {
		base[i] = s.count()
	}
	poll.Until(w.t, timeout, what, func() bool {
		for i, s := range w.subs {
			if s.count() < base[i]+n {
				return false
			}
		}
		return true
	})
}

// acked returns how many events have been acknowledged so far.
func (w *workload) acked() int {
	rec := w.h.Snapshot()
	n := 0
	for _, a := range rec.Attempts {
		if a.Outcome == Acked {
			n++
		}
	}
	return n
}

// finish stops the publishers, waits until the subscribers have read every
// acknowledged event (or a herald.gap stands for it), stops them, checks
// the history, logs the report, fails the test on any violation, and
// checks that the checker fails the history broken as bugs would break it.
func (w *workload) finish(fault string) Report {
	w.t.Helper()
	r := w.check(fault, drainDeadline)
	for _, v := range r.Violations {
		w.t.Errorf("violation: %s", v)
	}
	if !r.OK() {
		w.t.Errorf("%s: the history breaks Herald's guarantees; lost by subscriber: %v", fault, r.LostBy)
		// Keep the history for a closer look.
		if f, err := os.CreateTemp("", "herald-faults-history-*.json"); err == nil {
			_ = json.NewEncoder(f).Encode(w.h.Snapshot())
			f.Close()
			w.t.Logf("the history is in %s", f.Name())
		}
	}
	w.t.Logf("%s: the same history, broken as a bug would break it:\n%s", fault, mutants(w.t, w.h.Snapshot()))
	return r
}

// check is finish without the verdict: it stops the workload once the
// subscribers are done (or drain has passed), and returns and logs the
// report.
func (w *workload) check(fault string, drain time.Duration) Report {
	w.t.Helper()
	close(w.stop)
	w.pubWG.Wait()
	_ = poll.Wait(drain, "every subscriber to read every acknowledged event", func() bool {
		r := Check(w.h.Snapshot(), checkRules)
		return r.Lost == 0
	})
	stalled := w.stalled()
	w.cancel()
	w.subWG.Wait()
	r := Check(w.h.Snapshot(), checkRules)
	if len(stalled) > 0 {
		w.t.Logf("%s: streams stuck open at the end, with heartbeats every second: %s", fault, strings.Join(stalled, ", "))
	}
	w.t.Logf("%s: took %v\n%s", fault, time.Since(w.began).Round(time.Second), r.Table())
	for i, v := range r.Violations {
		w.t.Logf("violation %d: %s", i+1, v)
	}
	return r
}

// A mutant is a recorded history changed the way a bug in Herald would
// have changed it; the checker must fail every one.
type mutant struct {
	bug    string
	mutate func(rec *Record) bool // false when the history offers nothing to break this way
}

// deliveryDuring returns the index of the first delivery to a subscriber
// of an event whose publish started during the fault (or after it began,
// when it was never healed), or -1.
func deliveryDuring(rec *Record) int {
	return deliveryDuringWhere(rec, func(int) bool { return true })
}

// midStream reports whether the subscriber read the events of the same
// topic before and after delivery i on the same connection as i: no
// resume, and so no herald.gap, came between them.
func midStream(rec *Record, i int) bool {
	d := rec.Deliveries[i]
	same := func(j int) bool {
		e := rec.Deliveries[j]
		return e.Sub == d.Sub && e.Topic == d.Topic && e.Type != GapType
	}
	prev, next := -1, -1
	for j := i - 1; j >= 0 && prev < 0; j-- {
		if same(j) {
			prev = j
		}
	}
	for j := i + 1; j < len(rec.Deliveries) && next < 0; j++ {
		if same(j) {
			next = j
		}
	}
	return prev >= 0 && next >= 0 && rec.Deliveries[prev].Conn == d.Conn && rec.Deliveries[next].Conn == d.Conn
}

// deliveryDuringWhere is deliveryDuring for the deliveries that also
// satisfy ok.
func deliveryDuringWhere(rec *Record, ok func(i int) bool) int {
	first := make(map[eventKey]time.Time)
	for _, a := range rec.Attempts {
		k := eventKey{a.Topic, a.N}
		if t, ok := first[k]; !ok || a.Start.Before(t) {
			first[k] = a.Start
		}
	}
	for i, d := range rec.Deliveries {
		at, known := first[eventKey{d.Topic, d.N}]
		if d.Type != GapType && known && !at.Before(rec.FaultAt) && (rec.HealAt.IsZero() || at.Before(rec.HealAt)) && ok(i) {
			return i
		}
	}
	return -1
}

var bugs = []mutant{
	{"an event acknowledged during the fault is lost (acknowledged before the broker accepted it)", func(rec *Record) bool {
		i := deliveryDuringWhere(rec, func(i int) bool { return midStream(rec, i) })
		if i < 0 {
			return false
		}
		k := eventKey{rec.Deliveries[i].Topic, rec.Deliveries[i].N}
		rec.Deliveries = slices.DeleteFunc(rec.Deliveries, func(d Delivery) bool { return d.Type != GapType && (eventKey{d.Topic, d.N}) == k })
		return true
	}},
	{"an event delivered twice (a replay overlapping live events)", func(rec *Record) bool {
		i := deliveryDuring(rec)
		if i < 0 {
			return false
		}
		rec.Deliveries = slices.Insert(rec.Deliveries, i+1, rec.Deliveries[i])
		return true
	}},
	{"two events of a topic delivered out of order", func(rec *Record) bool {
		i := deliveryDuring(rec)
		if i < 0 {
			return false
		}
		for j := i + 1; j < len(rec.Deliveries); j++ {
			if rec.Deliveries[j].Sub == rec.Deliveries[i].Sub && rec.Deliveries[j].Topic == rec.Deliveries[i].Topic {
				rec.Deliveries[i], rec.Deliveries[j] = rec.Deliveries[j], rec.Deliveries[i]
				return true
			}
		}
		return false
	}},
	{"a subscriber's history lost silently (no herald.gap)", func(rec *Record) bool {
		if slices.ContainsFunc(rec.Deliveries, func(d Delivery) bool { return d.Type == GapType }) {
			// Where Herald signalled a loss, the bug is not signalling it.
			rec.Deliveries = slices.DeleteFunc(rec.Deliveries, func(d Delivery) bool { return d.Type == GapType })
		}
		i := deliveryDuring(rec)
		if i < 0 {
			return false
		}
		sub := rec.Deliveries[i].Sub
		n := 0
		rec.Deliveries = slices.DeleteFunc(rec.Deliveries, func(d Delivery) bool {
			if d.Sub == sub && n < 10 && d.At.After(rec.Deliveries[i].At.Add(-time.Nanosecond)) {
				n++
				return true
			}
			return false
		})
		return true
	}},
	{"a refusal with an undocumented code (INTERNAL)", func(rec *Record) bool {
		for i, a := range rec.Attempts {
			if a.Outcome == Refused {
				rec.Attempts[i].Code = "Internal"
				return true
			}
		}
		return false
	}},
	{"a refusal that is slow (after the publisher's own timeout)", func(rec *Record) bool {
		for i, a := range rec.Attempts {
			if a.Outcome == Refused {
				rec.Attempts[i].Latency = callTimeout
				return true
			}
		}
		return false
	}},
}

// mutants applies each mutant to a copy of rec and fails t if the checker
// passes one; it returns a Markdown list of what the checker said.
func mutants(t *testing.T, rec Record) string {
	t.Helper()
	var b strings.Builder
	for _, m := range bugs {
		cp := rec
		cp.Attempts = slices.Clone(rec.Attempts)
		cp.Deliveries = slices.Clone(rec.Deliveries)
		if !m.mutate(&cp) {
			fmt.Fprintf(&b, "- %s: nothing in this history to break so\n", m.bug)
			continue
		}
		r := Check(cp, checkRules)
		if r.OK() {
			t.Errorf("the checker passed the history with this bug: %s", m.bug)
			fmt.Fprintf(&b, "- %s: NOT CAUGHT\n", m.bug)
			continue
		}
		fmt.Fprintf(&b, "- %s: caught (lost %d, duplicated %d, out of order %d, bad refusals %d, slow refusals %d): %s\n",
			m.bug, r.Lost, r.Duplicated, r.OutOfOrder, r.BadRefusals, r.SlowRefusals, r.Violations[0])
	}
	return b.String()
}

// hold waits out a fault's duration: the fault is meant to last this long.
func hold(d time.Duration) { <-time.After(d) }

// refusedSince reports whether a publish was refused after since.
func (w *workload) refusedSince(since time.Time) bool {
	for _, a := range w.h.Snapshot().Attempts {
		if a.Outcome == Refused && a.Start.After(since) {
			return true
		}
	}
	return false
}

// grepLines returns the lines of s that contain any of words, at most 30.
func grepLines(s string, words ...string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out[:min(len(out), 30)], "\n")
}
