package bridge

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/heraldhq/herald/internal/broker"
)

// Tracing (Config.TracerProvider). A publish is one span, "herald.publish",
// a child of the trace context the publisher sent (W3C traceparent and
// tracestate, in gRPC metadata or REST headers), with a child span for
// each step: "herald.validate" and "herald.append" (the broker's Publish).
// The publish span's context travels with the event through the broker
// (broker.Event.TraceParent), and every node that delivers the event makes
// one span for it, "herald.deliver", a child of the publish span: one per
// event and node, never one per subscriber. It ends when the hub and every
// shard the event went to have handed it on, and says how many
// subscribers got it and how many bytes of frames that was.
//
// With tracing off the server's tracer is nil, and the publish and
// delivery paths cost one nil check each: no span, no context, no
// allocation.

// propagator reads and writes W3C trace context (traceparent, tracestate).
var propagator = propagation.TraceContext{}

// Attributes of the server's spans.
const (
	attrTopic       = attribute.Key("messaging.destination.name")
	attrEventID     = attribute.Key("messaging.message.id")
	attrSystem      = attribute.Key("messaging.system")
	attrTransport   = attribute.Key("herald.transport")
	attrSubscribers = attribute.Key("herald.subscribers")
	attrBytes       = attribute.Key("herald.bytes")
	attrDuplicate   = attribute.Key("herald.duplicate")
)

// tracer makes the server's spans. A nil *tracer is tracing off.
type tracer struct {
	t trace.Tracer
}

func newTracer(tp trace.TracerProvider) *tracer {
	if tp == nil {
		return nil
	}
	return &tracer{t: tp.Tracer("github.com/heraldhq/herald/bridge")}
}

// fromHeaders returns ctx with the trace context of a REST request's
// headers, for the publish it makes. (grpc-gateway passes only some
// headers on as metadata; the request's context reaches the service.)
func (t *tracer) fromHeaders(ctx context.Context, h propagation.HeaderCarrier) context.Context {
	return propagator.Extract(ctx, h)
}

// startPublish starts the span of one publish (or deletion), a child of
// the trace context in ctx's gRPC metadata, or else of the one already in
// ctx (a REST request's).
func (t *tracer) startPublish(ctx context.Context, name, topic string, tr transport) (context.Context, trace.Span) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = propagator.Extract(ctx, mdCarrier(md))
	}
	return t.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrSystem.String("herald"), attrTopic.String(topic), attrTransport.String(tr.String())))
}

// step starts the span of one step of a publish.
func (t *tracer) step(ctx context.Context, name string) trace.Span {
	_, span := t.t.Start(ctx, name)
	return span
}

// endPublish ends a publish span with its outcome.
func endPublish(span trace.Span, id string, duplicate bool, err error) {
	if err != nil {
		span.SetStatus(otelcodes.Error, Code(err).String())
		span.RecordError(err)
	} else {
		span.SetAttributes(attrEventID.String(id), attrDuplicate.Bool(duplicate))
	}
	span.End()
}

// endStep ends the span of a step with its outcome.
func endStep(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(otelcodes.Error, Code(err).String())
	}
	span.End()
}

// stamp puts the trace context of ctx's span on ev, for the nodes that
// deliver it.
func stamp(ctx context.Context, ev *broker.Event) {
	propagator.Inject(ctx, eventCarrier{ev})
}

// startDelivery starts the delivery span of ev on this node, a child of
// its publish span when the event carries one. It returns nil when the
// span is not recorded (not sampled): nothing is counted then.
func (t *tracer) startDelivery(ev *broker.Event, epoch string) *deliveryTrace {
	ctx := context.Background()
	if ev.TraceParent != "" {
		ctx = propagator.Extract(ctx, eventCarrier{ev})
	}
	_, span := t.t.Start(ctx, "herald.deliver", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attrSystem.String("herald"), attrTopic.String(ev.Topic),
			attrEventID.String(broker.EventID{Epoch: epoch, Seq: ev.Seq}.String())))
	if !span.IsRecording() {
		span.End()
		return nil
	}
	d := &deliveryTrace{span: span}
	d.pending.Store(1) // the hub's own part
	return d
}

// A deliveryTrace is the delivery span of one event on this node. The
// hub and each shard the event is offered to add what they handed on and
// call done once; the last one ends the span.
type deliveryTrace struct {
	span        trace.Span
	subscribers atomic.Int64
	bytes       atomic.Int64
	pending     atomic.Int32
}

// add counts subscribers handed the event and the bytes of their frames.
func (d *deliveryTrace) add(subscribers, bytes int) {
	d.subscribers.Add(int64(subscribers))
	d.bytes.Add(int64(bytes))
}

func (d *deliveryTrace) done() {
	if d.pending.Add(-1) == 0 {
		d.span.SetAttributes(attrSubscribers.Int64(d.subscribers.Load()), attrBytes.Int64(d.bytes.Load()))
		d.span.End()
	}
}

// mdCarrier reads trace context from gRPC metadata.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// eventCarrier reads and writes an event's trace context.
type eventCarrier struct{ ev *broker.Event }

func (c eventCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.ev.TraceParent
	case "tracestate":
		return c.ev.TraceState
	}
	return ""
}

func (c eventCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.ev.TraceParent = value
	case "tracestate":
		c.ev.TraceState = value
	}
}

func (c eventCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }
