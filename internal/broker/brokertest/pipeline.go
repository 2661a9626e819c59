package brokertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// asyncPublish hands ev to b without waiting: PublishAsync for a
// broker.Pipeliner, Publish on a goroutine of its own for the others
// (which then promise no order between calls, and the checks publish to
// them one at a time).
func asyncPublish(ctx context.Context, b broker.Broker, ev *broker.Event, done func(broker.PublishResult, error)) {
	if p, ok := b.(broker.Pipeliner); ok {
		p.PublishAsync(ctx, ev, done)
		return
	}
	done(b.Publish(ctx, ev))
}

// answer is what a done callback reported, and how many times.
type answer struct {
	res   broker.PublishResult
	err   error
	calls int
}

// inFlight collects the answers of asynchronous publishes.
type inFlight struct {
	mu      sync.Mutex
	answers []answer
	left    sync.WaitGroup
}

// publish hands ev over and returns its index among the answers.
func (f *inFlight) publish(ctx context.Context, b broker.Broker, ev *broker.Event) int {
	f.mu.Lock()
	i := len(f.answers)
	f.answers = append(f.answers, answer{})
	f.mu.Unlock()
	f.left.Add(1)
	asyncPublish(ctx, b, ev, func(res broker.PublishResult, err error) {
		f.mu.Lock()
		f.answers[i].res, f.answers[i].err = res, err
		f.answers[i].calls++
		first := f.answers[i].calls == 1
		f.mu.Unlock()
		if first {
			f.left.Done()
		}
	})
	return i
}

// wait waits for every answer, failing tb at the timeout (silence) or when
// a done callback was called more than once.
func (f *inFlight) wait(tb testing.TB, timeout time.Duration) []answer {
	tb.Helper()
	all := make(chan struct{})
	go func() { f.left.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(timeout):
		tb.Fatalf("after %v, some asynchronous publishes were never answered", timeout)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, a := range f.answers {
		if a.calls != 1 {
			tb.Fatalf("publish %d was answered %d times; want once", i, a.calls)
		}
	}
	return f.answers
}

// testPipeline: many events in flight at once, on one topic per goroutine
// and on many topics from one goroutine, are each answered once, accepted
// in the order handed over per topic, delivered in that order with no gap
// or duplicate, and replayed: an id given out is an event in the log.
func (s *suite) testPipeline(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	rec := subscribe(t, ctx, b)
	const perCaller, callers = 200, 4
	var f inFlight
	type sent struct {
		ev, orig *broker.Event // a copy, and what the broker owns
		at       int           // index of its answer
	}
	var mu sync.Mutex
	byTopic := make(map[string][]sent) // in the order handed over
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range perCaller {
				topic := fmt.Sprintf("pipe.own%d", g)
				if g == 0 {
					topic = fmt.Sprintf("pipe.many.t%d", i%16)
				}
				ev := newEvent(topic, i)
				want := clone(ev)
				mu.Lock() // one hand-over at a time per topic, in order
				at := f.publish(ctx, b, ev)
				byTopic[topic] = append(byTopic[topic], sent{want, ev, at})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	answers := f.wait(t, 3*s.opts.Timeout)
	var seqs []uint64
	for topic, evs := range byTopic {
		var last uint64
		for _, e := range evs {
			a := answers[e.at]
			if a.err != nil {
				t.Fatalf("event %s of %q: %v", e.ev.Attributes["n"], topic, a.err)
			}
			if a.res.Duplicate || a.res.Seq == 0 {
				t.Fatalf("event %s of %q: answered %+v; want a new event's Seq", e.ev.Attributes["n"], topic, a.res)
			}
			if a.res.Seq <= last {
				t.Fatalf("topic %q: event %s got Seq %d after Seq %d: accepted out of the order handed over", topic, e.ev.Attributes["n"], a.res.Seq, last)
			}
			last = a.res.Seq
			e.ev.Seq, e.ev.Time = a.res.Seq, e.orig.Time
			seqs = append(seqs, a.res.Seq)
		}
	}
	got := rec.waitSeqs(t, s.opts.Timeout, seqs)
	rec.checkOrder(t)
	for topic, evs := range byTopic {
		want := make([]*broker.Event, len(evs))
		for i, e := range evs {
			want[i] = e.ev
		}
		var delivered []*broker.Event
		for _, ev := range got {
			if ev.Topic == topic {
				delivered = append(delivered, ev)
			}
		}
		checkEvents(t, "delivered events of "+topic, delivered, want)
		r := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch()}, topic)
		checkEvents(t, "replayed events of "+topic, r.Events, want)
	}
}

// testPipelineAcceptedMeansStored: an event answered as accepted is in
// the log by then, for Replay to return, however many are in flight.
func (s *suite) testPipelineAcceptedMeansStored(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	answered := make(chan broker.PublishResult, 300)
	for i := range cap(answered) {
		asyncPublish(ctx, b, newEvent(fmt.Sprintf("stored.t%d", i%3), i), func(res broker.PublishResult, err error) {
			if err != nil {
				t.Errorf("event %d: %v", i, err)
			}
			answered <- res
		})
	}
	for i := range cap(answered) {
		res := <-answered
		if i%37 != 0 {
			continue
		}
		// Check one answer now and then, as it comes: the event must be
		// in the log already.
		r := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch(), Seq: res.Seq - 1}, "stored.*")
		if len(r.Events) == 0 || r.Events[0].Seq != res.Seq {
			t.Fatalf("Seq %d was answered as accepted, but Replay from just before it returns %s", res.Seq, fmtSeqs(r.Events))
		}
	}
}

// testPipelineIdempotency: a key repeated while its first event is still
// in flight is a duplicate of it, and only the first is delivered.
func (s *suite) testPipelineIdempotency(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	rec := subscribe(t, ctx, b)
	var f inFlight
	keyed := func(i int, key string) *broker.Event {
		ev := newEvent("idem.pipe", i)
		ev.IdempotencyKey, ev.Fingerprint = key, "fp-"+key
		return ev
	}
	first := f.publish(ctx, b, keyed(0, "a"))
	plain := f.publish(ctx, b, newEvent("idem.pipe", 1))
	again := f.publish(ctx, b, keyed(0, "a"))
	second := f.publish(ctx, b, keyed(2, "b"))
	againB := f.publish(ctx, b, keyed(2, "b"))
	last := f.publish(ctx, b, newEvent("idem.pipe", 3))
	answers := f.wait(t, 3*s.opts.Timeout)
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("publish %d: %v", i, a.err)
		}
	}
	for _, c := range []struct{ dup, orig int }{{again, first}, {againB, second}} {
		d, o := answers[c.dup].res, answers[c.orig].res
		if !d.Duplicate || d.Seq != o.Seq || o.Duplicate {
			t.Fatalf("a key repeated in flight: first answered %+v, repeat %+v; want the repeat a duplicate of the first", o, d)
		}
		if d.Fingerprint != "" && d.Fingerprint != "fp-a" && d.Fingerprint != "fp-b" {
			t.Fatalf("duplicate reported Fingerprint %q", d.Fingerprint)
		}
	}
	want := []uint64{answers[first].res.Seq, answers[plain].res.Seq, answers[second].res.Seq, answers[last].res.Seq}
	for i := 1; i < len(want); i++ {
		if want[i] <= want[i-1] {
			t.Fatalf("Seqs %v: not in the order handed over", want)
		}
	}
	rec.waitSeqs(t, s.opts.Timeout, want)
	got := rec.waitFor(t, s.opts.Timeout, "the pipelined events", func(evs []*broker.Event) bool { return len(evs) >= len(want) })
	if len(got) != len(want) {
		t.Fatalf("delivered Seqs %s; want %v: a duplicate was appended", fmtSeqs(got), want)
	}
}

// testPipelineRetention: with count retention, a resume from a position
// whose events were removed is Truncated, and one from a position whose
// removed events all lie at or below it is not, for events appended many
// in flight at once.
func (s *suite) testPipelineRetention(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, Config{MaxEvents: 10, MaxAge: time.Hour, IdempotencyWindow: time.Hour})
	var f inFlight
	for i := range 100 {
		f.publish(ctx, b, newEvent("keep.pipe", i))
	}
	answers := f.wait(t, 3*s.opts.Timeout)
	seq := func(i int) uint64 {
		if answers[i].err != nil {
			t.Fatalf("event %d: %v", i, answers[i].err)
		}
		return answers[i].res.Seq
	}
	for _, c := range []struct {
		after     int // resume after this event
		truncated bool
	}{{80, true}, {88, true}, {89, false}, {95, false}} {
		r := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch(), Seq: seq(c.after)}, "keep.pipe")
		if r.Truncated != c.truncated {
			t.Errorf("Replay after event %d of 100 (10 retained): Truncated = %v; want %v", c.after, r.Truncated, c.truncated)
		}
		if n := min(99-c.after, 10); len(r.Events) != n || r.Events[len(r.Events)-1].Seq != seq(99) {
			t.Errorf("Replay after event %d: %d events up to %s; want %d up to Seq %d", c.after, len(r.Events), fmtSeqs(r.Events), n, seq(99))
		}
	}
}
