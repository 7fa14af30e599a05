package orchestrator

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
)

// LatencyHistogram is one track's request latencies over an interval, as a Prometheus histogram
// keeps them: per bucket (ascending upper bounds, the last +Inf), how many requests fell in it.
type LatencyHistogram struct {
	Bounds []float64
	Counts []uint64
}

// latencyBins are the stable (0) and canary (1) tracks' latencies over the same ordered bins;
// bin k holds values in (lower[k], upper[k]]. A sample's bin is its value alone.
type latencyBins struct {
	lower, upper []float64
	counts       [2][]uint64
}

// samplesHistogram bins two tracks' samples by value.
func samplesHistogram(stable, canary []float64) latencyBins {
	values := slices.Concat(stable, canary)
	slices.Sort(values)
	values = slices.Compact(values)
	h := latencyBins{lower: values, upper: values}
	for track, xs := range [][]float64{stable, canary} {
		h.counts[track] = make([]uint64, len(values))
		for _, x := range xs {
			k, _ := slices.BinarySearch(values, x)
			h.counts[track][k]++
		}
	}
	return h
}

// bucketsHistogram puts two tracks' Prometheus histograms side by side; they must have the
// same buckets (the same metric of the same build, or of builds that did not change it).
func bucketsHistogram(stable, canary LatencyHistogram) (latencyBins, error) {
	if !slices.Equal(stable.Bounds, canary.Bounds) {
		return latencyBins{}, fmt.Errorf("the tracks' histograms have different buckets (%v and %v): their latencies cannot be compared", stable.Bounds, canary.Bounds)
	}
	h := latencyBins{upper: stable.Bounds, counts: [2][]uint64{stable.Counts, canary.Counts}}
	h.lower = make([]float64, len(stable.Bounds))
	for k := 1; k < len(h.lower); k++ {
		h.lower[k] = stable.Bounds[k-1]
	}
	return h, nil
}

// quantile is a track's q-quantile, interpolated within its bin as Prometheus'
// histogram_quantile does; 0 with no values.
func (h latencyBins) quantile(track int, q float64) float64 {
	var n uint64
	for _, c := range h.counts[track] {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var below float64
	for k, c := range h.counts[track] {
		if c == 0 || below+float64(c) < rank {
			below += float64(c)
			continue
		}
		if math.IsInf(h.upper[k], 1) {
			return h.lower[k]
		}
		return h.lower[k] + (h.upper[k]-h.lower[k])*(rank-below)/float64(c)
	}
	return h.lower[len(h.lower)-1]
}

// TrackMetrics reads one track's (stable or canary) requests from its /metrics, between two
// scrapes: the buckets of a latency histogram and the requests of a counter labelled by HTTP
// status (5xx are errors), each summed over its other labels (routes). dogear's API exports
// dogear_api_request_seconds and dogear_api_requests_total; ingest
// dogear_ingest_request_seconds and dogear_ingest_requests_total.
type TrackMetrics struct {
	URL, Histogram, Requests string
	Client                   *http.Client
	last                     *trackTotals
}

// trackTotals are the cumulative values of one scrape.
type trackTotals struct {
	bounds           []float64
	cumulative       []uint64 // per bucket, as Prometheus keeps them (each includes those below)
	errors, requests uint64
}

// Interval scrapes the track and returns what happened since the previous scrape. The first call
// only takes the baseline and returns ErrNoRateYet. Counters that went down (the track
// restarted) count from zero.
func (m *TrackMetrics) Interval(ctx context.Context) (LatencyHistogram, int, int, error) {
	cur, err := m.scrapeTotals(ctx)
	if err != nil {
		return LatencyHistogram{}, 0, 0, err
	}
	prev := m.last
	m.last = cur
	if prev == nil {
		return LatencyHistogram{}, 0, 0, ErrNoRateYet
	}
	if !slices.Equal(prev.bounds, cur.bounds) || cur.requests < prev.requests || cur.errors < prev.errors ||
		cur.cumulative[len(cur.cumulative)-1] < prev.cumulative[len(prev.cumulative)-1] {
		prev = &trackTotals{bounds: cur.bounds, cumulative: make([]uint64, len(cur.bounds))}
	}
	h := LatencyHistogram{Bounds: cur.bounds, Counts: make([]uint64, len(cur.bounds))}
	var below uint64
	for k := range cur.cumulative {
		upTo := cur.cumulative[k] - min(cur.cumulative[k], prev.cumulative[k])
		h.Counts[k] = upTo - min(upTo, below)
		below = upTo
	}
	return h, int(cur.errors - prev.errors), int(cur.requests - prev.requests), nil
}

func (m *TrackMetrics) scrapeTotals(ctx context.Context) (*trackTotals, error) {
	families, err := scrape(ctx, m.Client, m.URL)
	if err != nil {
		return nil, err
	}
	// A family is missing until its first observation, as in a version that has served nothing
	// yet: that counts as zero requests.
	t := &trackTotals{bounds: []float64{math.Inf(1)}, cumulative: []uint64{0}}
	for i, series := range families[m.Histogram].GetMetric() {
		buckets := series.GetHistogram().GetBucket()
		bounds := make([]float64, 0, len(buckets)+1)
		for _, b := range buckets {
			bounds = append(bounds, b.GetUpperBound())
		}
		if len(bounds) == 0 || !math.IsInf(bounds[len(bounds)-1], 1) { // +Inf is implied
			bounds = append(bounds, math.Inf(1))
		}
		if i == 0 {
			t.bounds, t.cumulative = bounds, make([]uint64, len(bounds))
		} else if !slices.Equal(bounds, t.bounds) {
			return nil, fmt.Errorf("%s: the series of %s have different buckets", m.URL, m.Histogram)
		}
		for k, b := range buckets {
			t.cumulative[k] += b.GetCumulativeCount()
		}
		if len(buckets) < len(bounds) { // the implied +Inf bucket holds every sample
			t.cumulative[len(bounds)-1] += series.GetHistogram().GetSampleCount()
		}
	}
	if m.Requests == "" { // no counter of statuses: every timed request counts, none as an error
		t.requests = t.cumulative[len(t.cumulative)-1]
		return t, nil
	}
	reqs := families[m.Requests]
	for _, series := range reqs.GetMetric() {
		n := uint64(series.GetCounter().GetValue())
		t.requests += n
		for _, l := range series.GetLabel() {
			if l.GetName() == "status" && strings.HasPrefix(l.GetValue(), "5") {
				t.errors += n
			}
		}
	}
	return t, nil
}
