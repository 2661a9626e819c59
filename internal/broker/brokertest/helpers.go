package brokertest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// A recorder is a subscription's deliver function that keeps what it was
// given and notices the contract being broken: overlapping calls, and calls
// after the test marked the broker closed.
type recorder struct {
	mu     sync.Mutex
	events []*broker.Event
	wake   chan struct{} // signalled after each delivery; one waiter

	inFlight atomic.Int32
	overlap  atomic.Bool // two deliver calls ran at once
	closed   atomic.Bool // set by the test once Close has returned
	late     atomic.Int32
}

func newRecorder() *recorder {
	return &recorder{wake: make(chan struct{}, 1)}
}

func (r *recorder) deliver(ev *broker.Event) {
	if r.inFlight.Add(1) > 1 {
		r.overlap.Store(true)
	}
	if r.closed.Load() {
		r.late.Add(1)
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	// Give a broker that calls deliver from several goroutines the chance
	// to show it while this call is still in flight.
	runtime.Gosched()
	r.inFlight.Add(-1)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []*broker.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitFor waits until cond holds for the events delivered so far and
// returns them; it fails tb at the timeout.
func (r *recorder) waitFor(tb testing.TB, timeout time.Duration, what string, cond func([]*broker.Event) bool) []*broker.Event {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		got := r.snapshot()
		if cond(got) {
			return got
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			tb.Fatalf("after %v, still waiting for %s; delivered %d events: seqs %s", timeout, what, len(got), fmtSeqs(got))
		}
	}
}

// waitSeqs waits until every seq in want has been delivered.
func (r *recorder) waitSeqs(tb testing.TB, timeout time.Duration, want []uint64) []*broker.Event {
	tb.Helper()
	return r.waitFor(tb, timeout, fmt.Sprintf("delivery of %d events", len(want)), func(got []*broker.Event) bool {
		have := make(map[uint64]bool, len(got))
		for _, ev := range got {
			have[ev.Seq] = true
		}
		for _, seq := range want {
			if !have[seq] {
				return false
			}
		}
		return true
	})
}

// checkDeliveryOrder fails tb unless the recorder's calls never
// overlapped and its events came in strictly increasing Seq order, so each
// once.
func (r *recorder) checkOrder(tb testing.TB) {
	tb.Helper()
	if r.overlap.Load() {
		tb.Error("deliver was called concurrently from more than one goroutine")
	}
	got := r.snapshot()
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			tb.Errorf("delivery %d has Seq %d after Seq %d: not in strictly increasing Seq order", i, got[i].Seq, got[i-1].Seq)
			return
		}
	}
}

// subscribe subscribes a recorder to b until tb ends.
func subscribe(tb testing.TB, ctx context.Context, b broker.Broker) *recorder {
	tb.Helper()
	ctx, cancel := context.WithCancel(ctx)
	tb.Cleanup(cancel)
	r := newRecorder()
	if err := b.Subscribe(ctx, r.deliver); err != nil {
		tb.Fatalf("Subscribe: %v", err)
	}
	return r
}

// newEvent returns an event whose payload and attributes tell it apart
// from every other event of the check. Every odd one carries a trace
// context, as from a node that traces, and every even one none.
func newEvent(topic string, i int) *broker.Event {
	ev := &broker.Event{
		Topic:      topic,
		Type:       "test.ping",
		TypeURL:    "type.googleapis.com/herald.test.v1.Ping",
		Payload:    []byte(topic + "/" + strconv.Itoa(i)),
		Attributes: map[string]string{"n": strconv.Itoa(i), "topic": topic},
	}
	if i%2 == 1 {
		ev.TraceParent = fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)
		ev.TraceState = "t=" + strconv.Itoa(i)
	}
	return ev
}

// clone copies what the publisher set on ev. Publish takes ownership of
// ev, so the checks compare against a copy of their own.
func clone(ev *broker.Event) *broker.Event {
	return &broker.Event{
		Topic:          ev.Topic,
		Type:           ev.Type,
		TypeURL:        ev.TypeURL,
		Payload:        bytes.Clone(ev.Payload),
		Attributes:     maps.Clone(ev.Attributes),
		IdempotencyKey: ev.IdempotencyKey,
		TraceParent:    ev.TraceParent,
		TraceState:     ev.TraceState,
	}
}

// publish publishes ev, fails tb unless it was accepted as a new event,
// and returns a copy of it with the Seq and Time the broker set.
func publish(tb testing.TB, ctx context.Context, b broker.Broker, ev *broker.Event) *broker.Event {
	tb.Helper()
	want := clone(ev)
	res, err := b.Publish(ctx, ev)
	if err != nil {
		tb.Fatalf("Publish to %q: %v", want.Topic, err)
	}
	if res.Duplicate {
		tb.Fatalf("Publish to %q (key %q): reported a duplicate of Seq %d", want.Topic, want.IdempotencyKey, res.Seq)
	}
	if res.Fingerprint != "" {
		tb.Fatalf("Publish to %q: a new event reported Fingerprint %q; want none", want.Topic, res.Fingerprint)
	}
	if res.Seq == 0 || res.Seq != ev.Seq {
		tb.Fatalf("Publish to %q: result Seq %d, event Seq %d; want the same non-zero Seq", want.Topic, res.Seq, ev.Seq)
	}
	if ev.Time.IsZero() {
		tb.Fatalf("Publish to %q: ev.Time not set", want.Topic)
	}
	want.Seq, want.Time = ev.Seq, ev.Time
	return want
}

// replay calls Replay, failing tb on error.
func replay(tb testing.TB, ctx context.Context, b broker.Broker, after broker.EventID, patterns ...string) broker.ReplayResult {
	tb.Helper()
	res, err := b.Replay(ctx, parsePatterns(tb, patterns), after)
	if err != nil {
		tb.Fatalf("Replay(%q, %v): %v", patterns, after, err)
	}
	return res
}

func parsePatterns(tb testing.TB, patterns []string) []broker.Pattern {
	tb.Helper()
	var ps []broker.Pattern
	for _, s := range patterns {
		p, err := broker.ParsePattern(s)
		if err != nil {
			tb.Fatalf("bad pattern in check: %v", err)
		}
		ps = append(ps, p)
	}
	return ps
}

// timeSkew is how far an event's Time may differ between Publish and a
// later delivery or Replay: a backend may keep it at millisecond precision.
const timeSkew = time.Millisecond

// checkEvents fails tb unless got holds the events of want, in that order,
// with their Seq, Time, publisher-set fields and trace context intact, and
// no Fingerprint.
func checkEvents(tb testing.TB, what string, got, want []*broker.Event) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Errorf("%s: got %d events, seqs %s; want %d, seqs %s", what, len(got), fmtSeqs(got), len(want), fmtSeqs(want))
		return
	}
	for i := range got {
		if diff := diffEvent(got[i], want[i]); diff != "" {
			tb.Errorf("%s: event %d (Seq %d): %s", what, i, want[i].Seq, diff)
			return
		}
	}
}

// diffEvent describes how got differs from want, or returns "".
func diffEvent(got, want *broker.Event) string {
	switch {
	case got.Fingerprint != "":
		return fmt.Sprintf("Fingerprint %q: delivered and replayed events carry none", got.Fingerprint)
	case got.Seq != want.Seq:
		return fmt.Sprintf("Seq %d, want %d", got.Seq, want.Seq)
	case got.Topic != want.Topic:
		return fmt.Sprintf("Topic %q, want %q", got.Topic, want.Topic)
	case got.Type != want.Type:
		return fmt.Sprintf("Type %q, want %q", got.Type, want.Type)
	case got.TypeURL != want.TypeURL:
		return fmt.Sprintf("TypeURL %q, want %q", got.TypeURL, want.TypeURL)
	case !bytes.Equal(got.Payload, want.Payload):
		return fmt.Sprintf("Payload differs (%d bytes, want %d)%s", len(got.Payload), len(want.Payload), firstDiff(got.Payload, want.Payload))
	case !maps.Equal(got.Attributes, want.Attributes): // nil and empty are equal
		return fmt.Sprintf("Attributes %v, want %v", got.Attributes, want.Attributes)
	case got.TraceParent != want.TraceParent || got.TraceState != want.TraceState:
		return fmt.Sprintf("trace context %q, %q; want %q, %q", got.TraceParent, got.TraceState, want.TraceParent, want.TraceState)
	case got.Time.Sub(want.Time).Abs() > timeSkew:
		return fmt.Sprintf("Time %v, want %v (as Publish set it)", got.Time, want.Time)
	}
	return ""
}

func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf(", first at byte %d", i)
		}
	}
	return ""
}

func seqsOf(evs []*broker.Event) []uint64 {
	seqs := make([]uint64, len(evs))
	for i, ev := range evs {
		seqs[i] = ev.Seq
	}
	return seqs
}

// fmtSeqs lists the Seqs of evs for a failure message, eliding the middle
// of a long list.
func fmtSeqs(evs []*broker.Event) string {
	const show = 20
	seqs := seqsOf(evs)
	if len(seqs) <= 2*show {
		return fmt.Sprint(seqs)
	}
	return fmt.Sprintf("%v ... %v", seqs[:show], seqs[len(seqs)-show:])
}

// pick returns the events of evs with Seq > seq whose topic is in topics.
func pick(evs []*broker.Event, seq uint64, topics ...string) []*broker.Event {
	var out []*broker.Event
	for _, ev := range evs {
		if ev.Seq > seq && slices.Contains(topics, ev.Topic) {
			out = append(out, ev)
		}
	}
	return out
}

// validEpoch reports whether e is 1 to 32 bytes of [a-z0-9].
func validEpoch(e string) bool {
	if len(e) < 1 || len(e) > 32 {
		return false
	}
	for i := 0; i < len(e); i++ {
		if c := e[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// otherEpoch returns a valid epoch that is not e.
func otherEpoch(e string) string {
	if e == "zzzz" {
		return "zzzy"
	}
	return "zzzz"
}
