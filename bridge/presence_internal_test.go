package bridge

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoregistry"
)

func newTestPresence() *presence {
	hub := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), newMetrics(), 4)
	return newPresence("n", "v", time.Second, hub, epochBroker{}, slog.New(slog.DiscardHandler))
}

// TestPublishRateWindow: a topic's publishes of the last minute count
// those after the sample taken about a minute ago, and a topic idle for a
// whole minute is forgotten.
func TestPublishRateWindow(t *testing.T) {
	p := newTestPresence()
	t0 := time.Unix(1_000_000, 0)
	step := rateWindow / rateSlots
	for i := range 3 {
		p.published("a", uint64(i+1), t0)
	}
	p.sample(t0)
	p.published("a", 4, t0.Add(time.Second))
	if got := p.publishedReport()["a"]; got.LastMinute != 4 || got.LastSeq != 4 || got.LastTime != t0.Add(time.Second).UnixMilli() {
		t.Fatalf("after 4 publishes: %+v, want 4 in the last minute, last seq 4", got)
	}
	// Eleven more samples: the window still holds the fourth publish,
	// made after the first sample.
	for i := 1; i < rateSlots; i++ {
		p.sample(t0.Add(time.Duration(i) * step))
	}
	if got := p.publishedReport()["a"].LastMinute; got != 1 {
		t.Fatalf("a minute on: %d in the last minute, want 1 (the three before the first sample left the window)", got)
	}
	p.sample(t0.Add(rateSlots * step))
	if got := p.publishedReport()["a"].LastMinute; got != 0 {
		t.Fatalf("a minute after the last publish: %d in the last minute, want 0", got)
	}
	// A sample too soon after the last is none.
	p.published("a", 5, t0.Add(rateSlots*step))
	p.sample(t0.Add(rateSlots*step + time.Second))
	if got := p.publishedReport()["a"].LastMinute; got != 1 {
		t.Fatalf("%d in the last minute, want 1", got)
	}
	for i := 1; i <= rateSlots+1; i++ {
		p.sample(t0.Add(time.Duration(rateSlots+i)*step + time.Hour))
	}
	if _, ok := p.publishedReport()["a"]; ok {
		t.Fatal("a topic idle for over a minute is still reported")
	}
}

// BenchmarkPresencePublished is what a publish pays for the admin API's
// figures: a lock-free map lookup and three atomics, no allocation once
// the topic is known.
func BenchmarkPresencePublished(b *testing.B) {
	p := newTestPresence()
	topics := make([]string, 64)
	for i := range topics {
		topics[i] = "orders." + strconv.Itoa(i)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint64(0)
		for pb.Next() {
			i++
			p.published(topics[i%64], i, now)
		}
	})
}
