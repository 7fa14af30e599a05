package orchestrator_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dogear-dev/dogear/orchestrator"
)

// track is one version's /metrics, with the query API's metric names and buckets.
type track struct {
	seconds  *prometheus.HistogramVec
	requests *prometheus.CounterVec
	srv      *httptest.Server
}

var apiBuckets = prometheus.ExponentialBuckets(0.0001, 2, 16)

func newTrack(t *testing.T) *track {
	reg := prometheus.NewRegistry()
	tr := &track{
		seconds:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "dogear_api_request_seconds", Buckets: apiBuckets}, []string{"route"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dogear_api_requests_total"}, []string{"route", "status"}),
	}
	reg.MustRegister(tr.seconds, tr.requests)
	tr.srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(tr.srv.Close)
	return tr
}

// serve records n requests over two routes, with latencies around median and errors 500s.
func (tr *track) serve(rng *rand.Rand, n int, median float64, errors int) []float64 {
	var lat []float64
	for i := range n {
		route := []string{"trending", "book_stats"}[i%2]
		v := median * (0.7 + 0.6*rng.Float64())
		tr.seconds.WithLabelValues(route).Observe(v)
		status := 200
		if i < errors {
			status = 500
		}
		tr.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		lat = append(lat, v)
	}
	return lat
}

func (tr *track) metrics() *orchestrator.TrackMetrics {
	return &orchestrator.TrackMetrics{URL: tr.srv.URL, Histogram: "dogear_api_request_seconds", Requests: "dogear_api_requests_total"}
}

func TestTrackMetricsReadsIntervals(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(4, 4))
	tr := newTrack(t)
	tr.serve(rng, 50, 0.004, 5) // before the baseline: not in any interval
	m := tr.metrics()
	if _, _, _, err := m.Interval(ctx); !errors.Is(err, orchestrator.ErrNoRateYet) {
		t.Fatalf("first scrape: %v", err)
	}
	tr.requests.WithLabelValues("trending", "404").Add(7) // a refusal, not an error
	lat := tr.serve(rng, 300, 0.004, 12)
	h, errs, reqs, err := m.Interval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if errs != 12 || reqs != 307 {
		t.Errorf("errors %d of %d requests, want 12 of 307", errs, reqs)
	}
	bounds := append(slices.Clone(apiBuckets), math.Inf(1))
	want := make([]uint64, len(bounds))
	for _, v := range lat {
		k, _ := slices.BinarySearch(bounds, v) // a bucket holds values up to its bound
		want[k]++
	}
	if !slices.Equal(h.Bounds, bounds) || !slices.Equal(h.Counts, want) {
		t.Errorf("interval histogram\n%v %v\nwant\n%v %v", h.Bounds, h.Counts, bounds, want)
	}

	// The track restarts: its counters begin again, and the next interval counts from zero.
	restarted := newTrack(t)
	m.URL = restarted.srv.URL
	restarted.serve(rng, 20, 0.004, 1)
	if _, errs, reqs, err := m.Interval(ctx); err != nil || errs != 1 || reqs != 20 {
		t.Errorf("after a restart: %d errors of %d requests (%v), want 1 of 20", errs, reqs, err)
	}
	// A version that has served nothing yet exports neither family: no requests, not an error.
	fresh := newTrack(t).metrics()
	fresh.Interval(ctx)
	if h, errs, reqs, err := fresh.Interval(ctx); err != nil || errs != 0 || reqs != 0 || len(h.Counts) != 1 {
		t.Errorf("a version with no requests yet: %v, %d errors of %d requests (%v)", h, errs, reqs, err)
	}
}

// The analysis on histograms read from the tracks' metrics: a canary like the stable version is
// never rolled back, one 50% slower is at its third interval, and histograms with different
// buckets are refused rather than compared.
func TestAnalysisOnTrackMetrics(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 5))
	run := func(canaryMedian float64, intervals int) (*orchestrator.Analysis, int) {
		stable, canary := newTrack(t), newTrack(t)
		sm, cm := stable.metrics(), canary.metrics()
		sm.Interval(ctx)
		cm.Interval(ctx)
		a := orchestrator.NewAnalysis()
		for i := range intervals {
			stable.serve(rng, 900, 0.004, 1)
			canary.serve(rng, 100, canaryMedian, 0)
			sh, se, sr, err1 := sm.Interval(ctx)
			ch, ce, cr, err2 := cm.Interval(ctx)
			if err := errors.Join(err1, err2); err != nil {
				t.Fatal(err)
			}
			back, err := a.AddHistograms(orchestrator.HistogramInterval{Stable: sh, Canary: ch,
				StableErrors: se, StableRequests: sr, CanaryErrors: ce, CanaryRequests: cr})
			if err != nil {
				t.Fatal(err)
			}
			if back {
				return a, i + 1
			}
		}
		return a, 0
	}
	if a, at := run(0.004, 20); at != 0 {
		t.Errorf("a canary like the stable version was rolled back at interval %d:\n%s", at, a.Summary())
	}
	if a, at := run(0.006, 10); at != 3 || !strings.Contains(a.Summary(), "interval 3 failed: latency") {
		t.Errorf("a canary 50%% slower: rolled back at interval %d, want 3:\n%s", at, a.Summary())
	}
	_, err := orchestrator.NewAnalysis().AddHistograms(orchestrator.HistogramInterval{
		Stable: orchestrator.LatencyHistogram{Bounds: []float64{0.1, math.Inf(1)}, Counts: []uint64{5, 0}},
		Canary: orchestrator.LatencyHistogram{Bounds: []float64{0.2, math.Inf(1)}, Counts: []uint64{5, 0}}})
	if err == nil || !strings.Contains(err.Error(), "different buckets") {
		t.Errorf("histograms with different buckets: %v", err)
	}
}
