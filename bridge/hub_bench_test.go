package bridge

import (
	"bytes"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	monitoringv1 "github.com/heraldhq/herald/gen/monitoring/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/broker"
)

// hubBenchBroker is the least Broker a Hub needs when the benchmark calls
// deliver itself.
type hubBenchBroker struct{ broker.Broker }

func (hubBenchBroker) Epoch() string { return "k3j9x2ab" }

// benchTypes resolves the example schemas, which their imports above
// register globally. (internal/schema imports bridge, so it cannot be used
// from bridge's own tests.)
var benchTypes TypeResolver = protoregistry.GlobalTypes

func newBenchHub(tb testing.TB, queueSize int) *Hub {
	tb.Helper()
	return newHub(hubBenchBroker{}, benchTypes, slog.New(slog.DiscardHandler), newMetrics(), queueSize)
}

// benchSubscribers subscribes n subscribers to topic.
func benchSubscribers(tb testing.TB, h *Hub, topic string, n int, render *Rendering) []*subscriber {
	tb.Helper()
	p, err := broker.ParsePattern(topic)
	if err != nil {
		tb.Fatal(err)
	}
	subs := make([]*subscriber, n)
	for i := range subs {
		if subs[i], err = h.subscribe("", []broker.Pattern{p}, render, nil); err != nil {
			tb.Fatal(err)
		}
	}
	return subs
}

// chatEvent is an event as the publish path hands it to the broker: the
// payload already rendered as JSON (about 256 bytes, as in herald-bench).
func chatEvent(tb testing.TB, topic string) *broker.Event {
	tb.Helper()
	msg := &chatv1.ChatMessage{Room: topic, MessageId: "0000000017.1767225600123456789", Author: "herald-bench",
		Text: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}
	payload, err := proto.Marshal(msg)
	if err != nil {
		tb.Fatal(err)
	}
	json, err := protojson.Marshal(msg)
	if err != nil {
		tb.Fatal(err)
	}
	return withJSON(&broker.Event{Topic: topic, Type: "chat.v1.ChatMessage", TypeURL: "type.googleapis.com/chat.v1.ChatMessage", Payload: payload}, json)
}

// withJSON attaches the payload's JSON to ev, as the publish path does for
// the types it renders to check them.
func withJSON(ev *broker.Event, json []byte) *broker.Event {
	ev.Attach(&rendered{json: json})
	return ev
}

// jsonOf returns the JSON withJSON attached to ev.
func jsonOf(ev *broker.Event) []byte { return renderedOf(ev).json }

// BenchmarkHubFanout is the steady-state fan-out path: deliver one event
// (its frame already encoded by the first subscriber of an earlier
// delivery) to the queues of n subscribers, and take it off each queue as
// the stream handlers do. It must not allocate.
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := newBenchHub(b, 256)
			subs := benchSubscribers(b, h, "bench.t00000", n, nil)
			ev := chatEvent(b, "bench.t00000")
			ev.Seq = 1
			h.deliver(ev) // encodes the frame once
			for _, s := range subs {
				s.queue.pop()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev.Seq = uint64(i) + 2
				h.deliver(ev)
				for _, s := range subs {
					s.queue.pop()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

// BenchmarkHubFanoutConsumers is BenchmarkHubFanout with a goroutine per
// subscriber draining its queue, as the stream handlers do (without the
// writes): it adds the cost of waking each subscriber's goroutine, which a
// writer that serves every connection from one goroutine does not pay.
func BenchmarkHubFanoutConsumers(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := newBenchHub(b, 4096)
			subs := benchSubscribers(b, h, "bench.t00000", n, nil)
			ev := chatEvent(b, "bench.t00000")
			var consumed atomic.Int64
			var wg sync.WaitGroup
			for _, s := range subs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-s.queue.ready:
							for {
								if _, ok := s.queue.pop(); !ok {
									break
								}
								consumed.Add(1)
							}
						case <-s.done:
							return
						}
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev.Seq = uint64(i) + 1
				h.deliver(ev)
				if i%256 == 255 { // keep the queues from overflowing
					for consumed.Load() < int64(i+1)*int64(n) {
						runtime.Gosched()
					}
				}
			}
			for consumed.Load() < int64(b.N)*int64(n) {
				runtime.Gosched()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
			for _, s := range subs {
				h.drop(s, dropShutdown)
			}
			wg.Wait()
		})
	}
}

// BenchmarkHubDeliverNewEvent delivers a new event each time, so it
// includes encoding the event's frame once (and allocating the Event, as
// the publish path does): its allocations are per event and do not grow
// with the number of subscribers.
func BenchmarkHubDeliverNewEvent(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := newBenchHub(b, 256)
			subs := benchSubscribers(b, h, "bench.t00000", n, nil)
			tmpl := chatEvent(b, "bench.t00000")
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev := withJSON(&broker.Event{Topic: tmpl.Topic, Type: tmpl.Type, TypeURL: tmpl.TypeURL, Payload: tmpl.Payload, Seq: uint64(i) + 1}, jsonOf(tmpl))
				h.deliver(ev)
				for _, s := range subs {
					s.queue.pop()
				}
			}
		})
	}
}

// BenchmarkHubFanoutRendering is the fan-out to subscribers that asked for
// a non-default JSON form (?proto_names=true): one rendering per event,
// shared, but looked up per delivery.
func BenchmarkHubFanoutRendering(b *testing.B) {
	const n = 100
	h := newBenchHub(b, 256)
	subs := benchSubscribers(b, h, "bench.t00000", n, &Rendering{ProtoNames: true})
	ev := chatEvent(b, "bench.t00000")
	ev.Seq = 1
	h.deliver(ev)
	for _, s := range subs {
		s.queue.pop()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev.Seq = uint64(i) + 2
		h.deliver(ev)
		for _, s := range subs {
			s.queue.pop()
			_ = h.frameFor(ev, s.render) // as the stream handler does
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/delivery")
}

// TestHubFanoutDoesNotAllocate keeps the steady-state fan-out path free of
// allocations per delivery.
func TestHubFanoutDoesNotAllocate(t *testing.T) {
	h := newBenchHub(t, 256)
	subs := benchSubscribers(t, h, "bench.t00000", 100, nil)
	ev := chatEvent(t, "bench.t00000")
	ev.Seq = 1
	h.deliver(ev)
	for _, s := range subs {
		s.queue.pop()
	}
	allocs := testing.AllocsPerRun(100, func() {
		ev.Seq++
		h.deliver(ev)
		for _, s := range subs {
			s.queue.pop()
		}
	})
	if allocs != 0 {
		t.Errorf("delivering an encoded event to 100 subscribers allocates %v times, want 0", allocs)
	}
}

// BenchmarkRenderJSON is the publish path's JSON encoding of a payload
// (decode the protobuf, render protojson), done once per event.
func BenchmarkRenderJSON(b *testing.B) {
	types := benchTypes
	for _, bc := range []struct {
		name string
		msg  proto.Message
	}{
		{"chat-256B", &chatv1.ChatMessage{Room: "bench.t00000", MessageId: "0000000017.1767225600123456789", Author: "herald-bench",
			Text: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}},
		{"monitoring", &monitoringv1.ServerStats{ServerId: "game-1", Region: "eu", OnlinePlayers: 57, MaxPlayers: 64, CpuLoad: 0.42, TickRate: 63.9,
			ObservedAt: timestamppb.New(timestamppb.Now().AsTime())}},
		{"order", &ordersv1.OrderPlaced{OrderId: "ord-000007", Customer: "Ada Lovelace", TotalCents: 12900, Currency: "EUR"}},
	} {
		payload, err := proto.Marshal(bc.msg)
		if err != nil {
			b.Fatal(err)
		}
		typeURL := "type.googleapis.com/" + string(bc.msg.ProtoReflect().Descriptor().FullName())
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				msg, err := decodePayload(types, typeURL, payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := renderJSON(types, msg, protojson.MarshalOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHubFrame encodes an event's SSE frame from its rendered JSON,
// once per event (allocating the Event too).
func BenchmarkHubFrame(b *testing.B) {
	h := newBenchHub(b, 1)
	tmpl := chatEvent(b, "bench.t00000")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := withJSON(&broker.Event{Type: tmpl.Type, Seq: uint64(i) + 1}, jsonOf(tmpl))
		_ = h.frame(ev)
	}
}

// BenchmarkHubFramePushed renders an event of a type pushed at run time
// (dynamicpb) and encodes its frame, as a node does for each event its
// subscribers receive: decoding, protojson and the frame.
func BenchmarkHubFramePushed(b *testing.B) {
	h := newHub(hubBenchBroker{}, dynamicTypes, slog.New(slog.DiscardHandler), newMetrics(), 1)
	msg := &chatv1.ChatMessage{Room: "bench.t00000", MessageId: "0000000017.1767225600123456789", Author: "herald-bench", Text: "hello", SentAt: timestamppb.Now()}
	payload, err := proto.Marshal(msg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := &broker.Event{Topic: "bench.t00000", Type: "chat", TypeURL: "type.googleapis.com/chat.v1.ChatMessage", Payload: payload, Seq: uint64(i) + 1}
		if f := h.frame(ev); bytes.Contains(f, []byte("@error")) {
			b.Fatalf("frame %s", f)
		}
	}
}
