package recommend

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Published Recall@20 on the same Amazon-book split, for comparison in plots and docs.
var Published = []struct {
	Name   string
	Recall float64
}{{"KGAT (34 GPU-h)", 0.1503}, {"KGIN", 0.1687}}

// PlotResults writes a bar chart of test Recall@20 per algorithm next to the published results,
// as SVG, PNG or PDF by the file's extension.
func PlotResults(results []Result, path string) error {
	p := plot.New()
	p.Title.Text = "Amazon-book (KGAT split): test Recall@20, full ranking"
	p.Y.Label.Text = "Recall@20"
	var ours, theirs plotter.Values
	var labels []string
	for _, r := range results {
		labels = append(labels, fmt.Sprintf("%s\n%.1f s", r.Algorithm, r.TrainTime.Seconds()))
		ours = append(ours, r.Test.Recall)
		theirs = append(theirs, 0)
	}
	for _, pub := range Published {
		labels = append(labels, pub.Name)
		ours = append(ours, 0)
		theirs = append(theirs, pub.Recall)
	}
	w := vg.Points(28)
	a, err := plotter.NewBarChart(ours, w)
	if err != nil {
		return err
	}
	a.Color = color.RGBA{R: 46, G: 110, B: 180, A: 255}
	b, err := plotter.NewBarChart(theirs, w)
	if err != nil {
		return err
	}
	b.Color = color.RGBA{R: 190, G: 190, B: 190, A: 255}
	p.Add(a, b)
	p.Legend.Add("dogear (training time on 2 CPU cores)", a)
	p.Legend.Add("published", b)
	p.Legend.Top, p.Legend.Left = true, true
	p.NominalX(labels...)
	top := 0.0
	for i := range ours {
		top = max(top, ours[i], theirs[i])
	}
	p.Y.Min, p.Y.Max = 0, top*1.3 // room for the legend above the bars
	p.X.Min, p.X.Max = -0.6, float64(len(labels))-0.4
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}
