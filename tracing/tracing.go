// Package tracing follows one request across dogear's roles with OpenTelemetry: an OTLP exporter
// when asked for, and the W3C trace context carried in Kafka record headers. Off by default.
package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Name is the instrumentation scope of dogear's own spans.
const Name = "github.com/dogear-dev/dogear"

// Propagator is how trace context crosses processes: W3C traceparent and tracestate, in HTTP
// headers and in Kafka record headers alike.
var Propagator = propagation.TraceContext{}

// Start returns a tracer provider for mode: nil for "" or "off" (tracing off: no spans, no
// record headers), or one exporting over OTLP/HTTP for "otlp", configured by the SDK's standard
// variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER and _ARG).
// The provider's Shutdown flushes what is buffered.
func Start(ctx context.Context, mode, service string) (*sdktrace.TracerProvider, error) {
	switch mode {
	case "", "off":
		return nil, nil
	case "otlp":
	default:
		return nil, fmt.Errorf("tracing %q: want off or otlp", mode)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// The service name set here yields to OTEL_SERVICE_NAME (the operator sets dogear-ROLE).
	res, err := resource.Merge(resource.NewSchemaless(semconv.ServiceName(service)), resource.Environment())
	if err != nil {
		return nil, err
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Tracer is tp's tracer for dogear's spans; a no-op one when tp is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return noop.NewTracerProvider().Tracer(Name)
	}
	return tp.Tracer(Name)
}

// Headers returns the trace context of ctx as header pairs, or nil when ctx holds no sampled
// span, so untraced records carry nothing extra.
func Headers(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return nil
	}
	c := propagation.MapCarrier{}
	Propagator.Inject(ctx, c)
	return c
}

// Context returns ctx with the remote span context that headers carry, as the parent of spans
// started from it.
func Context(ctx context.Context, headers map[string]string) context.Context {
	return Propagator.Extract(ctx, propagation.MapCarrier(headers))
}
