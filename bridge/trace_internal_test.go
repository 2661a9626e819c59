package bridge

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestDeliverySpan: one delivery span per event and node, whatever the
// number of subscribers, a child of the publish span the event carries,
// counting every subscriber handed the event, queued or written by a
// shard (inline, and by the shard's goroutine for a larger fan-out), and
// the bytes of their frames.
func TestDeliverySpan(t *testing.T) {
	for _, direct := range []int{2, inlineMax + 12} {
		t.Run(fmt.Sprintf("direct=%d", direct), func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			h := newBenchHub(t, 256)
			h.tracer = newTracer(tp)
			sh, _ := directSubscribers(t, h, "bench.t00000", direct)
			queued := benchSubscribers(t, h, "bench.t00000", 3, nil)
			ev := chatEvent(t, "bench.t00000")
			ev.Seq = 1
			ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			deliverDirect(h, sh, ev)
			for _, s := range queued {
				if _, ok := s.queue.pop(); !ok {
					t.Fatal("a queued subscriber did not get the event")
				}
			}

			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans ended for one event, want 1 delivery span", len(spans))
			}
			s := spans[0]
			if s.Name() != "herald.deliver" || s.Parent().SpanID().String() != "00f067aa0ba902b7" ||
				s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Fatalf("span %q, trace %s, parent %s; want herald.deliver, a child of the event's publish span",
					s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID())
			}
			attrs := attribute.NewSet(s.Attributes()...)
			subs, _ := attrs.Value(attrSubscribers)
			bytes, _ := attrs.Value(attrBytes)
			want := 3 + direct
			if subs.AsInt64() != int64(want) || bytes.AsInt64() != int64(want*len(h.frame(ev))) {
				t.Errorf("span counts %d subscribers and %d bytes; want %d and %d", subs.AsInt64(), bytes.AsInt64(), want, want*len(h.frame(ev)))
			}
		})
	}
}

// TestDeliverySpanNotSampled: an event whose publish was not sampled
// gets no recorded delivery span.
func TestDeliverySpanNotSampled(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := newBenchHub(t, 256)
	h.tracer = newTracer(tp)
	sh, _ := directSubscribers(t, h, "bench.t00000", 2)
	ev := chatEvent(t, "bench.t00000")
	ev.Seq = 1
	ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	deliverDirect(h, sh, ev)
	if n := len(rec.Ended()) + len(rec.Started()); n != 0 {
		t.Errorf("%d spans recorded for an event whose trace is not sampled", n)
	}
}

// benchTracer is a tracer that samples everything and batches the spans
// to an exporter that drops them: the cost of tracing on, short of the
// network.
func benchTracer(b *testing.B) *tracer {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return newTracer(tp)
}

// BenchmarkHubFanoutTraced is BenchmarkHubFanout's 100 subscribers with
// tracing on: one delivery span per event, a child of its publish span.
func BenchmarkHubFanoutTraced(b *testing.B) {
	const n = 100
	h := newBenchHub(b, 256)
	h.tracer = benchTracer(b)
	subs := benchSubscribers(b, h, "bench.t00000", n, nil)
	ev := chatEvent(b, "bench.t00000")
	ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
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
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/delivery")
}

// BenchmarkShardFanoutTraced is BenchmarkShardFanout's 100 direct streams
// with tracing on.
func BenchmarkShardFanoutTraced(b *testing.B) {
	const n = 100
	h := newBenchHub(b, 256)
	h.tracer = benchTracer(b)
	sh, _ := directSubscribers(b, h, "bench.t00000", n)
	ev := chatEvent(b, "bench.t00000")
	ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev.Seq = 1
	deliverDirect(h, sh, ev)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev.Seq = uint64(i) + 2
		deliverDirect(h, sh, ev)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/delivery")
}
