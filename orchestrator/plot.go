package orchestrator

import (
	"fmt"
	"image/color"
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
