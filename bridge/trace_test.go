package bridge_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/poll"
)

// TestPublishSpans: every way of publishing takes the publisher's trace
// context (gRPC metadata for Publish, PublishStream and DeleteTopicState;
// headers for REST) as the parent of its span, with validate and append
// steps beneath it, and the event's delivery on the node is a child of
// the publish.
func TestPublishSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s := heraldtest.Start(t, heraldtest.Options{Config: bridge.Config{TracerProvider: tp}})
	client := heraldv1.NewPublisherServiceClient(s.Conn)
	payload, _ := anypb.New(&emptypb.Empty{})
	const parent = "00f067aa0ba902b7"
	traceparent := func(trace string) string { return "00-" + trace + "-" + parent + "-01" }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	withTrace := func(trace string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent(trace))
	}
	// A node reads events back from its broker, and so delivers them,
	// once it has a subscriber: any subscriber, of any topic.
	sub, err := heraldv1.NewSubscriberServiceClient(s.Conn).Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"trace.elsewhere"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Header(); err != nil { // the headers come once it is subscribed
		t.Fatal(err)
	}

	const (
		unary  = "0000000000000000000000000000000a"
		stream = "0000000000000000000000000000000b"
		del    = "0000000000000000000000000000000c"
		rest   = "0000000000000000000000000000000d"
	)
	if _, err := client.Publish(withTrace(unary), &heraldv1.PublishRequest{Topic: "trace.unary", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	ps, err := client.PublishStream(withTrace(stream))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ps.Send(&heraldv1.PublishRequest{Topic: "trace.stream", Payload: payload}); err != nil {
			t.Fatal(err)
		}
		if resp, err := ps.Recv(); err != nil || resp.GetError() != nil {
			t.Fatalf("PublishStream: %v, %v", resp.GetError(), err)
		}
	}
	_ = ps.CloseSend()
	if _, err := client.DeleteTopicState(withTrace(del), &heraldv1.DeleteTopicStateRequest{Topic: "trace.del"}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, s.URL+"/v1/topics/trace.rest/state", nil)
	req.Header.Set("traceparent", traceparent(rest))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /v1/topics/trace.rest/state: %s", resp.Status)
	}

	for _, tc := range []struct {
		trace, root string
		events      int
		steps       []string
	}{
		{unary, "herald.publish", 1, []string{"herald.validate", "herald.append"}},
		{stream, "herald.publish", 2, []string{"herald.validate", "herald.append"}},
		{del, "herald.delete_state", 1, []string{"herald.append"}},
		{rest, "herald.delete_state", 1, []string{"herald.append"}},
	} {
		var spans []sdktrace.ReadOnlySpan
		poll.Until(t, 10*time.Second, "the delivery spans of "+tc.root, func() bool {
			spans = spans[:0]
			deliveries := 0
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID().String() == tc.trace {
					spans = append(spans, s)
					if s.Name() == "herald.deliver" {
						deliveries++
					}
				}
			}
			return deliveries == tc.events
		})
		roots := map[string]bool{}
		for _, s := range spans {
			if s.Name() == tc.root {
				if s.Parent().SpanID().String() != parent || !s.Parent().IsRemote() {
					t.Errorf("trace %s: %s has parent %s, want the publisher's %s", tc.trace, s.Name(), s.Parent().SpanID(), parent)
				}
				roots[s.SpanContext().SpanID().String()] = true
				if id := attribute.NewSet(s.Attributes()...); !id.HasValue("messaging.message.id") {
					t.Errorf("trace %s: %s has no event id", tc.trace, s.Name())
				}
			}
		}
		if len(roots) != tc.events {
			t.Fatalf("trace %s: %d %s spans, want %d", tc.trace, len(roots), tc.root, tc.events)
		}
		steps := map[string]int{}
		for _, s := range spans {
			if s.Name() == tc.root {
				continue
			}
			if !roots[s.Parent().SpanID().String()] {
				t.Errorf("trace %s: %s is not a child of a %s span", tc.trace, s.Name(), tc.root)
			}
			steps[s.Name()]++
		}
		for _, name := range tc.steps {
			if steps[name] != tc.events {
				t.Errorf("trace %s: %d %s spans, want %d", tc.trace, steps[name], name, tc.events)
			}
		}
	}
}

// TestPublishSpansMalformedTraceparent: a traceparent that is not one is
// ignored: the publish succeeds and starts a trace of its own.
func TestPublishSpansMalformedTraceparent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s := heraldtest.Start(t, heraldtest.Options{Config: bridge.Config{TracerProvider: tp}})
	payload, _ := anypb.New(&emptypb.Empty{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, bad := range []string{"garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"} {
		md := metadata.AppendToOutgoingContext(ctx, "traceparent", bad, "tracestate", "=,=")
		if _, err := heraldv1.NewPublisherServiceClient(s.Conn).Publish(md, &heraldv1.PublishRequest{Topic: "trace.bad", Payload: payload}); err != nil {
			t.Fatalf("Publish with traceparent %q: %v", bad, err)
		}
	}
	for _, sp := range rec.Ended() {
		if sp.Name() == "herald.publish" && sp.Parent().IsValid() {
			t.Errorf("a publish with a malformed traceparent has parent %s", sp.Parent().SpanID())
		}
	}
}
