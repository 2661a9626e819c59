package bridge_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// benchStream is an in-memory PublishStream: Recv hands out the same
// request n times, then io.EOF; Send counts the answers.
type benchStream struct {
	grpc.ServerStream // nil: only Context, Recv and Send are used
	ctx               context.Context
	req               *heraldv1.PublishRequest
	n                 int
	errs              int
}

func (s *benchStream) Context() context.Context { return s.ctx }

func (s *benchStream) Recv() (*heraldv1.PublishRequest, error) {
	if s.n == 0 {
		return nil, io.EOF
	}
	s.n--
	return s.req, nil
}

func (s *benchStream) Send(resp *heraldv1.PublishResponse) error {
	if resp.GetError() != nil {
		s.errs++
	}
	return nil
}

// benchChatRequest is a request as herald-bench sends it in scenario 5: a
// chat.v1.ChatMessage whose JSON is about 256 bytes, no type, no
// attributes, no idempotency key.
func benchChatRequest(tb testing.TB, topic string, stamped bool) *heraldv1.PublishRequest {
	tb.Helper()
	msg := &chatv1.ChatMessage{Room: topic, MessageId: "0000000017.1767225600123456789", Author: "herald-bench",
		Text: strings.Repeat("x", 256-len(`{"room":"bench.t00000","messageId":"0000000017.1767225600123456789","author":"herald-bench","text":""}`))}
	if stamped {
		msg.SentAt = timestamppb.New(time.Unix(1767225600, 123456789))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		tb.Fatal(err)
	}
	return &heraldv1.PublishRequest{Topic: topic, Payload: &anypb.Any{TypeUrl: "type.googleapis.com/chat.v1.ChatMessage", Value: b}}
}

// startBenchServer starts a server and publishes req once over gRPC, so
// that it is serving (a cleanup racing Serve's start fails the run) and
// the publish path is warm.
func startBenchServer(b *testing.B, req *heraldv1.PublishRequest) *heraldtest.Server {
	b.Helper()
	return startBenchServerConfig(b, req, bridge.Config{})
}

// startBenchServerConfig is startBenchServer with cfg.
func startBenchServerConfig(b *testing.B, req *heraldv1.PublishRequest, cfg bridge.Config) *heraldtest.Server {
	b.Helper()
	srv := heraldtest.Start(b, heraldtest.Options{Config: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := heraldv1.NewPublisherServiceClient(srv.Conn).Publish(ctx, req); err != nil {
		b.Fatal(err)
	}
	return srv
}

// BenchmarkPublishStream is scenario 5's server side without gRPC: one
// PublishStream into the memory broker of a running server (its hub
// subscribed, no subscriber on the topic), the compiled-in schema
// registry validating. One op is one request answered.
func BenchmarkPublishStream(b *testing.B) {
	for _, bc := range []struct {
		name    string
		stamped bool
	}{{"chat", false}, {"chat+timestamp", true}} {
		b.Run(bc.name, func(b *testing.B) {
			st := &benchStream{ctx: context.Background(), req: benchChatRequest(b, "bench.t00000", bc.stamped)}
			pub := startBenchServer(b, st.req).Publisher()
			b.ReportAllocs()
			b.ResetTimer()
			st.n = b.N
			if err := pub.PublishStream(st); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if st.errs > 0 {
				b.Fatalf("%d publishes refused", st.errs)
			}
		})
	}
}

// BenchmarkPublishStreamTraced is BenchmarkPublishStream's "chat" with
// tracing on: every publish sampled, its spans (publish, validate, append,
// and the hub's delivery span) batched to an exporter that drops them.
func BenchmarkPublishStreamTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	st := &benchStream{ctx: context.Background(), req: benchChatRequest(b, "bench.t00000", false)}
	pub := startBenchServerConfig(b, st.req, bridge.Config{TracerProvider: tp}).Publisher()
	b.ReportAllocs()
	b.ResetTimer()
	st.n = b.N
	if err := pub.PublishStream(st); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if st.errs > 0 {
		b.Fatalf("%d publishes refused", st.errs)
	}
}

// BenchmarkPublishUnary is the same publish through the unary Publish.
func BenchmarkPublishUnary(b *testing.B) {
	req := benchChatRequest(b, "bench.t00000", false)
	pub := startBenchServer(b, req).Publisher()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pub.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishREST is the REST publish's server side without the
// network: POST /v1/topics/{topic}/events through the server's HTTP
// handler (the front door, the gateway's JSON decode, the publish) into
// the memory broker, no subscriber. One op is one request answered.
func BenchmarkPublishREST(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"chat", `{"payload":{"@type":"type.googleapis.com/chat.v1.ChatMessage","room":"bench.t00000","messageId":"0000000001.1767225600123456789","author":"herald-bench","text":"` + strings.Repeat("x", 160) + `"}}`},
		{"struct", `{"payload":{"@type":"type.googleapis.com/google.protobuf.Struct","value":{"room":"bench.t00000","messageId":"0000000001.1767225600123456789","author":"herald-bench","text":"` + strings.Repeat("x", 160) + `"}}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := startBenchServer(b, benchChatRequest(b, "bench.t00000", false)).Handler()
			body := strings.NewReader(bc.body)
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(bc.body)
				req := httptest.NewRequest(http.MethodPost, "/v1/topics/bench.t00000/events", body)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
