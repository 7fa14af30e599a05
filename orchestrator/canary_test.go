package orchestrator_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dogear-dev/dogear/orchestrator"
)

func TestMannWhitney(t *testing.T) {
	low, high := []float64{1, 2, 3}, []float64{4, 5, 6}
	if u, p := orchestrator.MannWhitney(low, high); u != 9 || p > 0.05 {
		t.Errorf("every b above every a: U=%v p=%v, want U=9 and a small p", u, p)
	}
	if u, p := orchestrator.MannWhitney(high, low); u != 0 || p < 0.95 {
		t.Errorf("every b below: U=%v p=%v", u, p)
	}
	// Ties share their mean rank: one pair tied of six values.
	if u, _ := orchestrator.MannWhitney([]float64{1, 2, 4}, []float64{4, 5, 6}); u != 8.5 {
		t.Errorf("with a tie U=%v, want 8.5", u)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	same := func() []float64 {
		x := make([]float64, 200)
		for i := range x {
			x[i] = rng.ExpFloat64()
		}
		return x
	}
	rejections := 0
	for range 200 {
		if _, p := orchestrator.MannWhitney(same(), same()); p < 0.05 {
			rejections++
		}
	}
	// One-sided at 5% on identical distributions: about 10 in 200.
	if rejections > 20 {
		t.Errorf("%d of 200 identical pairs rejected at 5%%", rejections)
	}
}

// latencies draws a request latency sample: log-normal around median ms.
func latencies(rng *rand.Rand, n int, median float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = median * math.Exp(0.3*rng.NormFloat64())
	}
	return x
}

func TestAnalysisRollsBackABadVersion(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	// A good canary: the same latencies and errors for 30 intervals, never rolled back.
	good := orchestrator.NewAnalysis()
	for i := range 30 {
		if good.Add(orchestrator.AnalysisInterval{StableLatencies: latencies(rng, 300, 20), CanaryLatencies: latencies(rng, 30, 20),
			StableRequests: 3000, StableErrors: 3, CanaryRequests: 300, CanaryErrors: 0}) {
			t.Fatalf("a canary like the stable version was rolled back at interval %d:\n%s", i+1, good.Summary())
		}
	}
	// Slower by half: rolled back at the third failed interval, not before.
	slow := orchestrator.NewAnalysis()
	for i := range 3 {
		back := slow.Add(orchestrator.AnalysisInterval{StableLatencies: latencies(rng, 300, 20), CanaryLatencies: latencies(rng, 30, 30),
			StableRequests: 3000, CanaryRequests: 300})
		if back != (i == 2) {
			t.Fatalf("interval %d: rollback %v\n%s", i+1, back, slow.Summary())
		}
	}
	if s := slow.Summary(); !strings.Contains(s, "interval 3 failed: latency: median") || !strings.Contains(s, "Mann-Whitney p=") {
		t.Errorf("evidence:\n%s", s)
	}
	// Failing requests: 5% errors against 0.1%.
	failing := orchestrator.NewAnalysis()
	var back bool
	for range 3 {
		back = failing.Add(orchestrator.AnalysisInterval{StableLatencies: latencies(rng, 300, 20), CanaryLatencies: latencies(rng, 30, 20),
			StableRequests: 3000, StableErrors: 3, CanaryRequests: 300, CanaryErrors: 15})
	}
	if !back || !strings.Contains(failing.Summary(), "errors: 5.00% vs 0.10%") {
		t.Errorf("error-rate canary: rollback %v\n%s", back, failing.Summary())
	}
}
