package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dogear-dev/dogear/server"
)

// One trace runs from POST /v1/events on an ingest process, through the Kafka records (the
// context in their headers), to the fold in a separate process role.
func TestTraceCrossesRolesThroughKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3)) // dogear creates its topic with 3 replicas
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(t.Context())

	role := func(name string, state string) *server.Server {
		cfg := server.DefaultConfig()
		cfg.DataDir, cfg.Addr, cfg.Partitions = t.TempDir(), "127.0.0.1:0", 2
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.Roles, cfg.Log, cfg.State = []string{name}, "kafka://"+strings.Join(cluster.ListenAddrs(), ",")+"/events", state
		cfg.Tracer = tp
		srv, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Shutdown(t.Context()) })
		return srv
	}
	ingest := role("ingest", "")
	process := role("process", "partitioned://"+t.TempDir())

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	body := `{"id":"e1","type":"finish","reader":"ann","book":"b1","time":"2026-11-20T10:00:00Z"}
{"id":"e2","type":"finish","reader":"bob","book":"b2","time":"2026-11-20T10:00:00Z"}`
	req, _ := http.NewRequest("POST", "http://"+ingest.Addr()+"/v1/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01") // the device's own span
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /v1/events: %d", resp.StatusCode)
	}
	until(t, "both events folded", func() bool { return process.Processor().TotalLag() == 0 && len(named(spans, "dogear.fold")) == 2 })

	posts := named(spans, "POST /v1/events")
	if len(posts) != 1 {
		var names []string
		for _, s := range spans.GetSpans() {
			names = append(names, s.Name)
		}
		t.Fatalf("want one POST /v1/events server span, got spans %v", names)
	}
	post := posts[0]
	if post.SpanContext.TraceID().String() != traceID || post.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("the ingest span does not continue the caller's trace: trace %s parent %s", post.SpanContext.TraceID(), post.Parent.SpanID())
	}
	for _, fold := range named(spans, "dogear.fold") {
		if fold.SpanContext.TraceID().String() != traceID || fold.Parent.SpanID() != post.SpanContext.SpanID() || !fold.Parent.IsRemote() {
			t.Errorf("fold span: trace %s, parent %s (remote %v), want trace %s under the ingest span %s",
				fold.SpanContext.TraceID(), fold.Parent.SpanID(), fold.Parent.IsRemote(), traceID, post.SpanContext.SpanID())
		}
	}
}

func named(exp *tracetest.InMemoryExporter, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Training rounds and recommendation requests have spans of their own, with what was trained
// and served.
func TestTrainingAndRecommendationSpans(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(t.Context())
	srv, url := start(t, func(c *server.Config) { c.Tracer = tp })
	clustered(t, srv, url)
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/models/train", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("train: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	recsOf(t, url, "r001")

	attrs := func(s tracetest.SpanStub) map[string]string {
		m := map[string]string{}
		for _, a := range s.Attributes {
			m[string(a.Key)] = a.Value.String()
		}
		return m
	}
	train := named(spans, "dogear.train")
	if len(train) != 1 || attrs(train[0])["dogear.model.version"] != "1" || attrs(train[0])["dogear.model.promoted"] != "true" {
		t.Fatalf("train spans %+v", train)
	}
	if parent := named(spans, "POST /v1/models/train"); len(parent) != 1 || train[0].Parent.SpanID() != parent[0].SpanContext.SpanID() {
		t.Errorf("the training span is not under its request's span")
	}
	rec := named(spans, "dogear.recommend")
	if len(rec) != 1 || attrs(rec[0])["dogear.model.version"] != "1" || attrs(rec[0])["dogear.items"] != "10" {
		t.Fatalf("recommend spans %+v", rec)
	}
}
