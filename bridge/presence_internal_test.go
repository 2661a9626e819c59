package bridge

import (
	"encoding/json"
	"log/slog"
	"reflect"
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

// TestReportJSON: a node's report, as the reporter encodes it, reads back
// with encoding/json (as the other nodes read it) as what encoding/json
// itself encodes reads back: every field, the empty ones left out, topics
// and texts that need escaping, and an error's invalid UTF-8.
func TestReportJSON(t *testing.T) {
	at := time.Date(2026, 12, 5, 1, 2, 3, 456789000, time.FixedZone("x", 3600))
	reports := []nodeReport{
		{Version: "v1.2.3", Started: at, Reported: at.Add(time.Minute), Healthy: true},
		{
			Version: `v"9"\`, Started: at, Reported: at, Connections: 12345,
			BrokerError: "dial tcp: \x00\n\"refused\"\xff\xfe end",
			Subscribers: map[string]int32{"orders.eu": 3, "orders.>": 1, "chat.rooms.zoë": 2147483647, "a\"b": 0},
			Published: map[string]pubReport{
				"orders.eu":      {LastMinute: 7, LastSeq: 1 << 63, LastTime: at.UnixMilli()},
				"idle":           {},
				"chat.rooms.zoë": {LastMinute: 1, LastSeq: 2},
			},
		},
	}
	for i, r := range reports {
		got, want := decodeReport(t, r.appendJSON(nil)), decodeReport(t, mustMarshal(t, r))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("report %d reads back as\n%+v\nwant (as encoding/json's)\n%+v", i, got, want)
		}
		if !got.Started.Equal(r.Started) || got.Connections != r.Connections || len(got.Subscribers) != len(r.Subscribers) || len(got.Published) != len(r.Published) {
			t.Errorf("report %d reads back as %+v, want %+v", i, got, r)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeReport(t *testing.T, b []byte) nodeReport {
	t.Helper()
	var r nodeReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return r
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

// BenchmarkPresenceReport is what a node spends every PresenceInterval on
// its report with 5,000 subscribed topics, each published: taking the
// figures and encoding them as the broker stores them.
func BenchmarkPresenceReport(b *testing.B) {
	p := newTestPresence()
	now := time.Now()
	for i := range 5000 {
		topic := "scores.match-" + strconv.Itoa(i)
		p.hub.counts[topic] = 1
		p.published(topic, uint64(i+1), now)
	}
	p.sample(now)
	ctx := b.Context()
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		r := p.report(ctx)
		buf = r.appendJSON(buf[:0])
	}
}
