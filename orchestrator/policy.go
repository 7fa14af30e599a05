// Package orchestrator scales dogear's roles ahead of their daily and weekly rhythm and rolls
// back changes that degrade: scaling policies, a trace replay to compare them, and canary analysis.
package orchestrator

import (
	"math"
	"time"

	"github.com/dogear-dev/dogear/forecast"
)

// Observation is what a policy sees at one decision.
type Observation struct {
	Time time.Time
	// Demand is the load of the last interval (events/s, CPU: the metric the role scales on).
	Demand float64
	// Ready replicas serve; Current counts those still starting too (what the scale says).
	Ready, Current int
	// Lag is the work waiting (Kafka consumer lag), in the same units as Demand × interval.
	Lag float64
}

// Policy turns observations into a desired replica count. It keeps its own history, so it sees
// every observation in order, once.
type Policy interface {
	Name() string
	Desired(o Observation) int
}

// Capacity is what one replica does and how long one takes to start: the model every policy
// is given and the replay simulates.
type Capacity struct {
	// PerReplica is the demand one ready replica serves.
	PerReplica float64
	// Startup is the time from a replica's creation to its readiness.
	Startup time.Duration
	// Interval is the time between observations (the trace's sampling step).
	Interval time.Duration
	// Min and Max bound the replicas (the role's minReplicas and maxReplicas).
	Min, Max int
	// Target is the utilisation (demand over ready capacity) the policies aim at: headroom for
	// growth while new replicas start.
	Target float64
}

// HPA is Kubernetes' Horizontal Pod Autoscaler on a utilisation metric, as its documentation
// gives the algorithm: desired = ceil(current × metric / target), no change within a 10%
// tolerance, not-yet-ready pods counted at zero usage when that would reverse a scale-up, and
// scale-down to the highest recommendation of the last five minutes.
type HPA struct {
	Cap       Capacity
	Tolerance float64       // 0.1
	Window    time.Duration // scale-down stabilisation, 5 minutes
	stab      stabiliser
}

// NewHPA is the HPA with Kubernetes' defaults.
func NewHPA(c Capacity) *HPA {
	return &HPA{Cap: c, Tolerance: 0.1, Window: 5 * time.Minute}
}

func (h *HPA) Name() string { return "hpa" }

func (h *HPA) Desired(o Observation) int {
	return h.stab.scaleDown(o.Time, h.Window, hpaRecommendation(h.Cap, h.Tolerance, o, o.Demand), o.Current)
}

// hpaRecommendation is the HPA's raw recommendation for a demand (before stabilisation).
func hpaRecommendation(c Capacity, tolerance float64, o Observation, demand float64) int {
	if o.Current == 0 {
		return int(math.Ceil(demand / (c.PerReplica * c.Target)))
	}
	ready := max(o.Ready, 1)
	ratio := demand / (float64(ready) * c.PerReplica) / c.Target
	if math.Abs(ratio-1) <= tolerance {
		return o.Current
	}
	if ratio > 1 && o.Current > o.Ready {
		// Pods still starting count at zero usage: recompute over all of them, and hold if that
		// no longer calls for more.
		all := demand / (float64(o.Current) * c.PerReplica) / c.Target
		if all <= 1+tolerance {
			return o.Current
		}
		ratio = all
		ready = o.Current
	}
	return int(math.Ceil(float64(ready) * ratio))
}

// KEDA is KEDA's Kafka scaler: the HPA on consumer lag as an average value, desired =
// ceil(lag / LagThreshold), with the HPA's tolerance and stabilisation; no lag scales to Min.
type KEDA struct {
	Cap          Capacity
	LagThreshold float64
	Window       time.Duration
	stab         stabiliser
}

// NewKEDA is KEDA's Kafka scaler with a lag threshold of what one replica serves in one interval.
func NewKEDA(c Capacity) *KEDA {
	return &KEDA{Cap: c, LagThreshold: c.PerReplica * c.Interval.Seconds(), Window: 5 * time.Minute}
}

func (k *KEDA) Name() string { return "keda" }

func (k *KEDA) Desired(o Observation) int {
	want := int(math.Ceil(o.Lag / k.LagThreshold))
	if o.Current > 0 {
		if r := float64(want) / float64(o.Current); math.Abs(r-1) <= 0.1 {
			want = o.Current
		}
	}
	return k.stab.scaleDown(o.Time, k.Window, want, o.Current)
}

// Predictive scales to the larger of the reactive need now (the HPA's recommendation, same
// target and tolerance) and the proactive need: enough replicas, at full utilisation, for the
// upper forecast of demand over every step until a replica asked for now is ready. The
// forecast's interval is the proactive margin, so it is not taken again as utilisation headroom.
// Scale-down waits as the HPA's does. Until the forecaster has a day of history it is the HPA.
//
// How far up the forecast's interval it provisions is held to a budget: the replica-hours it may
// spend over the HPA's, as a fraction of those. Beside its own decisions it runs what-ifs on the
// same observations, their replicas simulated with the capacity model: the HPA, and this policy
// at each of a few quantiles. Each interval it provisions for the highest quantile whose what-if
// held, over the last day, at most Budget more replica-hours than the HPA's what-if, corrected by
// what its own replicas spent against that over the day. On a load
// whose rises a forecast sees, the interval is narrow and the top quantile fits the budget; on a
// noisy one it is wide, and the policy provisions for a lower quantile, or, when none fits, is
// the HPA. The budget is what a platform pays for scaling ahead, known before a trace is seen.
type Predictive struct {
	Cap Capacity
	// Quantile is the highest upper-forecast quantile the policy provisions for.
	Quantile float64
	// Budget is the extra replica-hours over the HPA's allowed, as a fraction (0.05: 5% more);
	// negative for no budget (always Quantile).
	Budget  float64
	hpa     *HPA
	model   *forecast.Forecaster
	steps   int // startup in observation steps, at least 1
	stab    stabiliser
	day     int       // observations in a day
	whatIfs []*whatIf // the HPA first, then each quantile the budget chooses from, ascending
	own     window    // the policy's own replicas over the last day
	// Last is the most recent decision and what it was made from, for the record.
	Last Decision
}

// Decision is one predictive decision with its inputs.
type Decision struct {
	Reactive, Proactive, Desired int
	// Forecast and Upper are the highest mean and upper forecasts over the startup window, the
	// upper one at Quantile, which the budget chose (−1: none, the HPA alone).
	Forecast, Upper, Quantile float64
}

// NewPredictive makes the predictive policy; its forecaster learns from every observation, with
// the day, week, bins and shift detection of forecast.Default scaled to the interval.
func NewPredictive(c Capacity, quantile, budget float64) *Predictive {
	model, steps := newForecaster(c)
	day := int((24 * time.Hour) / c.Interval)
	return &Predictive{Cap: c, Quantile: quantile, Budget: budget, hpa: NewHPA(c), model: model, steps: steps, day: day, own: newWindow(day)}
}

// newForecaster is the predictive policy's forecaster for a capacity model, and how many
// intervals a replica takes to be ready.
func newForecaster(c Capacity) (*forecast.Forecaster, int) {
	steps := max(1, int(math.Ceil(float64(c.Startup)/float64(c.Interval))))
	cfg := forecast.Default(steps, steps+1)
	perDay := int((24 * time.Hour) / c.Interval)
	cfg.Day, cfg.Week, cfg.Window = perDay, 7*perDay, 2*perDay
	cfg.Bin = max(1, int((10*time.Minute)/c.Interval))
	cfg.ShiftAfter = max(2, int((30*time.Minute)/c.Interval))
	return forecast.New(cfg), steps
}

func (p *Predictive) Name() string { return "predictive" }

func (p *Predictive) Desired(o Observation) int {
	p.model.Observe(o.Demand)
	d := Decision{Reactive: hpaRecommendation(p.Cap, p.hpa.Tolerance, o, o.Demand), Quantile: p.Quantile}
	if p.model.Ready() {
		// Replicas asked for now serve from now + startup; until then only those there are can.
		// One step more: the next decision cannot add for that step in time.
		for h := 1; h <= p.steps+1; h++ {
			d.Forecast = max(d.Forecast, p.model.Forecast(h))
		}
		if p.Budget >= 0 {
			d.Quantile = p.budgeted(o)
		}
		if d.Quantile >= 0 {
			d.Proactive, d.Upper = p.proactive(d.Quantile)
		}
	}
	d.Desired = p.stab.scaleDown(o.Time, p.hpa.Window, max(d.Reactive, d.Proactive), o.Current)
	p.Last = d
	return d.Desired
}

// proactive is the replicas that serve the q-upper forecast over the startup window at full
// utilisation, and the highest of that forecast.
func (p *Predictive) proactive(q float64) (int, float64) {
	var upper float64
	for h := 1; h <= p.steps+1; h++ {
		upper = max(upper, p.model.Upper(h, q))
	}
	return int(math.Ceil(upper / p.Cap.PerReplica)), upper
}

// budgetQuantiles are the quantiles the budget chooses from, besides Quantile.
var budgetQuantiles = []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8}

// budgeted moves every what-if on by one observation and returns the highest quantile, up to
// Quantile, whose what-if's replica-hours over the last day fit what the budget allows: Budget
// more than the HPA's what-if, plus what the policy's own replicas left of that over the day (or
// less what they overspent, since the policy moves between quantiles and no what-if is what it
// did). None fits on a day when even the lowest quantile costs more: then the policy is the HPA.
func (p *Predictive) budgeted(o Observation) float64 {
	if p.whatIfs == nil {
		p.whatIfs = append(p.whatIfs, newWhatIf(p, o, -1)) // the HPA: no proactive need
		for _, q := range budgetQuantiles {
			if q < p.Quantile {
				p.whatIfs = append(p.whatIfs, newWhatIf(p, o, q))
			}
		}
		p.whatIfs = append(p.whatIfs, newWhatIf(p, o, p.Quantile))
	}
	p.own.add(float64(o.Current))
	for _, w := range p.whatIfs {
		proactive := 0
		if w.q >= 0 {
			proactive, _ = p.proactive(w.q)
		}
		w.step(p, o, proactive)
	}
	allowed := (1 + p.Budget) * p.whatIfs[0].hours.sum
	allowed += allowed - p.own.sum // what the policy itself left unspent, or overspent
	best := -1.0
	for _, w := range p.whatIfs {
		if w.hours.sum <= allowed {
			best = w.q
		}
	}
	return best
}

// whatIf is the predictive policy as it would have run at one quantile (or the HPA, q < 0) on the
// same observations, its replicas simulated with the capacity model, and its replica count over
// the last day.
type whatIf struct {
	q        float64
	replicas *replicaSet
	stab     stabiliser
	hours    window
}

func newWhatIf(p *Predictive, o Observation, q float64) *whatIf {
	w := &whatIf{q: q, replicas: newReplicaSet(p.Cap, o.Time, o.Ready), hours: newWindow(p.day)}
	w.replicas.scale(o.Time, o.Current) // it starts where the role is
	return w
}

func (w *whatIf) step(p *Predictive, o Observation, proactive int) {
	ready, current := w.replicas.ready(o.Time), w.replicas.count()
	w.hours.add(float64(current))
	mine := Observation{Time: o.Time, Demand: o.Demand, Ready: ready, Current: current, Lag: o.Lag}
	reactive := hpaRecommendation(p.Cap, p.hpa.Tolerance, mine, o.Demand)
	w.replicas.scale(o.Time, w.stab.scaleDown(o.Time, p.hpa.Window, max(reactive, proactive), current))
}

// window is a sum over the last n values.
type window struct {
	vals []float64
	next int
	sum  float64
}

func newWindow(n int) window { return window{vals: make([]float64, max(1, n))} }

func (w *window) add(v float64) {
	w.sum += v - w.vals[w.next]
	w.vals[w.next] = v
	w.next = (w.next + 1) % len(w.vals)
}

// stabiliser holds scale-down: the result is the highest recommendation within the window
// (Kubernetes' scale-down stabilisation); scale-up is immediate.
type stabiliser struct {
	at   []time.Time
	recs []int
}

func (s *stabiliser) scaleDown(now time.Time, window time.Duration, rec, current int) int {
	s.at, s.recs = append(s.at, now), append(s.recs, rec)
	for len(s.at) > 0 && now.Sub(s.at[0]) > window {
		s.at, s.recs = s.at[1:], s.recs[1:]
	}
	if rec >= current {
		return rec
	}
	highest := rec
	for _, r := range s.recs {
		highest = max(highest, r)
	}
	return min(highest, current)
}
