// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables. Tracing is off unless OTEL_TRACES_EXPORTER names
// otlp; then spans are exported over OTLP, by gRPC or HTTP/protobuf
// (OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL), to
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, sampled
// as OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG say, under the service
// name OTEL_SERVICE_NAME (default "herald"). The exporters read the other
// OTEL_EXPORTER_OTLP_* variables (headers, timeout, certificates,
// compression) themselves, and the batch span processor OTEL_BSP_*.
//
// A value that Herald cannot honour is an error, so that a misspelt
// setting stops the server at start instead of silently tracing nothing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// DefaultServiceName is the service name spans carry when
// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) is not
// set.
const DefaultServiceName = "herald"

// Config is what the environment asks for.
type Config struct {
	// Enabled is true when spans are exported (OTEL_TRACES_EXPORTER=otlp
	// and OTEL_SDK_DISABLED is not true).
	Enabled bool
	// Protocol is "grpc" or "http/protobuf".
	Protocol string
	// Sampler is the sampler OTEL_TRACES_SAMPLER names (default: the
	// parent's decision, and every root span sampled).
	Sampler sdktrace.Sampler
}

// ConfigFromEnv reads the variables that decide whether and how spans are
// exported. getenv is os.Getenv outside tests.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	if v := strings.TrimSpace(getenv("OTEL_SDK_DISABLED")); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("OTEL_SDK_DISABLED=%q: want true or false", v)
		}
		if disabled {
			return c, nil
		}
	}
	for e := range strings.SplitSeq(getenv("OTEL_TRACES_EXPORTER"), ",") {
		switch e = strings.ToLower(strings.TrimSpace(e)); e {
		case "", "none":
		case "otlp":
			c.Enabled = true
		default:
			return c, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: herald exports traces with otlp or not at all (none)", getenv("OTEL_TRACES_EXPORTER"))
		}
	}
	if !c.Enabled {
		return c, nil
	}
	name, proto := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		name, proto = "OTEL_EXPORTER_OTLP_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto = strings.TrimSpace(proto); proto {
	case "":
		c.Protocol = "http/protobuf" // the specification's default
	case "grpc", "http/protobuf":
		c.Protocol = proto
	default:
		return c, fmt.Errorf("%s=%q: herald speaks OTLP over grpc or http/protobuf", name, proto)
	}
	var err error
	c.Sampler, err = samplerFromEnv(getenv)
	return c, err
}

// samplerFromEnv parses OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
// The SDK would do it too, but it reports a bad value through the global
// error handler and goes on with another sampler.
func samplerFromEnv(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.AlwaysSample(), nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1 for OTEL_TRACES_SAMPLER=%s", arg, name)
		}
		return sdktrace.TraceIDRatioBased(r), nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		s, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(s), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
}

// Setup starts exporting spans as the environment says. It returns nil
// when tracing is off: the server then makes no spans at all. Otherwise
// the provider's Shutdown flushes the spans not yet exported; call it
// when the server has stopped. Errors of the export itself (a collector
// that cannot be reached) are logged to log, at most as often as the
// exporter retries.
func Setup(ctx context.Context, c Config, version string, log *slog.Logger) (*sdktrace.TracerProvider, error) {
	if !c.Enabled {
		return nil, nil
	}
	var client otlptrace.Client
	if c.Protocol == "grpc" {
		client = otlptracegrpc.NewClient()
	} else {
		client = otlptracehttp.NewClient()
	}
	// New does not connect: a collector that is not up yet is no reason
	// not to start.
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// Later options override earlier ones: the environment's service
	// name wins over the default.
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", DefaultServiceName),
			attribute.String("service.version", version),
		),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource from OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME: %w", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: exporting spans failed", "err", err)
	}))
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(c.Sampler),
	), nil
}

// FromEnv is ConfigFromEnv of the process's environment, then Setup.
func FromEnv(ctx context.Context, version string, log *slog.Logger) (*sdktrace.TracerProvider, error) {
	c, err := ConfigFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	return Setup(ctx, c, version, log)
}
