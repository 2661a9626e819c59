package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/brokertest"
)

func TestConformance(t *testing.T) {
	brokertest.Run(t, brokertest.Options{
		New: func(t testing.TB, cfg brokertest.Config) broker.Broker {
			return New(Options{MaxEvents: cfg.MaxEvents, MaxAge: cfg.MaxAge, IdempotencyWindow: cfg.IdempotencyWindow})
		},
	})
}

// Every start is a new log, so it must have a new epoch.
func TestNewEpoch(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		b := New(Options{})
		e := b.Epoch()
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if seen[e] {
			t.Fatalf("epoch %q given to two brokers", e)
		}
		seen[e] = true
	}
}

// Close ends the broker's own goroutine (the sweep), not only the work
// started after New that the conformance suite can see.
func TestCloseEndsSweep(t *testing.T) {
	before := runtime.NumGoroutine()
	b := New(Options{MaxAge: 100 * time.Millisecond})
	if runtime.NumGoroutine() <= before {
		t.Fatal("New started no goroutine; this test no longer checks anything")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > before {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%d goroutines after Close, %d before New", runtime.NumGoroutine(), before)
		}
	}
}

func publish(t *testing.T, b *Broker, topic, key string) *broker.Event {
	t.Helper()
	ev := &broker.Event{Topic: topic, Type: "t", IdempotencyKey: key}
	if _, err := b.Publish(t.Context(), ev); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
	return ev
}

func replay(t *testing.T, b *Broker, topic string, after uint64) broker.ReplayResult {
	t.Helper()
	p, err := broker.ParsePattern(topic)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Replay(t.Context(), []broker.Pattern{p}, broker.EventID{Epoch: b.Epoch(), Seq: after})
	if err != nil {
		t.Fatalf("Replay(%q): %v", topic, err)
	}
	return res
}

// The sweep keeps memory within retention when nothing is published: it
// drops idle topics whose events all expired, and forgets expired
// idempotency keys. Run in a bubble, the test also checks that Close ends
// the sweep goroutine (synctest.Test fails on a goroutine left blocked).
func TestSweepDropsIdleTopics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxAge = time.Second // the sweep runs every 100ms
		b := New(Options{MaxAge: maxAge, IdempotencyWindow: maxAge})
		defer b.Close()

		publish(t, b, "idle", "k")
		// In the synctest bubble the clock is virtual: Sleep advances it
		// at once, when every goroutine of the bubble is blocked.
		time.Sleep(maxAge / 2)
		publish(t, b, "busy", "")
		time.Sleep(maxAge/2 + 150*time.Millisecond) // "idle" is past MaxAge, "busy" is not
		synctest.Wait()

		b.mu.Lock()
		_, idle := b.topics["idle"]
		busy := b.topics["busy"]
		keys, queued := len(b.dedup), len(b.dedupQ)
		b.mu.Unlock()
		if idle {
			t.Error(`topic "idle" still held after all its events expired`)
		}
		if busy == nil || busy.n != 1 {
			t.Error(`topic "busy" lost its unexpired event`)
		}
		if keys != 0 || queued != 0 {
			t.Errorf("%d idempotency keys (%d queued) held after the window passed", keys, queued)
		}
	})
}

// A topic dropped by the sweep leaves no log to tell what was removed; the
// broker must still report the gap.
func TestReplayDroppedTopic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxAge = time.Second
		b := New(Options{MaxAge: maxAge})
		defer b.Close()

		var last *broker.Event
		for range 3 {
			last = publish(t, b, "gone", "")
		}
		time.Sleep(maxAge + 150*time.Millisecond)
		synctest.Wait()
		b.mu.Lock()
		_, held := b.topics["gone"]
		b.mu.Unlock()
		if held {
			t.Fatal(`topic "gone" was not dropped`)
		}

		for _, p := range []string{"gone", "*", ">"} {
			res := replay(t, b, p, 0)
			if len(res.Events) != 0 || !res.Truncated {
				t.Errorf("Replay(%q) from the start after the topic was dropped = %d events, Truncated %v; want none, Truncated", p, len(res.Events), res.Truncated)
			}
			res = replay(t, b, p, last.Seq)
			if len(res.Events) != 0 || res.Truncated {
				t.Errorf("Replay(%q) from its last event = %d events, Truncated %v; want none, not Truncated", p, len(res.Events), res.Truncated)
			}
		}

		// The topic comes back with a new log; the gap before it stays.
		again := publish(t, b, "gone", "")
		res := replay(t, b, "gone", 0)
		if len(res.Events) != 1 || res.Events[0] != again || !res.Truncated {
			t.Errorf("Replay after the topic came back = %d events, Truncated %v; want the new event, Truncated", len(res.Events), res.Truncated)
		}
		res = replay(t, b, "gone", last.Seq)
		if len(res.Events) != 1 || res.Events[0] != again || res.Truncated {
			t.Errorf("Replay from the dropped log's last event = %d events, Truncated %v; want the new event, not Truncated", len(res.Events), res.Truncated)
		}
	})
}

// Replay hides events past MaxAge that the sweep has not removed yet, and
// reports them as removed.
func TestReplayHidesExpired(t *testing.T) {
	var offset atomic.Int64 // the sweep reads the clock from its goroutine
	start := time.Now()
	clock := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	b := New(Options{MaxAge: time.Hour, Now: clock}) // the sweep runs every minute
	defer b.Close()

	old := publish(t, b, "t", "")
	if res := replay(t, b, "t", 0); len(res.Events) != 1 || res.Truncated {
		t.Fatalf("fresh event: Replay = %d events, Truncated %v; want it, not Truncated", len(res.Events), res.Truncated)
	}
	offset.Store(int64(time.Hour + time.Second))
	if res := replay(t, b, "t", 0); len(res.Events) != 0 || !res.Truncated {
		t.Fatalf("expired event: Replay = %d events, Truncated %v; want none, Truncated", len(res.Events), res.Truncated)
	}
	if res := replay(t, b, "t", old.Seq); len(res.Events) != 0 || res.Truncated {
		t.Fatalf("from the expired event: Replay = %d events, Truncated %v; want none, not Truncated", len(res.Events), res.Truncated)
	}
}

// A topic whose events aged out is absent from a snapshot, and not
// counted against its limit, before the sweep removed the events.
func TestSnapshotHidesExpired(t *testing.T) {
	var offset atomic.Int64 // the sweep reads the clock from its goroutine
	start := time.Now()
	clock := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	b := New(Options{MaxAge: time.Hour, Now: clock}) // the sweep runs every minute
	defer b.Close()

	publish(t, b, "old", "")
	offset.Store(int64(time.Hour + time.Second))
	fresh := publish(t, b, "fresh", "")
	res := snapshot(t, b, ">", 1)
	if !slices.Equal(res.Events, []*broker.Event{fresh}) || res.More || res.Upto != fresh.Seq {
		t.Errorf("Snapshot = seqs %v, More %v, Upto %d; want only Seq %d, no More, Upto %d", seqs(res.Events), res.More, res.Upto, fresh.Seq, fresh.Seq)
	}
}

// A topic whose events MaxBytes evicted is absent from a snapshot; a topic
// keeps its latest event while any is retained.
func TestSnapshotAfterMaxBytes(t *testing.T) {
	b := New(Options{MaxBytes: 1000})
	defer b.Close()
	publishSized(t, b, "a", 400)
	b1 := publishSized(t, b, "b", 400)
	publishSized(t, b, "c", 100)
	b2 := publishSized(t, b, "b", 400) // evicts a's only event
	c2 := publishSized(t, b, "c", 100)
	res := snapshot(t, b, ">", 10)
	if want := []*broker.Event{b2, c2}; !slices.Equal(res.Events, want) {
		t.Errorf("Snapshot = seqs %v; want %v (a evicted, b's Seq %d superseded)", seqs(res.Events), seqs(want), b1.Seq)
	}
}

func snapshot(t *testing.T, b *Broker, pattern string, limit int) broker.SnapshotResult {
	t.Helper()
	p, err := broker.ParsePattern(pattern)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Snapshot(t.Context(), []broker.Pattern{p}, limit)
	if err != nil {
		t.Fatalf("Snapshot(%q): %v", pattern, err)
	}
	return res
}

// sized returns an event on topic whose Size is size.
func sized(topic string, size int) *broker.Event {
	return &broker.Event{Topic: topic, Type: "t", Payload: make([]byte, size-len(topic)-1)}
}

func publishSized(t *testing.T, b *Broker, topic string, size int) *broker.Event {
	t.Helper()
	ev := sized(topic, size)
	if _, err := b.Publish(t.Context(), ev); err != nil {
		t.Fatalf("Publish(%q, %d bytes): %v", topic, size, err)
	}
	return ev
}

// checkReplay fails t unless Replay of pattern after the position returns
// the events want, and Truncated as given.
func checkReplay(t *testing.T, b *Broker, pattern string, after uint64, want []*broker.Event, truncated bool) {
	t.Helper()
	res := replay(t, b, pattern, after)
	if !slices.Equal(res.Events, want) || res.Truncated != truncated {
		t.Errorf("Replay(%q) after Seq %d = seqs %v, Truncated %v; want seqs %v, Truncated %v",
			pattern, after, seqs(res.Events), res.Truncated, seqs(want), truncated)
	}
}

func seqs(evs []*broker.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}

// MaxBytes evicts the oldest retained events first, whatever their topic;
// a resume from before them is told of the gap, even once the sweep has
// dropped a topic the cap emptied; Evicted counts them.
func TestMaxBytesEvictsOldestFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Options{MaxBytes: 1000}) // MaxAge 1h: the sweep runs every minute
		defer b.Close()

		// Ten events of 100 bytes fill the cap.
		x := publishSized(t, b, "x", 100)
		var evs []*broker.Event
		for i := range 9 {
			evs = append(evs, publishSized(t, b, []string{"a", "b", "c"}[i%3], 100))
		}
		checkReplay(t, b, ">", 0, append([]*broker.Event{x}, evs...), false)
		if n, size := b.Evicted(); n != 0 || size != 0 {
			t.Fatalf("Evicted() = %d, %d within the cap; want 0, 0", n, size)
		}

		// 150 bytes more evicts x and a's first (200 bytes), 150 more b's
		// first (100 bytes is enough).
		c := publishSized(t, b, "c", 150)
		a := publishSized(t, b, "a", 150)
		if n, size := b.Evicted(); n != 3 || size != 300 {
			t.Errorf("Evicted() = %d events, %d bytes; want 3, 300", n, size)
		}
		b.mu.Lock()
		retained, count := b.bytes, b.count
		b.mu.Unlock()
		if retained != 1000 || count != 9 {
			t.Errorf("retained %d events, %d bytes; want 9, 1000", count, retained)
		}

		checkReplay(t, b, ">", 0, append(slices.Clone(evs[2:]), c, a), true)
		checkReplay(t, b, "a", 0, []*broker.Event{evs[3], evs[6], a}, true)
		checkReplay(t, b, "a", evs[0].Seq, []*broker.Event{evs[3], evs[6], a}, false)
		checkReplay(t, b, "b", 0, []*broker.Event{evs[4], evs[7]}, true)
		checkReplay(t, b, "b", evs[1].Seq, []*broker.Event{evs[4], evs[7]}, false)
		checkReplay(t, b, "c", 0, []*broker.Event{evs[2], evs[5], evs[8], c}, false)
		checkReplay(t, b, "x", 0, nil, true)
		checkReplay(t, b, "x", x.Seq, nil, false)

		// The cap emptied x; the sweep drops it, and the gap stays.
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		b.mu.Lock()
		_, held := b.topics["x"]
		b.mu.Unlock()
		if held {
			t.Fatal(`topic "x" was not dropped`)
		}
		checkReplay(t, b, "x", 0, nil, true)
		checkReplay(t, b, "x", x.Seq, nil, false)
		checkReplay(t, b, "*", evs[1].Seq, append(slices.Clone(evs[2:]), c, a), false)
	})
}

// An event larger than MaxBytes is refused and leaves retention as it was;
// one of exactly MaxBytes is accepted and evicts everything older.
func TestMaxBytesRefusesLargerEvent(t *testing.T) {
	b := New(Options{MaxBytes: 100})
	defer b.Close()
	kept := publishSized(t, b, "a", 60)

	_, err := b.Publish(t.Context(), sized("b", 101))
	if !errors.Is(err, broker.ErrEventTooLarge) || !strings.Contains(err.Error(), "MaxBytes 100") {
		t.Fatalf("Publish of 101 bytes with MaxBytes 100: %v; want ErrEventTooLarge naming MaxBytes", err)
	}
	checkReplay(t, b, ">", 0, []*broker.Event{kept}, false)
	if n, size := b.Evicted(); n != 0 || size != 0 {
		t.Fatalf("Evicted() = %d, %d after a refused event; want 0, 0", n, size)
	}

	full := publishSized(t, b, "b", 100)
	if full.Seq != kept.Seq+1 {
		t.Errorf("Seq %d after %d: the refused event took a Seq", full.Seq, kept.Seq)
	}
	checkReplay(t, b, ">", 0, []*broker.Event{full}, true)
	if n, size := b.Evicted(); n != 1 || size != 60 {
		t.Errorf("Evicted() = %d, %d; want 1, 60", n, size)
	}
}

// Retention by count and by bytes together, against a model of the
// contract: after every publish the retained bytes and events are the
// model's and within the caps, the order index stays bounded, and Replay
// returns what the model retains, Truncated exactly when the model removed
// something after the position.
func TestMaxBytesMatchesModel(t *testing.T) {
	const maxEvents, maxBytes = 5, 2000
	b := New(Options{MaxEvents: maxEvents, MaxBytes: maxBytes})
	defer b.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	topics := []string{"m.a", "m.a", "m.a", "m.b", "m.c", "m.d", "m.e", "m.f"} // m.a is hot

	type rec struct {
		ev   *broker.Event
		size int
	}
	var model []rec                 // retained, in Seq order
	lost := make(map[string]uint64) // topic → highest Seq removed
	var total int
	var evicted, evictedBytes uint64
	remove := func(i int) rec {
		r := model[i]
		model = slices.Delete(model, i, i+1)
		lost[r.ev.Topic] = r.ev.Seq
		total -= r.size
		return r
	}
	for i := range 3000 {
		topic := topics[rng.IntN(len(topics))]
		size := 50 + rng.IntN(350)
		if n := len(slices.DeleteFunc(slices.Clone(model), func(r rec) bool { return r.ev.Topic != topic })); n == maxEvents {
			remove(slices.IndexFunc(model, func(r rec) bool { return r.ev.Topic == topic }))
		}
		for total+size > maxBytes {
			r := remove(0)
			evicted++
			evictedBytes += uint64(r.size)
		}
		ev := publishSized(t, b, topic, size)
		model = append(model, rec{ev, size})
		total += size

		b.mu.Lock()
		retained, count, order := b.bytes, b.count, b.order.len()
		b.mu.Unlock()
		if retained != int64(total) || count != len(model) || retained > maxBytes {
			t.Fatalf("publish %d: retained %d events, %d bytes; the model %d, %d", i, count, retained, len(model), total)
		}
		if order > 2*count+64 {
			t.Fatalf("publish %d: %d entries in the order index for %d events", i, order, count)
		}
		if i%50 != 0 {
			continue
		}
		var all []*broker.Event
		for _, r := range model {
			all = append(all, r.ev)
		}
		res := replay(t, b, ">", 0)
		if !slices.Equal(res.Events, all) {
			t.Fatalf("publish %d: Replay = seqs %v; the model retains %v", i, seqs(res.Events), seqs(all))
		}
		for _, tp := range topics[2:] {
			for _, after := range []uint64{0, lost[tp] - min(lost[tp], 1), lost[tp]} {
				if res := replay(t, b, tp, after); res.Truncated != (lost[tp] > after) {
					t.Fatalf("publish %d: Replay(%q) after %d: Truncated %v, but the highest Seq removed is %d", i, tp, after, res.Truncated, lost[tp])
				}
			}
		}
	}
	if n, size := b.Evicted(); n != evicted || size != evictedBytes || n == 0 {
		t.Errorf("Evicted() = %d, %d; the model evicted %d, %d", n, size, evicted, evictedBytes)
	}
}

// liveHeap returns the bytes of the heap reachable after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// An event retention removed is garbage: nothing of the broker keeps it,
// the order index of MaxBytes included, even while an older event of
// another topic heads that index.
func TestRemovedEventsAreFreed(t *testing.T) {
	const payload, published = 1 << 20, 100
	for _, c := range []struct {
		name   string
		opts   Options
		topics int
		keeps  int // events retained at the end
	}{
		{"by bytes", Options{MaxBytes: 8 << 20}, 10, 7},
		{"by count, behind an older event", Options{MaxEvents: 4}, 1, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := New(c.opts)
			defer b.Close()
			publish(t, b, "quiet", "") // the oldest: by count, it heads the order index throughout
			before := liveHeap()
			for i := range published {
				publishSized(t, b, fmt.Sprintf("big.%d", i%c.topics), payload)
			}
			grown := liveHeap() - before
			if limit := int64(c.keeps+8) * payload; grown > limit {
				t.Errorf("the heap grew by %d MiB for %d events of 1 MiB, with %d retained", grown>>20, published, c.keeps)
			}
			b.mu.Lock()
			count, order := b.count, b.order.len()
			b.mu.Unlock()
			if order > 2*count+64 {
				t.Errorf("%d entries in the order index for %d events", order, count)
			}
			runtime.KeepAlive(b)
		})
	}
}

func BenchmarkPublish(b *testing.B) {
	br := New(Options{})
	defer br.Close()
	delivered := 0 // one publisher: every deliver call runs in its goroutine
	if err := br.Subscribe(context.Background(), func(*broker.Event) { delivered++ }); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	payload := make([]byte, 128)
	published := 0
	b.ReportAllocs()
	for b.Loop() {
		published++
		ev := &broker.Event{Topic: "bench.a", Type: "t", TypeURL: "type.googleapis.com/bench.v1.Event", Payload: payload}
		if _, err := br.Publish(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	if delivered != published {
		b.Fatalf("delivered %d of %d events", delivered, published)
	}
}

// BenchmarkPublishParallel: publishers on topics of their own, and one
// subscription, as the hub has.
func BenchmarkPublishParallel(b *testing.B) {
	br := New(Options{})
	defer br.Close()
	if err := br.Subscribe(context.Background(), func(*broker.Event) {}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 128)
	var topics atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		topic := fmt.Sprintf("bench.t%d", topics.Add(1))
		for pb.Next() {
			ev := &broker.Event{Topic: topic, Type: "t", TypeURL: "type.googleapis.com/bench.v1.Event", Payload: payload}
			if _, err := br.Publish(context.Background(), ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
