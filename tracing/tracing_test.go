package tracing_test

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dogear-dev/dogear/tracing"
)

func TestStartModes(t *testing.T) {
	for _, mode := range []string{"", "off"} {
		if tp, err := tracing.Start(context.Background(), mode, "dogear"); tp != nil || err != nil {
			t.Errorf("mode %q: %v %v, want tracing off", mode, tp, err)
		}
	}
	if _, err := tracing.Start(context.Background(), "jaeger", "dogear"); err == nil || !strings.Contains(err.Error(), "want off or otlp") {
		t.Errorf("mode jaeger: %v", err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1") // nothing listens: spans are dropped, not fatal
	tp, err := tracing.Start(context.Background(), "otlp", "dogear")
	if err != nil || tp == nil {
		t.Fatalf("otlp: %v", err)
	}
	tp.Shutdown(context.Background())
}

// Only a sampled span's context is carried, and it comes back out as the same trace.
func TestHeadersRoundTrip(t *testing.T) {
	if h := tracing.Headers(context.Background()); h != nil {
		t.Errorf("no span: headers %v", h)
	}
	unsampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	ctx, span := unsampled.Tracer("t").Start(context.Background(), "x")
	if h := tracing.Headers(ctx); h != nil {
		t.Errorf("unsampled span: headers %v", h)
	}
	span.End()
	tp := sdktrace.NewTracerProvider()
	ctx, span = tp.Tracer("t").Start(context.Background(), "x")
	defer span.End()
	h := tracing.Headers(ctx)
	if !strings.HasPrefix(h["traceparent"], "00-"+span.SpanContext().TraceID().String()) {
		t.Fatalf("headers %v", h)
	}
	_, child := tp.Tracer("t").Start(tracing.Context(context.Background(), h), "y")
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Errorf("the trace did not survive the headers")
	}
	child.End()
}
