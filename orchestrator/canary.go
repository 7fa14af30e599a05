package orchestrator

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dogear-dev/dogear/operator/v1alpha1"
)

// MannWhitney tests whether b's values tend to be larger than a's (one-sided): it returns U for b
// and the p-value from the normal approximation with the tie correction. Small p: b is larger.
func MannWhitney(a, b []float64) (u, p float64) {
	n1, n2 := float64(len(a)), float64(len(b))
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	type obs struct {
		v     float64
		fromB bool
	}
	all := make([]obs, 0, len(a)+len(b))
	for _, v := range a {
		all = append(all, obs{v, false})
	}
	for _, v := range b {
		all = append(all, obs{v, true})
	}
	slices.SortFunc(all, func(x, y obs) int { return cmpFloat(x.v, y.v) })
	var rankB, ties float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // the mean of ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].fromB {
				rankB += rank
			}
		}
		t := float64(j - i)
		ties += t*t*t - t
		i = j
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

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// AnalysisInterval is one analysis interval of a canary beside the stable version: each request's
// latency, and how many requests failed (5xx) of how many.
type AnalysisInterval struct {
	StableLatencies, CanaryLatencies []float64
	StableErrors, StableRequests     int
	CanaryErrors, CanaryRequests     int
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

// Add analyses one interval and reports whether the canary must be rolled back now.
func (a *Analysis) Add(iv AnalysisInterval) (rollback bool) {
	v := Verdict{StableP50: median(iv.StableLatencies), CanaryP50: median(iv.CanaryLatencies),
		StableErrorRate: rate(iv.StableErrors, iv.StableRequests), CanaryErrorRate: rate(iv.CanaryErrors, iv.CanaryRequests)}
	_, v.P = MannWhitney(iv.StableLatencies, iv.CanaryLatencies)
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

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

func rate(errs, total int) float64 {
	if total == 0 {
		return 0
	}
	return float64(errs) / float64(total)
}
