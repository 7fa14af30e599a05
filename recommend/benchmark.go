package recommend

import (
	"fmt"
	"github.com/dogear-dev/dogear/internal/progress"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Result is one row of `dogear eval`: an algorithm with the hyper-parameters chosen on
// validation, and its test metrics, training time and peak training memory.
type Result struct {
	Algorithm  string        `json:"algorithm"`
	Params     string        `json:"params"`
	Validation Metrics       `json:"validation"`
	Test       Metrics       `json:"test"`
	TrainTime  time.Duration `json:"train_time"`
	PeakMemMB  float64       `json:"peak_train_memory_mb"`
}

// EvalOptions control the protocol.
type EvalOptions struct {
	ValidationFraction float64 // share of each reader's train items held out for tuning
	ValidationUsers    int     // tune on at most this many validation readers (0: all)
	Seed               uint64
	Quick              bool // smaller grids, for tests
	// SelectBudget is the search budget of the "selected, as served" row: the model the trainer
	// would choose (Select) within it, refit on all of train and scored as the API serves it.
	SelectBudget time.Duration
	Progress     io.Writer
}

// candidate is one hyper-parameter setting of one algorithm.
type candidate struct {
	algo, params string
	train        func(*Matrix, func(int, int)) Model
}

func grids(quick bool) map[string][]candidate {
	g := map[string][]candidate{}
	g["popularity"] = []candidate{{"popularity", "-", func(m *Matrix, _ func(int, int)) Model { return TrainPopularity(m) }}}
	ks, shrinks := []int{50, 100}, []float64{0, 10, 50}
	alphas, betas := []float64{0.45, 0.55, 0.65}, []float64{0.1, 0.2, 0.3}
	als := []ALSParams{{Factors: 128, Iterations: 8, Lambda: 10, Alpha: 20, CGSteps: 3, Seed: 1},
		{Factors: 128, Iterations: 8, Lambda: 5, Alpha: 10, CGSteps: 3, Seed: 1}}
	if quick {
		ks, shrinks, alphas, betas = []int{50}, []float64{10}, []float64{0.55}, []float64{0.2}
		als = []ALSParams{{Factors: 16, Iterations: 4, Lambda: 5, Alpha: 10, CGSteps: 3, Seed: 1}}
	}
	for _, k := range ks {
		for _, s := range shrinks {
			p := ModelParams{Kind: "cosine", K: k, Shrink: s}
			g["itemknn-cosine"] = append(g["itemknn-cosine"], candidate{"itemknn-cosine", fmt.Sprintf("k=%d shrink=%g", k, s),
				func(m *Matrix, pr func(int, int)) Model { return TrainNeighbors(m, p, pr) }})
		}
		for _, a := range alphas {
			for _, b := range betas {
				p := ModelParams{Kind: "rp3beta", K: k, Alpha: a, Beta: b}
				g["rp3beta"] = append(g["rp3beta"], candidate{"rp3beta", fmt.Sprintf("k=%d alpha=%g beta=%g", k, a, b),
					func(m *Matrix, pr func(int, int)) Model { return TrainNeighbors(m, p, pr) }})
			}
		}
	}
	for _, p := range als {
		g["ials"] = append(g["ials"], candidate{"ials", fmt.Sprintf("factors=%d iters=%d lambda=%g alpha=%g cg=%d", p.Factors, p.Iterations, p.Lambda, p.Alpha, p.CGSteps),
			func(m *Matrix, pr func(int, int)) Model { return TrainALS(m, p, pr) }})
	}
	return g
}

// BlendWeights are the rp3beta shares tried for the rp3beta + iALS blend.
var BlendWeights = []float32{0.5, 0.7, 0.85}

// RunEval is `dogear eval`: for each algorithm it picks hyper-parameters on a validation split
// carved from train, retrains the winner on all of train, and evaluates on test.
func RunEval(ds *Dataset, opts EvalOptions) []Result {
	fit, valid := SplitValidation(ds.Train, opts.ValidationFraction, opts.Seed)
	if opts.ValidationUsers > 0 {
		valid = sampleRows(valid, opts.ValidationUsers, opts.Seed)
	}
	bar := progress.New(opts.Progress)
	var results []Result
	chosen := map[string]Model{}
	chosenValid := map[string]Model{}
	order := []string{"popularity", "itemknn-cosine", "rp3beta", "ials"}
	g := grids(opts.Quick)
	for _, algo := range order {
		var best candidate
		var bestM Metrics
		var bestModel Model
		for i, c := range g[algo] {
			label := fmt.Sprintf("tune %s %d/%d", algo, i+1, len(g[algo]))
			m := c.train(fit, bar.Phase(label+" train"))
			met := Evaluate(m, fit, valid, 20, bar.Phase(label+" validate"))
			if i == 0 || met.Recall > bestM.Recall {
				best, bestM, bestModel = c, met, m
			}
		}
		chosenValid[algo] = bestModel
		var model Model
		train, peak := measure(func() { model = best.train(ds.Train, bar.Phase(algo+" train on all of train")) })
		test := Evaluate(model, ds.Train, ds.Test, 20, bar.Phase(algo+" test"))
		chosen[algo] = model
		results = append(results, Result{Algorithm: algo, Params: best.params, Validation: bestM, Test: test, TrainTime: train, PeakMemMB: peak})
	}
	// The blend needs no training of its own: tune its weight on validation, then test.
	var bestW float32
	var bestM Metrics
	for i, w := range BlendWeights {
		b := &Blend{Models: []Model{chosenValid["rp3beta"], chosenValid["ials"]}, Weights: []float32{w, 1 - w}}
		met := Evaluate(b, fit, valid, 20, bar.Phase(fmt.Sprintf("tune blend %d/%d", i+1, len(BlendWeights))))
		if i == 0 || met.Recall > bestM.Recall {
			bestW, bestM = w, met
		}
	}
	b := &Blend{Models: []Model{chosen["rp3beta"], chosen["ials"]}, Weights: []float32{bestW, 1 - bestW}}
	test := Evaluate(b, ds.Train, ds.Test, 20, bar.Phase("blend test"))
	var rp, ia Result
	for _, r := range results {
		switch r.Algorithm {
		case "rp3beta":
			rp = r
		case "ials":
			ia = r
		}
	}
	results = append(results, Result{Algorithm: "rp3beta+ials", Params: fmt.Sprintf("weight=%g", bestW), Validation: bestM, Test: test,
		TrainTime: rp.TrainTime + ia.TrainTime, PeakMemMB: max(rp.PeakMemMB, ia.PeakMemMB)})
	bar.Phase("select the served model")(0, 1)
	results = append(results, EvalServed(ds, opts.SelectBudget))
	bar.Done()
	return results
}

// EvalServed is what a dogear trained on train.txt serves: the model Select chooses on each
// reader's latest book, refit on all of train, its lists scored on test as ServedMetrics ranks them.
func EvalServed(ds *Dataset, budget time.Duration) Result {
	inter := KGATInteractions(ds.Train)
	byReader := ByReader(inter)
	train, holdout := SplitLatest(byReader)
	holdout, rest := SampleHoldout(holdout, HoldoutReaders, 1)
	train = append(train, rest...)
	var sel Selection
	var a *Artifact
	took, peak := measure(func() {
		sel = Select(train, byReader, holdout, SelectOptions{Budget: budget, Start: DefaultParams})
		a = sel.Refit(inter)
	})
	return Result{Algorithm: "selected, as served", Params: sel.Best.Params.String(), Validation: sel.Best.Metrics,
		Test: ServedMetrics(a, ds.Train, ds.Test), TrainTime: took, PeakMemMB: peak}
}

// sampleRows keeps at most n non-empty rows of m, chosen at random.
func sampleRows(m *Matrix, n int, seed uint64) *Matrix {
	var rows []int
	for u := 0; u < m.Rows; u++ {
		if m.Ptr[u+1] > m.Ptr[u] {
			rows = append(rows, u)
		}
	}
	if len(rows) <= n {
		return m
	}
	rng := newRand(seed)
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	var e []Entry
	for _, u := range rows[:n] {
		items, vals := m.Row(u)
		for k, it := range items {
			e = append(e, Entry{Row: int32(u), Col: it, Val: vals[k]})
		}
	}
	return Build(m.Rows, m.Cols, e)
}

// measure runs fn and returns its wall time and the peak Go heap in use while it ran, above what
// was in use before.
func measure(fn func()) (time.Duration, float64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	peak := base
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	}()
	start := time.Now()
	fn()
	d := time.Since(start)
	close(stop)
	wg.Wait()
	runtime.ReadMemStats(&ms)
	peak = max(peak, ms.HeapInuse)
	return d, float64(peak-base) / (1 << 20)
}

// FormatTable renders results as a Markdown table.
func FormatTable(results []Result) string {
	var b strings.Builder
	b.WriteString("| algorithm | chosen on validation | validation Recall@20 | test Recall@20 | test NDCG@20 | test NDCG@20, KGAT's code | training time | peak training memory |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	sorted := append([]Result(nil), results...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Test.Recall < sorted[j].Test.Recall })
	for _, r := range sorted {
		fmt.Fprintf(&b, "| %s | %s | %.4f | **%.4f** | %.4f | %.4f | %.1f s | %.0f MB |\n", r.Algorithm, r.Params,
			r.Validation.Recall, r.Test.Recall, r.Test.NDCG, r.Test.NDCGKGAT, r.TrainTime.Seconds(), r.PeakMemMB)
	}
	return b.String()
}
