package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

// MannWhitney tests whether b's values tend to be larger than a's (one-sided): it returns U for b
// and the p-value from the normal approximation with the tie correction. Small p: b is larger.
func MannWhitney(a, b []float64) (u, p float64) {
	h := samplesHistogram(a, b)
	return mannWhitneyBinned(h.counts[0], h.counts[1])
}

// mannWhitneyBinned is MannWhitney over values grouped into ordered bins, a's and b's counts in
// each: values in one bin are ties. Samples are bins of one value each; a Prometheus histogram's
// buckets are bins whose values are only known to lie within the bucket.
func mannWhitneyBinned(a, b []uint64) (u, p float64) {
	var n1, n2 float64
	for k := range a {
		n1 += float64(a[k])
		n2 += float64(b[k])
	}
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	var below, rankB, ties float64
	for k := range a {
		t := float64(a[k] + b[k])
		rankB += float64(b[k]) * (below + (t+1)/2) // the mean of ranks below+1..below+t
		ties += t*t*t - t
		below += t
	}
	u = rankB - n2*(n2+1)/2
	n := n1 + n2
	sigma := math.Sqrt(n1 * n2 / 12 * ((n + 1) - ties/(n*(n-1))))
	if sigma == 0 {
		return u, 1
	}
	z := (u - n1*n2/2 - 0.5) / sigma // continuity correction
	return u, 1 - distuv.UnitNormal.CDF(z)
}

// AnalysisInterval is one analysis interval of a canary beside the stable version: each request's
// latency, and how many requests failed (5xx) of how many.
type AnalysisInterval struct {
	StableLatencies, CanaryLatencies []float64
	StableErrors, StableRequests     int
	CanaryErrors, CanaryRequests     int
}

// HistogramInterval is an analysis interval as the tracks' metrics give it (TrackMetrics): their
// latency histograms over the interval, and how many requests failed (5xx) of how many.
type HistogramInterval struct {
	Stable, Canary               LatencyHistogram
	StableErrors, StableRequests int
	CanaryErrors, CanaryRequests int
}

// Verdict is the analysis of one interval, kept as evidence.
type Verdict struct {
	Failed bool
	Reason string
	// P is the Mann-Whitney p-value that the canary's latencies are higher.
	P                                float64
	StableErrorRate, CanaryErrorRate float64
	StableP50, CanaryP50             float64
}

// Analysis compares a new version (a canary, a newly promoted model) with the old over intervals
// and says when to roll back: after MaxFailures failed intervals in a row. An interval fails when
// the canary's latencies are higher with p < Alpha and its median is more than LatencyMargin
// higher (so a significant but negligible difference does not count), or when its error rate is
// above the stable one by more than ErrorMargin.
type Analysis struct {
	Alpha, LatencyMargin, ErrorMargin float64
	MaxFailures                       int
	Evidence                          []Verdict
	failures                          int
}

// NewAnalysis is an analysis at the 1% level that rolls back after three failed intervals in a
// row: 10% slower at the median, or one percentage point more errors, counts.
func NewAnalysis() *Analysis {
	return &Analysis{Alpha: 0.01, LatencyMargin: 0.10, ErrorMargin: 0.01, MaxFailures: 3}
}

// Add analyses one interval of request latencies and reports whether the canary must be rolled
// back now.
func (a *Analysis) Add(iv AnalysisInterval) (rollback bool) {
	return a.judge(samplesHistogram(iv.StableLatencies, iv.CanaryLatencies), iv.StableErrors, iv.StableRequests, iv.CanaryErrors, iv.CanaryRequests)
}

// AddHistograms analyses one interval of latency histograms, as Add does samples; the tracks'
// histograms must have the same buckets. Ties within a bucket are ties for the rank test, so a
// difference within one bucket goes unseen: the histogram's resolution is the test's.
func (a *Analysis) AddHistograms(iv HistogramInterval) (rollback bool, err error) {
	h, err := bucketsHistogram(iv.Stable, iv.Canary)
	if err != nil {
		return false, err
	}
	return a.judge(h, iv.StableErrors, iv.StableRequests, iv.CanaryErrors, iv.CanaryRequests), nil
}

func (a *Analysis) judge(h latencyBins, stableErrors, stableRequests, canaryErrors, canaryRequests int) bool {
	v := Verdict{StableP50: h.quantile(0, 0.5), CanaryP50: h.quantile(1, 0.5),
		StableErrorRate: rate(stableErrors, stableRequests), CanaryErrorRate: rate(canaryErrors, canaryRequests)}
	_, v.P = mannWhitneyBinned(h.counts[0], h.counts[1])
	var reasons []string
	if v.P < a.Alpha && v.CanaryP50 > v.StableP50*(1+a.LatencyMargin) {
		reasons = append(reasons, fmt.Sprintf("latency: median %.4g vs %.4g, Mann-Whitney p=%.2g", v.CanaryP50, v.StableP50, v.P))
	}
	if v.CanaryErrorRate > v.StableErrorRate+a.ErrorMargin {
		reasons = append(reasons, fmt.Sprintf("errors: %.2f%% vs %.2f%%", 100*v.CanaryErrorRate, 100*v.StableErrorRate))
	}
	v.Failed, v.Reason = len(reasons) > 0, strings.Join(reasons, "; ")
	a.Evidence = append(a.Evidence, v)
	if v.Failed {
		a.failures++
	} else {
		a.failures = 0
	}
	return a.failures >= a.MaxFailures
}

// Summary is the evidence in one line per interval, for the rollback's record.
func (a *Analysis) Summary() string {
	var b strings.Builder
	for i, v := range a.Evidence {
		verdict := "passed"
		if v.Failed {
			verdict = "failed: " + v.Reason
		}
		fmt.Fprintf(&b, "interval %d %s\n", i+1, verdict)
	}
	return b.String()
}

// RollBackCanary removes a pipeline's canary (the operator then deletes its Deployments and sets
// the VirtualService back to stable only) and records why on the pipeline.
func RollBackCanary(ctx context.Context, c client.Client, pipeline types.NamespacedName, a *Analysis) error {
	var p v1alpha1.ReadingPipeline
	var image string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error { // the operator writes the pipeline too
		if err := c.Get(ctx, pipeline, &p); err != nil {
			return err
		}
		if p.Spec.Canary == nil {
			return nil
		}
		image = p.Spec.Canary.Image
		p.Spec.Canary = nil
		return c.Update(ctx, &p)
	})
	if err != nil || image == "" {
		return err
	}
	return record(ctx, c, &p, "RolledBack", "Rollback", fmt.Sprintf("canary %s rolled back after %d failed intervals:\n%s", image, a.MaxFailures, a.Summary()))
}

// CanaryWatch runs the analysis on live metrics: each Step reads both tracks' requests since
// the previous Step (TrackMetrics) and, after the analysis's MaxFailures failed intervals in a
// row, rolls the canary back (RollBackCanary) with the evidence. An interval in which either
// track served nothing is inconclusive and counts neither way.
type CanaryWatch struct {
	Client         client.Client
	Pipeline       types.NamespacedName
	Stable, Canary *TrackMetrics
	Analysis       *Analysis
	Logger         *slog.Logger
}

// Step analyses the interval since the previous Step and reports whether it rolled the canary
// back. The first Step only reads the baseline (ErrNoRateYet).
func (w *CanaryWatch) Step(ctx context.Context) (bool, error) {
	stable, stableErrors, stableRequests, errStable := w.Stable.Interval(ctx)
	canary, canaryErrors, canaryRequests, errCanary := w.Canary.Interval(ctx)
	if err := errors.Join(errStable, errCanary); err != nil {
		if errors.Is(errStable, ErrNoRateYet) || errors.Is(errCanary, ErrNoRateYet) {
			return false, ErrNoRateYet
		}
		return false, err
	}
	if stableRequests == 0 || canaryRequests == 0 {
		w.Logger.Info("canary interval inconclusive", "pipeline", w.Pipeline, "stable_requests", stableRequests,
			"canary_requests", canaryRequests, "histogram", w.Canary.Histogram, "requests", w.Canary.Requests)
		return false, nil
	}
	rollback, err := w.Analysis.AddHistograms(HistogramInterval{Stable: stable, Canary: canary,
		StableErrors: stableErrors, StableRequests: stableRequests, CanaryErrors: canaryErrors, CanaryRequests: canaryRequests})
	if err != nil {
		return false, err
	}
	v := w.Analysis.Evidence[len(w.Analysis.Evidence)-1]
	w.Logger.Info("canary interval", "pipeline", w.Pipeline, "failed", v.Failed, "reason", v.Reason, "p", v.P,
		"stable_p50", v.StableP50, "canary_p50", v.CanaryP50, "stable_error_rate", v.StableErrorRate, "canary_error_rate", v.CanaryErrorRate)
	if !rollback {
		return false, nil
	}
	return true, RollBackCanary(ctx, w.Client, w.Pipeline, w.Analysis)
}

// Run steps every interval until the canary is rolled back or ctx ends.
func (w *CanaryWatch) Run(ctx context.Context, interval time.Duration) error {
	var err error
	every(ctx, interval, func() bool {
		var done bool
		switch done, err = w.Step(ctx); {
		case done:
			return true
		case err == nil || ctx.Err() != nil || errors.Is(err, ErrNoRateYet):
		default:
			w.Logger.Warn("canary analysis step failed", "pipeline", w.Pipeline, "err", err)
		}
		return false
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func rate(errs, total int) float64 {
	if total == 0 {
		return 0
	}
	return float64(errs) / float64(total)
}
