package brokertest

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/poll"
)

// clockSkew is how far from the test's clock a backend's acceptance time
// may be (a networked backend may take it from its server).
const clockSkew = 5 * time.Second

// testEpoch: the epoch is 1 to 32 bytes of [a-z0-9] and does not change
// while the broker runs.
func (s *suite) testEpoch(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	e := b.Epoch()
	if !validEpoch(e) {
		t.Fatalf("Epoch() = %q; want 1 to 32 bytes of [a-z0-9]", e)
	}
	for i := range 10 {
		publish(t, ctx, b, newEvent("epoch.a", i))
		replay(t, ctx, b, broker.EventID{Epoch: e}, "epoch.a")
		if got := b.Epoch(); got != e {
			t.Fatalf("Epoch() changed from %q to %q while the broker ran", e, got)
		}
	}
}

// testPublish: Publish sets Seq and Time, reports them, and Seqs increase
// across topics in the order events were accepted.
func (s *suite) testPublish(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	topics := []string{"pub.a", "pub.b", "pub.c.d"}
	var last uint64
	for i := range 30 {
		before := time.Now()
		ev := newEvent(topics[i%len(topics)], i)
		want := publish(t, ctx, b, ev) // checks Seq > 0 and Time set
		if want.Seq <= last {
			t.Fatalf("event %d to %q got Seq %d after Seq %d: Seqs must increase in publish order across topics", i, want.Topic, want.Seq, last)
		}
		last = want.Seq
		if ev.Time.Before(before.Add(-clockSkew)) || ev.Time.After(time.Now().Add(clockSkew)) {
			t.Fatalf("event %d: Time %v is not when it was published (%v)", i, ev.Time, before)
		}
	}
}

// testSubscribe: a subscription gets every event accepted after Subscribe
// returned, on every topic, each once, in Seq order, from one goroutine at a
// time.
func (s *suite) testSubscribe(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	// Events from before the subscription: the contract does not say
	// whether they are delivered, but if they are, order still holds.
	for i := range 5 {
		publish(t, ctx, b, newEvent("sub.before", i))
	}
	r := subscribe(t, ctx, b)
	topics := []string{"sub.a", "sub.b", "sub.b.c", "sub-d"}
	var want []*broker.Event
	for i := range 400 {
		want = append(want, publish(t, ctx, b, newEvent(topics[i%len(topics)], i)))
	}
	r.waitSeqs(t, s.opts.Timeout, seqsOf(want))
	r.checkOrder(t)
	got := r.snapshot()
	// Drop any pre-subscription events: they come first if at all.
	got = slices.DeleteFunc(got, func(ev *broker.Event) bool { return ev.Topic == "sub.before" })
	checkEvents(t, "delivered", got, want)
}

// testSubscribeEverySubscription: every live subscription gets every
// event, including one made while events are flowing.
func (s *suite) testSubscribeEverySubscription(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	r1 := subscribe(t, ctx, b)
	var all []*broker.Event
	for i := range 50 {
		all = append(all, publish(t, ctx, b, newEvent("every.a", i)))
	}
	r2 := subscribe(t, ctx, b)
	var later []*broker.Event
	for i := 50; i < 100; i++ {
		ev := publish(t, ctx, b, newEvent("every.b", i))
		all = append(all, ev)
		later = append(later, ev)
	}
	r1.waitSeqs(t, s.opts.Timeout, seqsOf(all))
	r2.waitSeqs(t, s.opts.Timeout, seqsOf(later))
	r1.checkOrder(t)
	r2.checkOrder(t)
	checkEvents(t, "first subscription", r1.snapshot(), all)
	got2 := slices.DeleteFunc(r2.snapshot(), func(ev *broker.Event) bool { return ev.Topic == "every.a" })
	checkEvents(t, "second subscription", got2, later)
}

// testSubscribeCancel: a subscription stops when its context ends, and the
// others go on.
func (s *suite) testSubscribeCancel(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	gone := newRecorder()
	if err := b.Subscribe(subCtx, gone.deliver); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	stays := subscribe(t, ctx, b)
	first := publish(t, ctx, b, newEvent("cancel.a", 0))
	gone.waitSeqs(t, s.opts.Timeout, []uint64{first.Seq})
	stays.waitSeqs(t, s.opts.Timeout, []uint64{first.Seq})

	cancel()
	// Stopping may take effect asynchronously: probe until an event
	// reaches the live subscription but not the cancelled one.
	var probe uint64
	poll.Until(t, s.opts.Timeout, "the cancelled subscription to stop", func() bool {
		probe = publish(t, ctx, b, newEvent("cancel.probe", 0)).Seq
		stays.waitSeqs(t, s.opts.Timeout, []uint64{probe})
		return !slices.Contains(seqsOf(gone.snapshot()), probe)
	})
	// From then on it gets nothing.
	var more []uint64
	for i := range 20 {
		more = append(more, publish(t, ctx, b, newEvent("cancel.a", i+1)).Seq)
	}
	stays.waitSeqs(t, s.opts.Timeout, more)
	for _, ev := range gone.snapshot() {
		if ev.Seq > probe {
			t.Fatalf("cancelled subscription got Seq %d, published after it had stopped", ev.Seq)
		}
	}
	stays.checkOrder(t)
	gone.checkOrder(t)
}

// testIdempotency: a repeated non-empty key on the same topic accepts
// nothing and reports the original's Seq and Fingerprint, whether the new
// event is a retry (the same Fingerprint) or a reuse of the key for other
// content; on another topic, or with no key, it is a new event. No
// delivered or replayed event carries a Fingerprint (checkEvents).
func (s *suite) testIdempotency(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	r := subscribe(t, ctx, b)

	// Fingerprints as the server makes them: hashes in base64.
	const fp1, fp2, fp3 = "h1:q+/Z9w==", "h1:T4e/0A==", "h1:77+9aQ=="
	orig := publish(t, ctx, b, keyed(newEvent("idem.a", 1), "key-1", fp1))
	other := publish(t, ctx, b, newEvent("idem.a", 2))

	for range 2 {
		checkDuplicate(t, ctx, b, "a retry", keyed(newEvent("idem.a", 1), "key-1", fp1), orig.Seq, fp1)
	}
	// The server refuses these, from the original's Fingerprint.
	checkDuplicate(t, ctx, b, "a reuse of the key for other content", keyed(newEvent("idem.a", 100), "key-1", fp2), orig.Seq, fp1)
	checkDuplicate(t, ctx, b, "a reuse without a Fingerprint", keyed(newEvent("idem.a", 101), "key-1", ""), orig.Seq, fp1)

	// Keys are per topic: the same key on another topic is a new event,
	// with its own Fingerprint.
	onB := publish(t, ctx, b, keyed(newEvent("idem.b", 3), "key-1", fp2))
	checkDuplicate(t, ctx, b, "a retry on the other topic", keyed(newEvent("idem.b", 3), "key-1", fp2), onB.Seq, fp2)
	checkDuplicate(t, ctx, b, "a retry on the first topic, after the other", keyed(newEvent("idem.a", 1), "key-1", fp1), orig.Seq, fp1)

	// An original published without a Fingerprint: the broker cannot tell.
	bare := publish(t, ctx, b, keyed(newEvent("idem.a", 5), "key-2", ""))
	checkDuplicate(t, ctx, b, "a repeat of a key first published without a Fingerprint", keyed(newEvent("idem.a", 5), "key-2", fp3), bare.Seq, "")

	noKey1 := publish(t, ctx, b, newEvent("idem.a", 4))
	noKey2 := publish(t, ctx, b, newEvent("idem.a", 4)) // same content, no key: new event
	// A Fingerprint without a key means nothing.
	fpOnly1 := publish(t, ctx, b, keyed(newEvent("idem.a", 6), "", fp3))
	fpOnly2 := publish(t, ctx, b, keyed(newEvent("idem.a", 6), "", fp3))

	want := []*broker.Event{orig, other, onB, bare, noKey1, noKey2, fpOnly1, fpOnly2}
	r.waitSeqs(t, s.opts.Timeout, seqsOf(want))
	r.checkOrder(t)
	checkEvents(t, "delivered (duplicates must not be)", r.snapshot(), want)
	res := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch()}, "idem.a", "idem.b")
	checkEvents(t, "replayed (duplicates must not be)", res.Events, want)
}

// testIdempotencyAfterRetention: a key outlives its event. Once retention
// removed the original, a repeat of its key within the window is still a
// duplicate of it, and reports the original's Fingerprint or, if the
// broker kept it only with the event, none: never the new event's, which
// would make a reuse of the key look like a retry.
func (s *suite) testIdempotencyAfterRetention(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, Config{MaxEvents: 1, MaxAge: time.Hour, IdempotencyWindow: time.Hour})
	const fp1, fp2 = "h1:q+/Z9w==", "h1:T4e/0A=="
	orig := publish(t, ctx, b, keyed(newEvent("idemret.a", 1), "k", fp1))
	newer := publish(t, ctx, b, newEvent("idemret.a", 2)) // removes orig
	if res := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch()}, "idemret.a"); !res.Truncated {
		t.Fatalf("Replay from the start is not Truncated: MaxEvents 1 did not remove the original")
	}
	for _, c := range []struct {
		what string
		ev   *broker.Event
	}{
		{"a retry", keyed(newEvent("idemret.a", 1), "k", fp1)},
		{"a reuse of the key", keyed(newEvent("idemret.a", 3), "k", fp2)},
	} {
		res, err := b.Publish(ctx, c.ev)
		if err != nil {
			t.Fatalf("%s: Publish: %v", c.what, err)
		}
		if !res.Duplicate || res.Seq != orig.Seq || (res.Fingerprint != fp1 && res.Fingerprint != "") {
			t.Errorf("%s after retention removed the original = %+v; want Duplicate, Seq %d, Fingerprint %q or \"\"", c.what, res, orig.Seq, fp1)
		}
	}
	res := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch()}, "idemret.a")
	checkEvents(t, "replayed (duplicates must not be)", res.Events, []*broker.Event{newer})
}

// checkDuplicate publishes ev and fails t unless it is reported as a
// duplicate of Seq seq whose first event had Fingerprint fp.
func checkDuplicate(t *testing.T, ctx context.Context, b broker.Broker, what string, ev *broker.Event, seq uint64, fp string) {
	t.Helper()
	res, err := b.Publish(ctx, ev)
	if err != nil {
		t.Fatalf("%s: Publish: %v", what, err)
	}
	if want := (broker.PublishResult{Seq: seq, Duplicate: true, Fingerprint: fp}); res != want {
		t.Fatalf("%s (topic %q, key %q, Fingerprint %q): Publish = %+v; want %+v", what, ev.Topic, ev.IdempotencyKey, ev.Fingerprint, res, want)
	}
}

// keyed sets ev's IdempotencyKey and Fingerprint, and returns it.
func keyed(ev *broker.Event, key, fingerprint string) *broker.Event {
	ev.IdempotencyKey, ev.Fingerprint = key, fingerprint
	return ev
}

// testIdempotencyWindow: a key is forgotten once the window has passed.
func (s *suite) testIdempotencyWindow(t *testing.T) {
	ctx := s.ctx(t)
	const window = 200 * time.Millisecond
	b := s.newBroker(t, Config{MaxEvents: 1000, MaxAge: time.Hour, IdempotencyWindow: window})

	start := time.Now()
	ev := newEvent("window.a", 0)
	ev.IdempotencyKey = "k"
	orig := publish(t, ctx, b, ev)
	var again *broker.Event
	poll.Until(t, s.opts.Timeout, "the idempotency key to expire", func() bool {
		ev := newEvent("window.a", 1)
		ev.IdempotencyKey = "k"
		want := clone(ev)
		sent := time.Now()
		res, err := b.Publish(ctx, ev)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if !res.Duplicate {
			if sent.Sub(start) < window/2 {
				t.Fatalf("same key accepted again %v after the first publish, within the %v window", sent.Sub(start), window)
			}
			want.Seq, want.Time = ev.Seq, ev.Time
			again = want
			return true
		}
		if res.Seq != orig.Seq {
			t.Fatalf("duplicate reported Seq %d; want the original's %d", res.Seq, orig.Seq)
		}
		return false
	})
	if again.Seq <= orig.Seq {
		t.Fatalf("event after the window has Seq %d, not after the original's %d", again.Seq, orig.Seq)
	}
	res := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch()}, "window.a")
	checkEvents(t, "replayed", res.Events, []*broker.Event{orig, again})
}

// testConcurrentPublishers: Seqs stay unique and ordered, and delivery and
// Replay stay complete and ordered, with many publishers at once.
func (s *suite) testConcurrentPublishers(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	r := subscribe(t, ctx, b)
	const publishers, each = 8, 200
	published := make([][]*broker.Event, publishers)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			topic := fmt.Sprintf("conc.%d", p%4)
			var last uint64
			for i := range each {
				ev := newEvent(topic, p*each+i)
				want := clone(ev)
				res, err := b.Publish(ctx, ev)
				if err != nil {
					t.Errorf("publisher %d: Publish: %v", p, err)
					return
				}
				if res.Duplicate || res.Seq == 0 || res.Seq != ev.Seq {
					t.Errorf("publisher %d: Publish = %+v, ev.Seq %d", p, res, ev.Seq)
					return
				}
				if res.Seq <= last {
					t.Errorf("publisher %d: Seq %d after its own earlier Seq %d", p, res.Seq, last)
					return
				}
				last = res.Seq
				want.Seq, want.Time = ev.Seq, ev.Time
				published[p] = append(published[p], want)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	all := slices.Concat(published...)
	slices.SortFunc(all, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	for i := 1; i < len(all); i++ {
		if all[i].Seq == all[i-1].Seq {
			t.Fatalf("Seq %d was given to two events (%q and %q)", all[i].Seq, all[i-1].Payload, all[i].Payload)
		}
	}
	r.waitSeqs(t, s.opts.Timeout, seqsOf(all))
	r.checkOrder(t)
	checkEvents(t, "delivered", r.snapshot(), all)
	res := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch()}, ">")
	checkEvents(t, "replayed", res.Events, all)
	if res.Truncated {
		t.Error("Replay reported Truncated, but nothing was removed")
	}
}

// testLargeEvent: a large payload and every publisher-set field come back
// exactly, through delivery and Replay; so do an empty payload and nil
// attributes.
func (s *suite) testLargeEvent(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	r := subscribe(t, ctx, b)

	payload := make([]byte, s.opts.LargePayload)
	_, _ = rand.NewChaCha8([32]byte{'h', 'e', 'r', 'a', 'l', 'd'}).Read(payload)
	large := &broker.Event{
		Topic:   "large.a",
		Type:    "test.large",
		TypeURL: "type.googleapis.com/herald.test.v1.Large",
		Payload: payload,
		Attributes: map[string]string{
			"plain":   "value",
			"empty":   "",
			"unicode": "héraut ✉",
			"spaces":  "a b\tc\nd",
		},
	}
	empty := &broker.Event{Topic: "large.b", Type: "test.empty", TypeURL: "type.googleapis.com/google.protobuf.Empty"}
	want := []*broker.Event{publish(t, ctx, b, large), publish(t, ctx, b, empty)}

	r.waitSeqs(t, s.opts.Timeout, seqsOf(want))
	checkEvents(t, "delivered", r.snapshot(), want)
	res := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch()}, "large.*")
	checkEvents(t, "replayed", res.Events, want)
}

// testCancelledPublish: Publish with an ended context fails and accepts
// nothing: no delivery, no Replay, no idempotency key taken.
func (s *suite) testCancelledPublish(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	r := subscribe(t, ctx, b)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ev := newEvent("cancelled.a", 0)
	ev.IdempotencyKey = "k"
	if res, err := b.Publish(cancelled, ev); err == nil {
		t.Fatalf("Publish with a cancelled context = %+v, nil; want an error", res)
	}

	ev = newEvent("cancelled.a", 1)
	ev.IdempotencyKey = "k"
	want := []*broker.Event{publish(t, ctx, b, ev)} // fails on a duplicate
	r.waitSeqs(t, s.opts.Timeout, seqsOf(want))
	checkEvents(t, "delivered", r.snapshot(), want)
	res := replay(t, ctx, b, broker.EventID{Epoch: b.Epoch()}, "cancelled.a")
	checkEvents(t, "replayed", res.Events, want)
}
