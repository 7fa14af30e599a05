package orchestrator_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/orchestrator"
)

func TestReadTraceRefusesBadRowsByLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"ts,value\n0,1\n60,x\n", "line 3"},
		{"0,1\n60,2,3\n", "line 2: want ts,value, got 3 fields"},
		{"0,1\n0,2\n", "line 2: ts 0 is not after"},
		{"0,1\n60,-4\n", "line 2: value -4"},
		{"ts,value\n", "at least two samples"},
	} {
		if _, err := orchestrator.ReadTrace(strings.NewReader(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
	tr, err := orchestrator.ReadTrace(strings.NewReader("ts,value\n1628640000,39.7\n1628640060,39.8\n"))
	if err != nil || len(tr) != 2 || orchestrator.Interval(tr) != time.Minute {
		t.Fatalf("%v %v", tr, err)
	}
}

var capacity = orchestrator.Capacity{PerReplica: 10, Startup: 5 * time.Minute, Interval: time.Minute, Min: 1, Max: 100, Target: 0.7}

func at(min int) time.Time { return time.Unix(int64(min)*60, 0) }

// The HPA as Kubernetes documents it.
func TestHPAAlgorithm(t *testing.T) {
	h := orchestrator.NewHPA(capacity)
	// 4 ready at 70 load: utilisation 1.75 of a 0.7 target → ceil(4 × 1.75/0.7) = 10.
	if got := h.Desired(orchestrator.Observation{Time: at(0), Demand: 70, Ready: 4, Current: 4}); got != 10 {
		t.Errorf("scale up: %d, want 10", got)
	}
	// Within 10% of the target: no change (10 ready at 75: ratio 1.07).
	if got := h.Desired(orchestrator.Observation{Time: at(1), Demand: 75, Ready: 10, Current: 10}); got != 10 {
		t.Errorf("within tolerance: %d, want 10", got)
	}
	// Pods still starting count at zero usage: 4 ready of 10 at 35 load would be 2.0× over the
	// ready ones, but over all 10 it is 0.5 of target: hold.
	if got := h.Desired(orchestrator.Observation{Time: at(2), Demand: 35, Ready: 4, Current: 10}); got != 10 {
		t.Errorf("starting pods: %d, want 10", got)
	}
	// Load drops: the recommendation is 3, but scale-down takes the highest of the last five
	// minutes (10), until those have passed.
	for m := 3; m <= 7; m++ {
		if got := h.Desired(orchestrator.Observation{Time: at(m), Demand: 20, Ready: 10, Current: 10}); got != 10 {
			t.Fatalf("minute %d: scaled down to %d inside the stabilisation window", m, got)
		}
	}
	if got := h.Desired(orchestrator.Observation{Time: at(8), Demand: 20, Ready: 10, Current: 10}); got != 3 {
		t.Errorf("after the window: %d, want 3", got)
	}
}

func TestReplayAccounting(t *testing.T) {
	// The role starts serving the first sample at the target: ceil(30 / (10 × 0.7)) = 5 ready.
	// At minute 10 the load doubles: the HPA asks for ceil(5 × (60/50)/0.7) = 9 at once; they
	// serve from minute 15. Minutes 10–14 are violations.
	var trace []orchestrator.Sample
	for m := range 60 {
		v := 30.0
		if m >= 10 {
			v = 60
		}
		trace = append(trace, orchestrator.Sample{Time: at(m), Value: v})
	}
	r := orchestrator.Replay("step", trace, capacity, orchestrator.NewHPA(capacity))
	if r.SLOViolationMinutes != 5 || r.ScaleActions != 1 {
		t.Fatalf("%+v, want 5 violation minutes and 1 scale action", r)
	}
	// Five replicas through minute 10 (the decision at a minute counts from the next), nine for
	// the other 49.
	if want := math.Round((5*11+9*49)/60.0*100) / 100; r.ReplicaHours != want {
		t.Fatalf("replica-hours %v, want %v", r.ReplicaHours, want)
	}
}

// daily is three weeks of a load with a steep evening ramp at the same time each day, a weekly
// rhythm, noise, and occasional spikes — the shape of reading traffic.
func daily() []orchestrator.Sample {
	rng := rand.New(rand.NewPCG(7, 8))
	var out []orchestrator.Sample
	for m := range 21 * 1440 {
		x := float64(m%1440) / 60 // hour of day
		v := 20.0
		if x >= 18 && x < 23 {
			v = 20 + 80*math.Min(1, (x-18)*4) // reaches 100 within 15 minutes of 18:00
		}
		if (m/1440)%7 >= 5 {
			v *= 1.2
		}
		v *= 1 + 0.05*rng.NormFloat64()
		if rng.IntN(500) == 0 {
			v *= 1.5
		}
		out = append(out, orchestrator.Sample{Time: at(m), Value: math.Max(0, v)})
	}
	return out
}

// On a load whose ramps recur, the predictive policy sees each ramp coming: at least 30% fewer
// SLO-violation minutes than the HPA, for at most 5% more replica-hours.
func TestPredictiveBeatsHPAOnARecurringRamp(t *testing.T) {
	trace := daily()
	c := orchestrator.DefaultCapacity(trace)
	hpa := orchestrator.Replay("daily", trace, c, orchestrator.NewHPA(c))
	pred := orchestrator.Replay("daily", trace, c, orchestrator.NewPredictive(c, orchestrator.DefaultQuantile, orchestrator.DefaultBudget))
	t.Logf("hpa %s\npredictive %s", summary(hpa), summary(pred))
	if pred.SLOViolationMinutes > 0.7*hpa.SLOViolationMinutes {
		t.Errorf("predictive %v violation minutes, HPA %v: want at least 30%% fewer", pred.SLOViolationMinutes, hpa.SLOViolationMinutes)
	}
	if pred.ReplicaHours > 1.05*hpa.ReplicaHours {
		t.Errorf("predictive %v replica-hours, HPA %v: want at most 5%% more", pred.ReplicaHours, hpa.ReplicaHours)
	}
}

// summary is a replay result without its steps, for the log.
func summary(r orchestrator.Result) string {
	return fmt.Sprintf("%v violation minutes, %v replica-hours, %d scale actions", r.SLOViolationMinutes, r.ReplicaHours, r.ScaleActions)
}

// noisy is two weeks of a load that jumps between levels at random within a daily rhythm: a
// forecast's interval of it is wide, and provisioning for its upper end costs many replica-hours.
func noisy() []orchestrator.Sample {
	rng := rand.New(rand.NewPCG(9, 10))
	var out []orchestrator.Sample
	level := 1.0
	for m := range 14 * 1440 {
		if rng.IntN(30) == 0 {
			level = 0.3 + 1.4*rng.Float64()
		}
		x := float64(m%1440) / 1440 * 2 * math.Pi
		v := (50 + 30*math.Sin(x)) * level * (1 + 0.15*rng.NormFloat64())
		out = append(out, orchestrator.Sample{Time: at(m), Value: math.Max(0, v)})
	}
	return out
}

// The budget holds the predictive policy's replica-hours to at most 5% over the HPA's on a load
// where its top quantile would cost far more, and it still has fewer violation minutes.
func TestPredictiveKeepsToItsBudget(t *testing.T) {
	trace := noisy()
	c := orchestrator.DefaultCapacity(trace)
	hpa := orchestrator.Replay("noisy", trace, c, orchestrator.NewHPA(c))
	free := orchestrator.Replay("noisy", trace, c, orchestrator.NewPredictive(c, orchestrator.DefaultQuantile, -1))
	held := orchestrator.Replay("noisy", trace, c, orchestrator.NewPredictive(c, orchestrator.DefaultQuantile, 0.05))
	t.Logf("hpa %s\nwithout a budget %s\nwith 5%% %s", summary(hpa), summary(free), summary(held))
	if free.ReplicaHours <= 1.05*hpa.ReplicaHours {
		t.Fatalf("without a budget the policy spent %v replica-hours against the HPA's %v: the load does not test the budget", free.ReplicaHours, hpa.ReplicaHours)
	}
	if held.ReplicaHours > 1.05*hpa.ReplicaHours {
		t.Errorf("with a 5%% budget the policy spent %v replica-hours, the HPA %v", held.ReplicaHours, hpa.ReplicaHours)
	}
	if held.SLOViolationMinutes >= hpa.SLOViolationMinutes {
		t.Errorf("with a 5%% budget %v violation minutes, the HPA %v: want fewer", held.SLOViolationMinutes, hpa.SLOViolationMinutes)
	}
}

// The forecast chart draws a day of the trace beside the forecasts made a startup ahead, and
// says in its legend how often the load stayed under the upper forecast: on a load with a daily
// rhythm, most of the day. Before the forecaster has seen a day there is nothing to draw.
func TestPlotForecast(t *testing.T) {
	trace := daily()
	c := orchestrator.DefaultCapacity(trace)
	path := filepath.Join(t.TempDir(), "forecast.svg")
	if err := orchestrator.PlotForecast(path, "daily", trace, c, 0.9, at(10*1440)); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`at or under it (\d+)% of the day`).FindSubmatch(svg)
	if m == nil || !bytes.Contains(svg, []byte("mean forecast, made 5m0s before")) {
		t.Fatalf("the chart's legend lacks the forecasts:\n%.2000s", svg)
	}
	if covered, _ := strconv.Atoi(string(m[1])); covered < 80 {
		t.Errorf("the load stayed under the 90%% upper forecast %d%% of the day", covered)
	}
	if err := orchestrator.PlotForecast(path, "daily", trace, c, 0.9, at(0)); err == nil {
		t.Error("a chart of the first day, before any forecast, was drawn")
	}
}
