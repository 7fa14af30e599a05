package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/orchestrator"
)

func TestCounterRateFromMetrics(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		// Two label sets of the counter; each scrape 1,000 more events in all.
		fmt.Fprintf(w, "# TYPE dogear_ingest_events_total counter\ndogear_ingest_events_total{result=\"new\"} %d\ndogear_ingest_events_total{result=\"duplicate\"} %d\n", 900*n, 100*n)
	}))
	defer srv.Close()
	c := &orchestrator.CounterRate{URL: srv.URL, Metric: "dogear_ingest_events_total"}
	if _, err := c.Load(context.Background()); !errors.Is(err, orchestrator.ErrNoRateYet) {
		t.Fatalf("first scrape: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	rate, err := c.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 1,000 events over about 0.1 s.
	if rate < 5000 || rate > 10000 {
		t.Fatalf("rate %v/s, want about 10,000/s less scheduling slack", rate)
	}
	missing := &orchestrator.CounterRate{URL: srv.URL, Metric: "dogear_nothing_total"}
	if _, err := missing.Load(context.Background()); err == nil {
		t.Fatal("a missing metric was not reported")
	}
}
