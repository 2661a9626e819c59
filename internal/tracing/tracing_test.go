package tracing_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/heraldhq/herald/internal/tracing"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		enabled  bool
		protocol string
		sampler  string // the sampler's Description
		err      string // a part of the error
	}{
		{name: "nothing set: off", env: nil},
		{name: "none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "otlp: http/protobuf by default", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			enabled: true, protocol: "http/protobuf", sampler: "ParentBased{root:AlwaysOnSampler"},
		{name: "grpc", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			enabled: true, protocol: "grpc", sampler: "ParentBased{root:AlwaysOnSampler"},
		{name: "the traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			enabled: true, protocol: "http/protobuf", sampler: "ParentBased"},
		{name: "disabled SDK", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}},
		{name: "ratio", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
			enabled: true, protocol: "http/protobuf", sampler: "ParentBased{root:TraceIDRatioBased{0.25}"},
		{name: "always_off", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "always_off"},
			enabled: true, protocol: "http/protobuf", sampler: "AlwaysOffSampler"},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "http/json", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "unknown sampler", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "sometimes"}, err: "OTEL_TRACES_SAMPLER="},
		{name: "ratio out of range", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "bad boolean", env: map[string]string{"OTEL_SDK_DISABLED": "maybe"}, err: "OTEL_SDK_DISABLED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tracing.ConfigFromEnv(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Enabled != tc.enabled || c.Protocol != tc.protocol {
				t.Fatalf("got enabled %v, protocol %q; want %v, %q", c.Enabled, c.Protocol, tc.enabled, tc.protocol)
			}
			if tc.enabled && !strings.HasPrefix(c.Sampler.Description(), tc.sampler) {
				t.Errorf("sampler %s, want %s", c.Sampler.Description(), tc.sampler)
			}
		})
	}
}

func TestSetupOff(t *testing.T) {
	tp, err := tracing.Setup(context.Background(), tracing.Config{}, "v0", slog.New(slog.DiscardHandler))
	if err != nil || tp != nil {
		t.Fatalf("Setup with tracing off = %v, %v; want nil, nil", tp, err)
	}
}

// TestLogHandler: a record logged with a span's context carries its ids;
// one without does not.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(tracing.LogHandler(slog.NewTextHandler(&buf, nil))).With("node", "a")
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	log.InfoContext(ctx, "inside")
	span.End()
	log.Info("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	sc := span.SpanContext()
	if want := "trace_id=" + sc.TraceID().String() + " span_id=" + sc.SpanID().String(); !strings.Contains(lines[0], want) || !strings.Contains(lines[0], "node=a") {
		t.Errorf("logged %q, want it to carry %q", lines[0], want)
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("logged %q without a span, with a trace id", lines[1])
	}
}
