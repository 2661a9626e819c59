package brokertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/poll"
)

// snapshotter returns b as a broker.Snapshotter; it skips tb when the
// backend has no snapshots.
func snapshotter(tb testing.TB, b broker.Broker) broker.Snapshotter {
	tb.Helper()
	snap, ok := b.(broker.Snapshotter)
	if !ok {
		tb.Skipf("%T is not a broker.Snapshotter", b)
	}
	return snap
}

// snapshot calls Snapshot, failing tb on error.
func snapshot(tb testing.TB, ctx context.Context, b broker.Broker, limit int, patterns ...string) broker.SnapshotResult {
	tb.Helper()
	res, err := snapshotter(tb, b).Snapshot(ctx, parsePatterns(tb, patterns), limit)
	if err != nil {
		tb.Fatalf("Snapshot(%q, %d): %v", patterns, limit, err)
	}
	return res
}

// latest returns, for each topic in topics, the event of evs with the
// highest Seq <= upto, in Seq order.
func latest(evs []*broker.Event, upto uint64, topics ...string) []*broker.Event {
	last := make(map[string]*broker.Event)
	for _, ev := range evs {
		if ev.Seq <= upto && slices.Contains(topics, ev.Topic) {
			if l := last[ev.Topic]; l == nil || ev.Seq > l.Seq {
				last[ev.Topic] = ev
			}
		}
	}
	return slices.SortedFunc(maps.Values(last), func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
}

// checkSeam fails tb unless a snapshot's position is where live events go
// on: a publish after it gets a Seq above Upto, and a Replay from Upto
// returns exactly that event.
func checkSeam(tb testing.TB, ctx context.Context, b broker.Broker, res broker.SnapshotResult, topic string) {
	tb.Helper()
	next := publish(tb, ctx, b, newEvent(topic, 1_000_000))
	if next.Seq <= res.Upto {
		tb.Fatalf("Publish after Snapshot got Seq %d, not above the snapshot's Upto %d: it would be neither in the snapshot nor live", next.Seq, res.Upto)
	}
	rres := replay(tb, ctx, b, broker.EventID{Epoch: b.Epoch(), Seq: res.Upto}, topic)
	checkEvents(tb, fmt.Sprintf("Replay from the snapshot's Upto %d", res.Upto), rres.Events, []*broker.Event{next})
}

// testSnapshot: for every pattern set, Snapshot returns each matching
// topic's latest event, once however many patterns match it, in Seq order,
// as of a position at least the last accepted Seq; an empty log has an
// empty snapshot; a publish after a snapshot lands above its Upto.
func (s *suite) testSnapshot(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	empty := snapshot(t, ctx, b, 10, ">")
	if len(empty.Events) != 0 || empty.More {
		t.Errorf("Snapshot of an empty log: %d events (seqs %s), More %v; want none", len(empty.Events), fmtSeqs(empty.Events), empty.More)
	}
	checkSeam(t, ctx, b, empty, "other")

	topics := []string{"orders.eu", "orders.us", "orders.eu.north", "orders", "monitoring.eu", "monitoring.eu.game-1", "monitoring", "other"}
	var all []*broker.Event
	for i := range 3 * len(topics) {
		// An irregular order, so that Seq order differs from topic order.
		all = append(all, publish(t, ctx, b, newEvent(topics[(i*5+i/len(topics))%len(topics)], i)))
	}
	last := all[len(all)-1].Seq
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
		{"inner star", []string{"orders.*.north"}, []string{"orders.eu.north"}},
		{"everything", []string{">"}, topics},
		{"several", []string{"orders.eu", "monitoring.>", "other"}, []string{"orders.eu", "monitoring.eu", "monitoring.eu.game-1", "other"}},
		{"overlapping", []string{"orders.*", "orders.eu", "*.eu", "orders.>", "orders.eu"}, []string{"orders.eu", "orders.us", "orders.eu.north", "monitoring.eu"}},
		{"no match", []string{"nothing.here", "orders.*.*.*"}, nil},
		{"no patterns", nil, nil},
	}
	for _, c := range cases {
		res := snapshot(t, ctx, b, 100, c.patterns...)
		if res.Upto < last {
			t.Errorf("%s: Upto %d is below Seq %d, accepted before Snapshot was called", c.name, res.Upto, last)
		}
		checkEvents(t, c.name, res.Events, latest(all, last, c.topics...))
		if res.More {
			t.Errorf("%s: More, with %d topics and a limit of 100", c.name, len(res.Events))
		}
	}
	checkSeam(t, ctx, b, snapshot(t, ctx, b, 100, "monitoring.>"), "monitoring.eu")
}

// testSnapshotLimit: at most limit events, More when more topics have
// one, each event still its topic's latest; a limit below 1 is refused.
func (s *suite) testSnapshotLimit(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	var all []*broker.Event
	var topics []string
	for i := range 5 {
		topics = append(topics, fmt.Sprintf("limit.t%d", i))
	}
	for i := range 2 * len(topics) {
		all = append(all, publish(t, ctx, b, newEvent(topics[i%len(topics)], i)))
	}
	publish(t, ctx, b, newEvent("other", 0))
	want := latest(all, all[len(all)-1].Seq, topics...)
	latestSeq := make(map[string]uint64)
	for _, ev := range want {
		latestSeq[ev.Topic] = ev.Seq
	}
	for _, limit := range []int{5, 6, 10_000} {
		res := snapshot(t, ctx, b, limit, "limit.*")
		checkEvents(t, fmt.Sprintf("limit %d", limit), res.Events, want)
		if res.More {
			t.Errorf("limit %d, 5 topics: More", limit)
		}
	}
	for _, limit := range []int{1, 2, 4} {
		res := snapshot(t, ctx, b, limit, "limit.*")
		if !res.More {
			t.Errorf("limit %d, 5 topics: More false", limit)
		}
		if len(res.Events) != limit {
			t.Errorf("limit %d, 5 topics: %d events (seqs %s); want %d", limit, len(res.Events), fmtSeqs(res.Events), limit)
		}
		seen := make(map[string]bool)
		for i, ev := range res.Events {
			if i > 0 && ev.Seq <= res.Events[i-1].Seq {
				t.Errorf("limit %d: Seq %d after %d: not in Seq order", limit, ev.Seq, res.Events[i-1].Seq)
			}
			if seen[ev.Topic] {
				t.Errorf("limit %d: topic %q twice", limit, ev.Topic)
			}
			seen[ev.Topic] = true
			if latestSeq[ev.Topic] != ev.Seq {
				t.Errorf("limit %d: Seq %d of topic %q is not the topic's latest event", limit, ev.Seq, ev.Topic)
			}
		}
	}
	for _, limit := range []int{0, -1} {
		_, err := snapshotter(t, b).Snapshot(ctx, parsePatterns(t, []string{"limit.*"}), limit)
		if !errors.Is(err, broker.ErrBadRequest) {
			t.Errorf("Snapshot with limit %d: %v; want ErrBadRequest", limit, err)
		}
	}
}

// testSnapshotDeletion: a deletion marker is an event like any other: its
// topic's latest, with its type and no payload, until the topic is
// published to again.
func (s *suite) testSnapshotDeletion(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	publish(t, ctx, b, newEvent("state.a", 0))
	sb := publish(t, ctx, b, newEvent("state.b", 1))
	marker := publish(t, ctx, b, &broker.Event{Topic: "state.a", Type: broker.DeletedType})
	res := snapshot(t, ctx, b, 10, "state.*")
	checkEvents(t, "after a deletion", res.Events, []*broker.Event{sb, marker})
	if n := len(res.Events); n == 2 && (res.Events[1].Type != broker.DeletedType || len(res.Events[1].Payload) != 0 || res.Events[1].TypeURL != "") {
		t.Errorf("marker came back as type %q, TypeURL %q, %d payload bytes", res.Events[1].Type, res.Events[1].TypeURL, len(res.Events[1].Payload))
	}
	again := publish(t, ctx, b, newEvent("state.a", 2))
	res = snapshot(t, ctx, b, 10, "state.*")
	checkEvents(t, "after publishing again", res.Events, []*broker.Event{sb, again})
}

// testSnapshotRetentionByCount: count retention keeps a topic's latest
// event, so the topic stays in snapshots.
func (s *suite) testSnapshotRetentionByCount(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, Config{MaxEvents: 2, MaxAge: time.Hour, IdempotencyWindow: time.Hour})
	var all []*broker.Event
	for i := range 12 {
		topic := "count.busy"
		if i == 3 {
			topic = "count.quiet"
		}
		all = append(all, publish(t, ctx, b, newEvent(topic, i)))
	}
	res := snapshot(t, ctx, b, 10, "count.>")
	checkEvents(t, "with count retention", res.Events, latest(all, all[len(all)-1].Seq, "count.busy", "count.quiet"))
}

// testSnapshotRetentionByAge: a topic whose events aged out leaves
// snapshots, even before anything is published again.
func (s *suite) testSnapshotRetentionByAge(t *testing.T) {
	ctx := s.ctx(t)
	const maxAge = 200 * time.Millisecond
	b := s.newBroker(t, Config{MaxEvents: 1000, MaxAge: maxAge, IdempotencyWindow: maxAge})
	start := time.Now()
	old := publish(t, ctx, b, newEvent("age.old", 0))
	res := snapshot(t, ctx, b, 10, "age.>")
	if time.Since(start) < maxAge/2 { // only then is it surely still young
		checkEvents(t, "young event", res.Events, []*broker.Event{old})
	}
	poll.Until(t, s.opts.Timeout, "the event to age out of snapshots", func() bool {
		res = snapshot(t, ctx, b, 10, "age.>")
		return len(res.Events) == 0
	})
	if res.Upto < old.Seq {
		t.Errorf("after the event aged out: Upto %d is below its Seq %d", res.Upto, old.Seq)
	}
	start = time.Now()
	fresh := publish(t, ctx, b, newEvent("age.fresh", 1))
	res = snapshot(t, ctx, b, 10, "age.>")
	if time.Since(start) < maxAge/2 {
		checkEvents(t, "a fresh event after an aged-out one", res.Events, []*broker.Event{fresh})
	}
}

// testSnapshotConcurrentPublishers: snapshots taken while publishers
// write to the same topics are each of one position: each holds, for
// every topic, exactly the latest event with Seq <= Upto, and Upto covers
// every event accepted before the call. A snapshot that read one topic as
// of a later position than another fails it.
func (s *suite) testSnapshotConcurrentPublishers(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	snapshotter(t, b)
	const publishers, perPublisher, topics = 4, 60, 6
	var (
		wg       sync.WaitGroup
		acked    atomic.Uint64 // the highest Seq whose Publish returned
		done     atomic.Int32
		mu       sync.Mutex
		all      []*broker.Event
		topicSet []string
	)
	for i := range topics {
		topicSet = append(topicSet, fmt.Sprintf("conc.t%d", i))
	}
	for p := range publishers {
		wg.Go(func() {
			defer done.Add(1)
			for i := range perPublisher {
				ev := newEvent(topicSet[(p+i)%topics], p*1000+i)
				want := clone(ev)
				if _, err := b.Publish(ctx, ev); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				want.Seq, want.Time = ev.Seq, ev.Time
				for {
					a := acked.Load()
					if ev.Seq <= a || acked.CompareAndSwap(a, ev.Seq) {
						break
					}
				}
				mu.Lock()
				all = append(all, want)
				mu.Unlock()
			}
		})
	}
	type taken struct {
		before uint64 // acked when Snapshot was called
		res    broker.SnapshotResult
	}
	var snaps []taken
	ps := parsePatterns(t, []string{"conc.>"})
	for len(snaps) < 3 || done.Load() < publishers {
		before := acked.Load()
		res, err := b.(broker.Snapshotter).Snapshot(ctx, ps, 100)
		if err != nil {
			t.Fatalf("Snapshot while publishing: %v", err)
		}
		snaps = append(snaps, taken{before, res})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, sn := range snaps {
		what := fmt.Sprintf("snapshot %d of %d (Upto %d)", i+1, len(snaps), sn.res.Upto)
		if sn.res.Upto < sn.before {
			t.Errorf("%s: Upto is below Seq %d, accepted before the call", what, sn.before)
		}
		checkEvents(t, what, sn.res.Events, latest(all, sn.res.Upto, topicSet...))
		if t.Failed() {
			return
		}
	}
	t.Logf("%d snapshots during %d publishes", len(snaps), publishers*perPublisher)
}

// testSnapshotMultiNode: a snapshot on one node holds what another node
// published, and its position goes on on the other node.
func (s *suite) testSnapshotMultiNode(t *testing.T) {
	ctx := s.ctx(t)
	b1 := s.newBroker(t, roomy)
	snapshotter(t, b1)
	b2 := s.newNode(t, b1)
	var all []*broker.Event
	for i := range 9 {
		all = append(all, publish(t, ctx, []broker.Broker{b1, b2}[i%2], newEvent(fmt.Sprintf("node.t%d", i%3), i)))
	}
	res := snapshot(t, ctx, b2, 10, "node.>")
	checkEvents(t, "snapshot on node 2", res.Events, latest(all, all[len(all)-1].Seq, "node.t0", "node.t1", "node.t2"))
	checkSeam(t, ctx, b1, res, "node.t0")
}

// testSnapshotClosed: a cancelled context fails Snapshot with its error;
// after Close, Snapshot fails with ErrClosed.
func (s *suite) testSnapshotClosed(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	snap := snapshotter(t, b)
	publish(t, ctx, b, newEvent("closed.a", 0))
	ps := parsePatterns(t, []string{">"})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := snap.Snapshot(cctx, ps, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Snapshot with a cancelled context: %v; want context.Canceled", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := snap.Snapshot(ctx, ps, 10); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Snapshot after Close: %v; want ErrClosed", err)
	}
}

// testSnapshotManyTopics: a snapshot over more topics than a backend may
// read in one request (a JetStream batched get matches at most 1,024
// subjects) is complete, and More is exact at the limit.
func (s *suite) testSnapshotManyTopics(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	snapshotter(t, b)
	const topics, workers = 1100, 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		all   []*broker.Event
		names = make([]string, topics)
	)
	for i := range names {
		names[i] = fmt.Sprintf("many.g%d.t%d", i%10, i)
	}
	for w := range workers {
		wg.Go(func() {
			for i := w; i < topics+topics/10; i += workers {
				ev := newEvent(names[i%topics], i) // every tenth topic twice
				want := clone(ev)
				if _, err := b.Publish(ctx, ev); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				want.Seq, want.Time = ev.Seq, ev.Time
				mu.Lock()
				all = append(all, want)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	last := slices.MaxFunc(all, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) }).Seq
	res := snapshot(t, ctx, b, topics, "many.>")
	checkEvents(t, fmt.Sprintf("%d topics, limit %d", topics, topics), res.Events, latest(all, last, names...))
	if res.More {
		t.Errorf("%d topics, limit %d: More", topics, topics)
	}
	res = snapshot(t, ctx, b, topics-1, "many.>")
	if !res.More || len(res.Events) != topics-1 {
		t.Errorf("%d topics, limit %d: %d events, More %v; want %d, More", topics, topics-1, len(res.Events), res.More, topics-1)
	}
	var g3 []string
	for i := 3; i < topics; i += 10 {
		g3 = append(g3, names[i])
	}
	res = snapshot(t, ctx, b, topics, "many.g3.*", "many.*.t3")
	checkEvents(t, "one group of the topics", res.Events, latest(all, last, g3...))
}
