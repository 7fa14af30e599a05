package orchestrator

import (
	"fmt"
	"image/color"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// PlotDay draws one day of replays of one trace: the demand, and the capacity each policy had
// ready, in hours from the day's start; SVG, PNG or PDF by the file's extension.
func PlotDay(path, title string, from time.Time, results ...Result) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "hours from " + from.UTC().Format("2006-01-02 15:04 UTC")
	p.Y.Label.Text = "load"
	to := from.Add(24 * time.Hour)
	line := func(steps []Step, value func(Step) float64) plotter.XYs {
		var xy plotter.XYs
		for _, s := range steps {
			if !s.Time.Before(from) && s.Time.Before(to) {
				xy = append(xy, plotter.XY{X: s.Time.Sub(from).Hours(), Y: value(s)})
			}
		}
		return xy
	}
	if len(results) == 0 {
		return fmt.Errorf("nothing to plot")
	}
	top := 0.0
	for _, r := range results {
		for _, xy := range line(r.Steps, func(s Step) float64 { return max(s.Demand, s.Capacity) }) {
			top = max(top, xy.Y)
		}
	}
	demand, err := plotter.NewLine(line(results[0].Steps, func(s Step) float64 { return s.Demand }))
	if err != nil {
		return err
	}
	demand.Color = color.RGBA{A: 255}
	p.Add(demand)
	p.Legend.Add("demand", demand)
	colors := []color.RGBA{{R: 200, G: 80, B: 40, A: 255}, {R: 46, G: 110, B: 180, A: 255}, {R: 60, G: 150, B: 60, A: 255}}
	for i, r := range results {
		l, err := plotter.NewLine(line(r.Steps, func(s Step) float64 { return s.Capacity }))
		if err != nil {
			return err
		}
		l.Color = colors[i%len(colors)]
		l.StepStyle = plotter.PostStep
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s ready capacity (%.0f violation min, %.0f replica-h over the trace)", r.Policy, r.SLOViolationMinutes, r.ReplicaHours), l)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.X.Min, p.X.Max = 0, 24
	p.Y.Min, p.Y.Max = 0, top*1.3 // room for the legend above the lines
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}

// PlotForecast draws one day of a trace beside what the predictive policy's forecaster said of
// each minute a replica's startup earlier: the mean forecast, and the q-upper forecast the policy
// provisions for. The legend gives how often that day the load stayed at or under the upper one.
func PlotForecast(path, title string, trace []Sample, c Capacity, q float64, from time.Time) error {
	model, steps := newForecaster(c)
	type made struct {
		mean, upper float64
		ok          bool
	}
	ahead := make([]made, steps) // ahead[j % steps]: the forecast for sample j, made at j − steps
	to := from.Add(24 * time.Hour)
	var demand, mean, upper plotter.XYs
	covered := 0
	for i, s := range trace {
		if f := ahead[i%steps]; f.ok && !math.IsNaN(s.Value) && !s.Time.Before(from) && s.Time.Before(to) {
			x := s.Time.Sub(from).Hours()
			demand = append(demand, plotter.XY{X: x, Y: s.Value})
			mean = append(mean, plotter.XY{X: x, Y: f.mean})
			upper = append(upper, plotter.XY{X: x, Y: f.upper})
			if s.Value <= f.upper {
				covered++
			}
		}
		model.Observe(s.Value)
		ahead[i%steps] = made{model.Forecast(steps), model.Upper(steps, q), model.Ready()}
	}
	if len(demand) == 0 {
		return fmt.Errorf("no forecast for the day from %s: the forecaster needs a day of the trace first", from.UTC().Format(time.RFC3339))
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "hours from " + from.UTC().Format("2006-01-02 15:04 UTC")
	p.Y.Label.Text = "load"
	lines := []struct {
		xy    plotter.XYs
		color color.RGBA
		dash  bool
		label string
	}{
		{demand, color.RGBA{A: 255}, false, "demand"},
		{mean, color.RGBA{R: 46, G: 110, B: 180, A: 255}, true, fmt.Sprintf("mean forecast, made %s before", c.Startup)},
		{upper, color.RGBA{R: 200, G: 80, B: 40, A: 255}, false, fmt.Sprintf("%.0f%% upper forecast (demand at or under it %.0f%% of the day)", 100*q, 100*float64(covered)/float64(len(demand)))},
	}
	top := 0.0
	for _, l := range lines {
		for _, xy := range l.xy {
			top = max(top, xy.Y)
		}
		pl, err := plotter.NewLine(l.xy)
		if err != nil {
			return err
		}
		pl.Color = l.color
		if l.dash {
			pl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(pl)
		p.Legend.Add(l.label, pl)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.X.Min, p.X.Max = 0, 24
	p.Y.Min, p.Y.Max = 0, top*1.3
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}
