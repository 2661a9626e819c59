package memory

import (
	"context"
	"fmt"
	"runtime"
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
