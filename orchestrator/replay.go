package orchestrator

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// Sample is one point of a load trace.
type Sample struct {
	Time  time.Time
	Value float64
}

// ReadTrace reads a `ts,value` CSV (Unix seconds, load; a header line is allowed). A row that is
// not two numbers is refused with its line.
func ReadTrace(r io.Reader) ([]Sample, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	var out []Sample
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if len(rec) != 2 {
			return nil, fmt.Errorf("line %d: want ts,value, got %d fields", line, len(rec))
		}
		ts, err1 := strconv.ParseFloat(rec[0], 64)
		v, err2 := strconv.ParseFloat(rec[1], 64)
		if err1 != nil || err2 != nil {
			if line == 1 && len(out) == 0 {
				continue // the header
			}
			return nil, fmt.Errorf("line %d: want ts,value as numbers, got %q,%q", line, rec[0], rec[1])
		}
		if v < 0 || math.IsInf(v, 0) {
			return nil, fmt.Errorf("line %d: value %v: load cannot be negative or infinite", line, v)
		}
		t := time.Unix(0, int64(ts*1e9)).UTC()
		if len(out) > 0 && !t.After(out[len(out)-1].Time) {
			return nil, fmt.Errorf("line %d: ts %v is not after the previous one", line, rec[0])
		}
		out = append(out, Sample{t, v})
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("a trace needs at least two samples, got %d", len(out))
	}
	return out, nil
}

// Interval is the trace's sampling step: the most common gap between samples.
func Interval(trace []Sample) time.Duration {
	count := map[time.Duration]int{}
	best := time.Duration(0)
	for i := 1; i < len(trace); i++ {
		d := trace[i].Time.Sub(trace[i-1].Time)
		count[d]++
		if count[d] > count[best] {
			best = d
		}
	}
	return best
}

// DefaultCapacity is the capacity model the replay uses unless told otherwise, the same for every
// policy: one replica serves a tenth of the trace's 99th-percentile load (the busy hours need
// about ten replicas: a role large enough for scaling to matter), replicas take 5 minutes to
// become ready (image pull, start, a processor catching up), 1 to 100 replicas, 70% target
// utilisation.
func DefaultCapacity(trace []Sample) Capacity {
	vals := make([]float64, len(trace))
	for i, s := range trace {
		vals[i] = s.Value
	}
	slices.Sort(vals)
	p99 := vals[min(len(vals)-1, len(vals)*99/100)]
	return Capacity{PerReplica: p99 / 10, Startup: 5 * time.Minute, Interval: Interval(trace), Min: 1, Max: 100, Target: 0.7}
}

// Result is one policy's replay of one trace.
type Result struct {
	Policy              string  `json:"policy"`
	Trace               string  `json:"trace"`
	SLOViolationMinutes float64 `json:"slo_violation_minutes"`
	ReplicaHours        float64 `json:"replica_hours"`
	ScaleActions        int     `json:"scale_actions"`
	// Steps are the replay minute by minute, for plots.
	Steps []Step `json:"-"`
}

// Step is one replayed interval: the demand and the capacity ready for it.
type Step struct {
	Time             time.Time
	Demand, Capacity float64
}

// Replay runs policy over trace with capacity c. Each step: replicas whose startup is over become
// ready; the step's demand is served by ready replicas (what is not served waits as lag, and the
// step counts as SLO violation when demand exceeded ready capacity); the policy sees the step and
// its desired count is applied (new replicas start, or the newest go first). Replica-hours count
// every replica that exists, starting ones included. A gap in the trace leaves the replicas as
// they are and counts nothing.
func Replay(name string, trace []Sample, c Capacity, policy Policy) Result {
	res := Result{Policy: policy.Name(), Trace: name}
	// The role was running before the trace began: it starts with what the first sample needs at
	// the target utilisation, ready. Starting from none would give every policy the same
	// startup's worth of violation minutes, which measure the replay, not the policy.
	replicas := newReplicaSet(c, trace[0].Time, int(math.Ceil(trace[0].Value/(c.PerReplica*c.Target))))
	lag := 0.0
	step := c.Interval
	for i, s := range trace {
		if i > 0 {
			step = min(s.Time.Sub(trace[i-1].Time), c.Interval)
		}
		ready := replicas.ready(s.Time)
		capacity := float64(ready) * c.PerReplica
		res.Steps = append(res.Steps, Step{s.Time, s.Value, capacity})
		if s.Value > capacity {
			res.SLOViolationMinutes += step.Minutes()
		}
		lag = max(0, lag+(s.Value-capacity)*step.Seconds())
		res.ReplicaHours += float64(replicas.count()) * step.Hours()
		if replicas.scale(s.Time, policy.Desired(Observation{Time: s.Time, Demand: s.Value, Ready: ready, Current: replicas.count(), Lag: lag})) {
			res.ScaleActions++
		}
	}
	res.SLOViolationMinutes = math.Round(res.SLOViolationMinutes*100) / 100
	res.ReplicaHours = math.Round(res.ReplicaHours*100) / 100
	return res
}

// replicaSet is the capacity model's replicas: each is ready Startup after it was asked for.
type replicaSet struct {
	c       Capacity
	readyAt []time.Time // one per replica, ascending
}

// newReplicaSet starts with n replicas (within the bounds), ready at start.
func newReplicaSet(c Capacity, start time.Time, n int) *replicaSet {
	r := &replicaSet{c: c}
	r.scale(start.Add(-c.Startup), n)
	return r
}

// ready counts the replicas ready at now.
func (r *replicaSet) ready(now time.Time) int {
	n := 0
	for _, t := range r.readyAt {
		if !t.After(now) {
			n++
		}
	}
	return n
}

// count is every replica, starting ones included.
func (r *replicaSet) count() int { return len(r.readyAt) }

// scale moves to want replicas within the bounds (no upper one when Max is 0, as the live
// orchestrator leaves them to the operator), starting new ones at now or letting the newest go,
// and reports whether the count changed.
func (r *replicaSet) scale(now time.Time, want int) bool {
	want = max(want, r.c.Min)
	if r.c.Max > 0 {
		want = min(want, r.c.Max)
	}
	if want == len(r.readyAt) {
		return false
	}
	for len(r.readyAt) < want {
		r.readyAt = append(r.readyAt, now.Add(r.c.Startup))
	}
	r.readyAt = r.readyAt[:want] // the newest (latest ready) go first
	return true
}

// NewPolicy makes a policy by name: hpa, keda or predictive.
func NewPolicy(name string, c Capacity) (Policy, error) {
	switch name {
	case "hpa":
		return NewHPA(c), nil
	case "keda":
		return NewKEDA(c), nil
	case "predictive":
		return NewPredictive(c, DefaultQuantile, DefaultBudget), nil
	}
	return nil, fmt.Errorf("policy %q: want hpa, keda or predictive", name)
}

// DefaultQuantile is the highest upper forecast quantile the predictive policy provisions for.
const DefaultQuantile = 0.9

// DefaultBudget is the replica-hours the predictive policy may spend over the HPA's: 5% more.
const DefaultBudget = 0.05
