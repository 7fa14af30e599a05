// Package forecast predicts a load series hours ahead: Holt-Winters with a daily and a weekly
// season, updated robustly (spikes clipped, gaps skipped, level shifts re-levelled), with
// prediction intervals from its own recent errors.
package forecast

import (
	"math"
	"slices"
)

// Config sets the model. Periods are in samples; the zero Config is not usable, see Default.
type Config struct {
	// Day and Week are the seasonal periods in samples (1440 and 10080 at one sample a minute).
	Day, Week int
	// Bin is how many consecutive samples share one seasonal value: seasons are learnt per bin,
	// which averages out sample noise (10 minutes at one sample a minute).
	Bin int
	// Alpha, Beta, GammaDay, GammaWeek are the smoothing weights of level, trend and the two
	// seasons (per update of a bin); Phi damps the trend, so forecasts hours ahead do not run away.
	Alpha, Beta, GammaDay, GammaWeek, Phi float64
	// Clip is the Huber bound in robust scales: an error beyond Clip·scale updates the model as if
	// it were Clip·scale, so a spike moves nothing much.
	Clip float64
	// ShiftAfter samples of errors beyond Clip·scale on the same side are a level shift, not
	// spikes: the level jumps to the new one.
	ShiftAfter int
	// RecurDays is how many past days the minute-by-minute recurring pattern is taken from: at
	// each step of the day, the median over those days of what the smooth model missed (a batch
	// job at 02:00, a push notification at 19:30). A one-off spike is one day of several and
	// leaves the median alone; something that happens at the same minute most days does not.
	RecurDays int
	// Horizons are the steps ahead whose errors are kept for prediction intervals, and Window how
	// many of the latest errors at each are kept.
	Horizons []int
	Window   int
}

// Default is the model for one sample a minute: daily and weekly seasons in 10-minute bins, a
// level that follows within about an hour, a level shift recognised after 30 minutes, and
// intervals from the last two days of errors.
func Default(horizons ...int) Config {
	return Config{Day: 1440, Week: 10080, Bin: 10, Alpha: 0.05, Beta: 0.005, GammaDay: 0.25, GammaWeek: 0.15, Phi: 0.98,
		Clip: 2.5, ShiftAfter: 30, RecurDays: 3, Horizons: horizons, Window: 2 * 1440}
}

// Forecaster is the model's state. It takes one sample at a time, in time order.
type Forecaster struct {
	cfg          Config
	t            int // index of the next sample
	level, trend float64
	day, week    []float64   // seasonal deviation per bin
	scale        float64     // robust scale of one-step errors
	recur        [][]float64 // per day of the last RecurDays (a ring by day number): each step's miss
	warm         []float64   // the first day, before the model starts, and the steps it came at
	warmT        []int
	started      bool
	shiftRun     int         // consecutive same-side errors beyond the clip
	shiftSum     float64     // their sum
	pending      [][]float64 // per horizon: forecasts made for samples t..t+h, oldest first
	errs         [][]float64 // per horizon: ring of recent errors (actual − forecast)
	errPos       []int
	sorted       [][]float64 // per horizon: errs sorted, refreshed every Window/50 new errors
	unsorted     []int       // per horizon: errors recorded since the last sort
}

// New makes a forecaster.
func New(cfg Config) *Forecaster {
	f := &Forecaster{cfg: cfg, day: make([]float64, cfg.Day/cfg.Bin), week: make([]float64, cfg.Week/cfg.Bin)}
	f.recur = make([][]float64, cfg.RecurDays)
	for i := range f.recur {
		f.recur[i] = make([]float64, cfg.Day)
		for j := range f.recur[i] {
			f.recur[i][j] = math.NaN()
		}
	}
	f.pending = make([][]float64, len(cfg.Horizons))
	f.errs = make([][]float64, len(cfg.Horizons))
	f.errPos = make([]int, len(cfg.Horizons))
	f.sorted = make([][]float64, len(cfg.Horizons))
	f.unsorted = make([]int, len(cfg.Horizons))
	return f
}

// Ready reports whether a day of samples has been seen; before that, forecasts are the mean so
// far with a wide interval.
func (f *Forecaster) Ready() bool { return f.started }

// Observe takes the sample at the next step. A missing sample (a gap in the metrics) is NaN: the
// model moves on in time without learning from it.
func (f *Forecaster) Observe(y float64) {
	f.recordErrors(y)
	defer func() { f.t++; f.rememberForecasts() }()
	if f.cfg.RecurDays > 0 {
		f.recur[(f.t/f.cfg.Day)%f.cfg.RecurDays][f.t%f.cfg.Day] = math.NaN() // until seen below
	}
	if math.IsNaN(y) {
		if f.started {
			f.level += f.cfg.Phi * f.trend
			f.trend *= f.cfg.Phi
		}
		return
	}
	if !f.started {
		f.warm, f.warmT = append(f.warm, y), append(f.warmT, f.t)
		if f.t+1 >= f.cfg.Day && len(f.warm) >= f.cfg.Day/4 { // a day, at least a quarter of it seen
			f.start()
		}
		return
	}
	c := f.cfg
	d, w := f.bins(f.t)
	smooth := f.level + c.Phi*f.trend + f.day[d] + f.week[w]
	if c.RecurDays > 0 {
		f.recur[(f.t/c.Day)%c.RecurDays][f.t%c.Day] = y - smooth
	}
	pred := smooth + f.recurring(f.t)
	e := y - pred
	bound := c.Clip * f.scale
	if math.Abs(e) > bound {
		// Same side as the run so far: maybe a level shift; a long enough run is one.
		if f.shiftRun == 0 || math.Signbit(e) == math.Signbit(f.shiftSum) {
			f.shiftRun++
			f.shiftSum += e
		} else {
			f.shiftRun, f.shiftSum = 1, e
		}
		if f.shiftRun >= c.ShiftAfter {
			f.level += f.shiftSum / float64(f.shiftRun)
			f.trend = 0
			f.shiftRun, f.shiftSum = 0, 0
			return
		}
		e = math.Copysign(bound, e)
	} else {
		f.shiftRun, f.shiftSum = 0, 0
	}
	y = smooth + e // the cleaned observation, less the recurring part the smooth model leaves out
	prevLevel := f.level
	f.level = c.Alpha*(y-f.day[d]-f.week[w]) + (1-c.Alpha)*(f.level+c.Phi*f.trend)
	f.trend = c.Beta*(f.level-prevLevel) + (1-c.Beta)*c.Phi*f.trend
	// A bin's value is learnt from the Bin samples that fall in it each period.
	gd, gw := c.GammaDay/float64(c.Bin), c.GammaWeek/float64(c.Bin)
	f.day[d] += gd * (y - f.level - f.week[w] - f.day[d])
	f.week[w] += gw * (y - f.level - f.day[d] - f.week[w])
	// The scale follows the mean absolute (clipped) error; 1.25 turns it into a standard deviation
	// for normal errors.
	f.scale = 0.99*f.scale + 0.01*1.25*math.Abs(e)
}

// start fits the first day: the level is its median, the daily season its binned deviations,
// the weekly season flat until weeks are seen.
func (f *Forecaster) start() {
	s := slices.Clone(f.warm)
	slices.Sort(s)
	f.level = s[len(s)/2]
	var absDev []float64
	for b := range f.day {
		var vals []float64
		for i, y := range f.warm {
			if d, _ := f.bins(f.warmT[i]); d == b {
				vals = append(vals, y)
			}
		}
		if len(vals) > 0 {
			slices.Sort(vals)
			f.day[b] = vals[len(vals)/2] - f.level
			for _, v := range vals {
				absDev = append(absDev, math.Abs(v-vals[len(vals)/2]))
			}
		}
	}
	slices.Sort(absDev)
	f.scale = 1.4826 * absDev[len(absDev)/2] // MAD of the first day within its bins
	if f.scale == 0 {
		f.scale = 1e-9 + 0.01*math.Abs(f.level)
	}
	f.started, f.warm, f.warmT = true, nil, nil
}

func (f *Forecaster) bins(t int) (day, week int) {
	return (t % f.cfg.Day) / f.cfg.Bin, (t % f.cfg.Week) / f.cfg.Bin
}

// Forecast is the mean forecast h steps after the last sample observed (h ≥ 1).
func (f *Forecaster) Forecast(h int) float64 {
	if !f.started {
		if len(f.warm) == 0 {
			return 0
		}
		return mean(f.warm)
	}
	// A damped trend adds φ + φ² + … + φ^h of itself.
	damp := 0.0
	for i, p := 1, f.cfg.Phi; i <= h; i, p = i+1, p*f.cfg.Phi {
		damp += p
	}
	d, w := f.bins(f.t - 1 + h)
	return f.level + damp*f.trend + f.day[d] + f.week[w] + f.recurring(f.t-1+h)
}

// recurring is the recurring miss at step t of the day: the median over the kept days of each
// day's largest miss within a step of t (a job that starts a minute late is the same job). It is
// zero until two days are kept.
func (f *Forecaster) recurring(t int) float64 {
	var v [8]float64
	n := 0
	slot := t % f.cfg.Day
	for _, day := range f.recur {
		m := math.NaN()
		for s := slot - 1; s <= slot+1; s++ {
			x := day[(s+f.cfg.Day)%f.cfg.Day]
			if !math.IsNaN(x) && (math.IsNaN(m) || x > m) {
				m = x
			}
		}
		if !math.IsNaN(m) && n < len(v) {
			v[n] = m
			n++
		}
	}
	if n < 2 {
		return 0
	}
	slices.Sort(v[:n])
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// Upper is the q-quantile forecast h steps ahead: the mean forecast plus the q-quantile of the
// model's recent errors at the nearest kept horizon at or above h (conformal prediction). With
// too few errors kept, it widens by three robust scales instead.
func (f *Forecaster) Upper(h int, q float64) float64 {
	m := f.Forecast(h)
	i := slices.IndexFunc(f.cfg.Horizons, func(x int) bool { return x >= h })
	if i < 0 || len(f.errs[i]) < 60 {
		spread := f.scale
		if !f.started {
			spread = stddev(f.warm)
		}
		return m + 3*spread*math.Sqrt(float64(h))
	}
	// The quantile moves slowly: re-sort after a fiftieth of the window is new, not every call.
	if f.sorted[i] == nil || f.unsorted[i] > f.cfg.Window/50 {
		f.sorted[i] = append(f.sorted[i][:0], f.errs[i]...)
		slices.Sort(f.sorted[i])
		f.unsorted[i] = 0
	}
	e := f.sorted[i]
	return m + e[min(len(e)-1, int(q*float64(len(e))))]
}

// rememberForecasts keeps, for each horizon, the forecast made now for the sample h steps on.
func (f *Forecaster) rememberForecasts() {
	for i, h := range f.cfg.Horizons {
		f.pending[i] = append(f.pending[i], f.Forecast(h))
	}
}

// recordErrors scores the forecasts made h steps ago for the sample arriving now.
func (f *Forecaster) recordErrors(y float64) {
	for i, h := range f.cfg.Horizons {
		if len(f.pending[i]) < h {
			continue
		}
		pred := f.pending[i][0]
		f.pending[i] = f.pending[i][1:]
		if math.IsNaN(y) || !f.started {
			continue
		}
		e := y - pred
		f.unsorted[i]++
		if len(f.errs[i]) < f.cfg.Window {
			f.errs[i] = append(f.errs[i], e)
		} else {
			f.errs[i][f.errPos[i]] = e
			f.errPos[i] = (f.errPos[i] + 1) % f.cfg.Window
		}
	}
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func stddev(x []float64) float64 {
	if len(x) < 2 {
		return 0
	}
	m, s := mean(x), 0.0
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return math.Sqrt(s / float64(len(x)-1))
}
