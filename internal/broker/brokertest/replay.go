package brokertest

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/poll"
)

// testReplay: from a position of this epoch, Replay returns exactly the
// events after it on the matching topics, in Seq order, once each however
// many patterns match, and reports nothing truncated when nothing was
// removed.
func (s *suite) testReplay(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	topics := []string{"orders.eu", "orders.us", "orders.eu.north", "orders", "monitoring.eu", "monitoring.eu.game-1", "monitoring", "other"}
	var all []*broker.Event
	for i := range 3 * len(topics) {
		all = append(all, publish(t, ctx, b, newEvent(topics[i%len(topics)], i)))
	}
	cases := []struct {
		name     string
		patterns []string
		topics   []string // what the patterns select
	}{
		{"literal", []string{"orders.eu"}, []string{"orders.eu"}},
		{"literal prefix", []string{"orders"}, []string{"orders"}},
		{"star", []string{"orders.*"}, []string{"orders.eu", "orders.us"}},
		{"leading star", []string{"*.eu"}, []string{"orders.eu", "monitoring.eu"}},
		{"tail", []string{"monitoring.>"}, []string{"monitoring.eu", "monitoring.eu.game-1"}},
		{"star and tail", []string{"*.eu.>"}, []string{"orders.eu.north", "monitoring.eu.game-1"}},
		{"everything", []string{">"}, topics},
		{"several", []string{"orders.eu", "monitoring.>", "other"}, []string{"orders.eu", "monitoring.eu", "monitoring.eu.game-1", "other"}},
		{"overlapping", []string{"orders.*", "orders.eu", "*.eu", "orders.>", "orders.eu"}, []string{"orders.eu", "orders.us", "orders.eu.north", "monitoring.eu"}},
		{"no match", []string{"nothing.here", "orders.*.*.*"}, nil},
		{"no patterns", nil, nil},
	}
	positions := []uint64{0, all[0].Seq, all[5].Seq, all[len(all)/2].Seq, all[len(all)-2].Seq, all[len(all)-1].Seq}
	for _, c := range cases {
		for _, pos := range positions {
			after := broker.EventID{Epoch: b.Epoch(), Seq: pos}
			res := replay(t, ctx, b, after, c.patterns...)
			checkEvents(t, c.name+" after "+after.String(), res.Events, pick(all, pos, c.topics...))
			if res.Truncated {
				t.Errorf("%s after %v: Truncated, but nothing was removed", c.name, after)
			}
		}
	}
}

// testReplayOtherEpoch: a position from another epoch cannot be placed in
// this log: Replay returns everything retained and reports Truncated,
// whatever the position's Seq.
func (s *suite) testReplayOtherEpoch(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	var all []*broker.Event
	for i := range 12 {
		all = append(all, publish(t, ctx, b, newEvent([]string{"epoch.a", "epoch.b", "epoch.c"}[i%3], i)))
	}
	other := otherEpoch(b.Epoch())
	for _, seq := range []uint64{0, 5, all[len(all)-1].Seq, math.MaxUint64} {
		after := broker.EventID{Epoch: other, Seq: seq}
		res := replay(t, ctx, b, after, "epoch.a", "epoch.b")
		checkEvents(t, "after "+after.String(), res.Events, pick(all, 0, "epoch.a", "epoch.b"))
		if !res.Truncated {
			t.Errorf("after %v (another epoch than %q): Truncated false; want true", after, b.Epoch())
		}
	}
	// The zero EventID: the contract says only that events with Seq > 0,
	// that is all retained ones, are returned; Truncated is not checked.
	res := replay(t, ctx, b, broker.EventID{}, "epoch.a", "epoch.b")
	checkEvents(t, "after the zero EventID", res.Events, pick(all, 0, "epoch.a", "epoch.b"))
}

// testRetentionByCount: each topic keeps its last MaxEvents events; Replay
// reports Truncated exactly when an event after the position was removed,
// and other topics lose nothing. It runs with a small limit and with one
// that a backend's buffers must grow to.
func (s *suite) testRetentionByCount(t *testing.T) {
	for _, keep := range []int{5, 40} {
		t.Run(fmt.Sprintf("MaxEvents=%d", keep), func(t *testing.T) { s.retentionByCount(t, keep) })
	}
}

func (s *suite) retentionByCount(t *testing.T, keep int) {
	ctx := s.ctx(t)
	b := s.newBroker(t, Config{MaxEvents: keep, MaxAge: time.Hour, IdempotencyWindow: time.Hour})
	const removed = 3
	var a, other, full []*broker.Event
	for i := range keep + removed {
		a = append(a, publish(t, ctx, b, newEvent("count.a", i)))
		if i%3 == 1 {
			other = append(other, publish(t, ctx, b, newEvent("count.b", i)))
		}
		if i < keep {
			full = append(full, publish(t, ctx, b, newEvent("count.c", i))) // exactly MaxEvents
		}
	}
	ep := b.Epoch()
	kept := a[removed:]
	newest := a[len(a)-1]
	all := slices.SortedFunc(slices.Values(slices.Concat(kept, other, full)), func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })

	for _, tc := range []struct {
		name      string
		patterns  []string
		after     uint64
		want      []*broker.Event
		truncated bool
	}{
		{"from the start", []string{"count.a"}, 0, kept, true},
		{"from before the last removed", []string{"count.a"}, a[removed-2].Seq, kept, true},
		{"from the last removed", []string{"count.a"}, a[removed-1].Seq, kept, false},
		{"from a retained event", []string{"count.a"}, a[removed+2].Seq, a[removed+3:], false},
		{"from the newest", []string{"count.a"}, newest.Seq, nil, false},
		{"another topic", []string{"count.b"}, 0, other, false},
		{"a topic at the limit", []string{"count.c"}, 0, full, false},
		{"both, from the last removed", []string{"count.a", "count.b"}, a[removed-1].Seq, pick(all, a[removed-1].Seq, "count.a", "count.b"), false},
		{"the untouched ones, from the start", []string{"count.b", "count.c"}, 0, pick(all, 0, "count.b", "count.c"), false},
		{"everything", []string{"count.>"}, 0, all, true},
	} {
		after := broker.EventID{Epoch: ep, Seq: tc.after}
		res := replay(t, ctx, b, after, tc.patterns...)
		checkEvents(t, tc.name, res.Events, tc.want)
		if res.Truncated != tc.truncated {
			t.Errorf("%s: Replay(%q, %v).Truncated = %v; want %v", tc.name, tc.patterns, after, res.Truncated, tc.truncated)
		}
	}
}

// testRetentionByAge: an event older than MaxAge is removed, even when
// nothing more is published, and Replay reports it.
func (s *suite) testRetentionByAge(t *testing.T) {
	ctx := s.ctx(t)
	const maxAge = 200 * time.Millisecond
	b := s.newBroker(t, Config{MaxEvents: 1000, MaxAge: maxAge, IdempotencyWindow: time.Hour})
	ep := b.Epoch()

	start := time.Now()
	old := publish(t, ctx, b, newEvent("age.a", 0))
	res := replay(t, ctx, b, broker.EventID{Epoch: ep}, "age.a")
	if time.Since(start) < maxAge/2 { // only then is it surely still young
		checkEvents(t, "young event", res.Events, []*broker.Event{old})
		if res.Truncated {
			t.Error("young event: Replay reported Truncated, but nothing was removed")
		}
	}

	poll.Until(t, s.opts.Timeout, "the event to age out", func() bool {
		res = replay(t, ctx, b, broker.EventID{Epoch: ep}, "age.a")
		return len(res.Events) == 0
	})
	if !res.Truncated {
		t.Error("after the event aged out: Replay from the start did not report Truncated")
	}
	res = replay(t, ctx, b, broker.EventID{Epoch: ep, Seq: old.Seq}, "age.a")
	checkEvents(t, "from the aged-out event", res.Events, nil)
	if res.Truncated {
		t.Error("from the aged-out event: Replay reported Truncated, but nothing after it was removed")
	}

	start = time.Now()
	fresh := publish(t, ctx, b, newEvent("age.a", 1))
	res = replay(t, ctx, b, broker.EventID{Epoch: ep}, "age.a")
	if time.Since(start) < maxAge/2 {
		checkEvents(t, "after a new publish", res.Events, []*broker.Event{fresh})
	}
	if !res.Truncated {
		t.Error("after a new publish: Replay from the start did not report Truncated")
	}
	res = replay(t, ctx, b, broker.EventID{Epoch: ep, Seq: old.Seq}, "age.a")
	if time.Since(start) < maxAge/2 {
		checkEvents(t, "after a new publish, from the aged-out event", res.Events, []*broker.Event{fresh})
		if res.Truncated {
			t.Error("after a new publish, from the aged-out event: Replay reported Truncated, but nothing after it was removed")
		}
	}
}
