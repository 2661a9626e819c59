package clustertest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/poll"
	"github.com/heraldhq/herald/internal/tracing/otlptest"
)

// TestTracingAcrossNodes: two `herald serve` processes on one JetStream,
// exporting spans over each OTLP protocol to a real receiver. A publish on
// node a, over gRPC and over REST, with the publisher's traceparent, and
// its delivery to a subscriber of node b appear in one trace: the
// publisher's span is the parent of a's publish span, which is the parent
// of b's delivery span.
func TestTracingAcrossNodes(t *testing.T) {
	js := jstest.Start(t)
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(strings.ReplaceAll(protocol, "/", "-"), func(t *testing.T) {
			recv := otlptest.Start(t, protocol)
			env := func(service string) []string {
				return []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
					"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint, "OTEL_SERVICE_NAME=" + service,
					"OTEL_BSP_SCHEDULE_DELAY=50"} // ms: export promptly
			}
			nats := []string{"--broker", "nats", "--nats-url", js.URL()}
			a := startNodeEnv(t, "a", env("herald-a"), nats...)
			b := startNodeEnv(t, "b", env("herald-b"), nats...)

			for i, via := range []string{"grpc", "rest"} {
				topic := fmt.Sprintf("trace.%s.%s", strings.ReplaceAll(protocol, "/", "-"), via)
				traceID, parentID := fmt.Sprintf("%032x", 0xa11ce0+i), "00f067aa0ba902b7"
				traceparent := "00-" + traceID + "-" + parentID + "-01"
				frames := subscribeSSE(t, b.url, topic)
				publishTraced(t, a, via, topic, traceparent)
				if data := <-frames; !strings.Contains(data, `"text":"traced"`) {
					t.Fatalf("node b delivered %q", data)
				}

				var publish, deliver otlptest.Span
				var steps []otlptest.Span
				poll.Until(t, 20*time.Second, "the publish span of a and the delivery span of b", func() bool {
					steps = steps[:0]
					for _, s := range recv.Spans() {
						if s.TraceID() != traceID {
							continue
						}
						switch {
						case s.Service == "herald-a" && s.Name == "herald.publish":
							publish = s
						case s.Service == "herald-b" && s.Name == "herald.deliver":
							deliver = s
						case s.Service == "herald-a" && (s.Name == "herald.validate" || s.Name == "herald.append"):
							steps = append(steps, s)
						}
					}
					return publish.Span != nil && deliver.Span != nil && len(steps) == 2
				})
				if publish.ParentID() != parentID {
					t.Errorf("%s: publish span's parent is %q, want the publisher's span %s", via, publish.ParentID(), parentID)
				}
				if deliver.ParentID() != publish.SpanID() {
					t.Errorf("%s: delivery span on b has parent %q, want the publish span %s of a", via, deliver.ParentID(), publish.SpanID())
				}
				for _, s := range steps {
					if s.ParentID() != publish.SpanID() {
						t.Errorf("%s: %s has parent %q, want the publish span %s", via, s.Name, s.ParentID(), publish.SpanID())
					}
				}
				if got := publish.Attr("messaging.destination.name").GetStringValue(); got != topic {
					t.Errorf("%s: publish span's topic is %q, want %q", via, got, topic)
				}
				if got := publish.Attr("herald.transport").GetStringValue(); got != via {
					t.Errorf("publish span's transport is %q, want %q", got, via)
				}
				if n := deliver.Attr("herald.subscribers").GetIntValue(); n != 1 {
					t.Errorf("%s: delivery span on b counts %d subscribers, want 1", via, n)
				}
				if n := deliver.Attr("herald.bytes").GetIntValue(); n < int64(len(`data: {"text":"traced"}`)) {
					t.Errorf("%s: delivery span on b counts %d bytes", via, n)
				}
				if id := deliver.Attr("messaging.message.id").GetStringValue(); id == "" || id != publish.Attr("messaging.message.id").GetStringValue() {
					t.Errorf("%s: delivery span's event id %q, publish span's %q", via, id, publish.Attr("messaging.message.id").GetStringValue())
				}
			}
			for _, n := range []*node{a, b} {
				if bad := warnings(n); len(bad) > 0 {
					t.Errorf("node %s logged warnings or errors:\n%s", n.name, strings.Join(bad, "\n"))
				}
			}
		})
	}
}

// TestTracingOff: with OTEL_TRACES_EXPORTER unset (and an endpoint set,
// which alone turns nothing on), a node exports nothing, not even when
// it stops and would flush, and logs no warning or error.
func TestTracingOff(t *testing.T) {
	js := jstest.Start(t)
	recv := otlptest.Start(t, "http/protobuf")
	n := startNodeEnv(t, "off", []string{"OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.Endpoint},
		"--broker", "nats", "--nats-url", js.URL())
	frames := subscribeSSE(t, n.url, "trace.off")
	publishTraced(t, n, "grpc", "trace.off", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	<-frames
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Wait(); err != nil {
		if _, ok := err.(*exec.ExitError); ok {
			t.Fatalf("node exited with %v:\n%s", err, n.logs)
		}
	}
	if r := recv.Requests(); r != 0 {
		t.Errorf("a node with tracing off sent %d export requests", r)
	}
	if bad := warnings(n); len(bad) > 0 {
		t.Errorf("a node with tracing off logged warnings or errors:\n%s", strings.Join(bad, "\n"))
	}
}

// warnings returns the lines n logged at WARN or ERROR, but for --dev's
// warning.
func warnings(n *node) []string {
	var bad []string
	for _, line := range strings.Split(n.logs.String(), "\n") {
		if (strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`)) &&
			!strings.Contains(line, `"msg":"DEVELOPMENT MODE`) {
			bad = append(bad, line)
		}
	}
	return bad
}

// subscribeSSE subscribes to topic on the node at url and returns the
// data of the events it receives. The node subscribes before it answers,
// so an event published after subscribeSSE returns is delivered.
func subscribeSSE(t *testing.T, url, topic string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/events?topic="+topic, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events?topic=%s: %s", topic, resp.Status)
	}
	frames := make(chan string, 16)
	go func() {
		defer resp.Body.Close()
		defer close(frames)
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				frames <- data
			}
		}
	}()
	return frames
}

// publishTraced publishes a chat message to topic on n, over gRPC or
// REST, with traceparent as a publisher that traces sends it.
func publishTraced(t *testing.T, n *node, via, topic, traceparent string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch via {
	case "grpc":
		payload, _ := anypb.New(&chatv1.ChatMessage{Room: topic, Text: "traced"})
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent)
		if _, err := n.client.Publish(ctx, &heraldv1.PublishRequest{Topic: topic, Payload: payload}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	case "rest":
		body := `{"payload":{"@type":"type.googleapis.com/chat.v1.ChatMessage","room":"` + topic + `","text":"traced"}}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.url+"/v1/topics/"+topic+"/events", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", traceparent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /v1/topics/%s/events: %s", topic, resp.Status)
		}
	}
}
