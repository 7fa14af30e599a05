package recommend

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Trial is one model tried in a selection, with its score on the held-out interactions.
type Trial struct {
	Params  ModelParams `json:"params"`
	Metrics Metrics     `json:"metrics"`
	Seconds float64     `json:"seconds"`
}

// SelectOptions bound a selection.
type SelectOptions struct {
	// Budget is the wall time for trying models; the search stops trying new ones once it is
	// spent (popularity and one personalised model are always tried).
	Budget time.Duration
	// Start is the first personalised model tried, around which the search moves (the last
	// winner, or a default).
	Start ModelParams
}

// Selection is what Select found: the winner and everything tried, in order.
type Selection struct {
	Best   Trial   `json:"best"`
	Trials []Trial `json:"trials"`
}

// Refit trains the chosen model on all interactions (the held-out ones back in), from the same
// seeded start and with the same settings as the search trained it: what was evaluated is what
// is served.
func (s *Selection) Refit(all []Interaction) *Artifact {
	return trainArtifact(all, s.Best.Params, &alsCache{})
}

// Select chooses the servable model that ranks held-out interactions best (Recall@20) for this
// catalogue and these readers, preferring the simpler model when the difference is within noise.
// It trains each candidate on train and ranks each held-out book from the rest of its reader's
// history, exactly as serving ranks (Artifact.Recommend). The search, in order, within the budget:
//
//  1. popularity, the baseline every catalogue has;
//  2. Start, and EASE when the catalogue has at most EASEMaxItems books;
//  3. a coordinate search from the better of them: one step either way on each setting of the
//     best model so far (RP3beta's α, β and K; cosine similarity instead; EASE's λ; the weight of
//     a popularity prior for short histories), moving only when Recall@20 gains more than its
//     standard error on the held-out set, so noise neither moves the search nor makes the model
//     costlier;
//  4. iALS blended into the best neighbour model, at a few weights.
//
// On a sparse catalogue with short histories the prior, or popularity alone, can win; on a dense
// one the neighbours do. Both are measured, never assumed.
func Select(train []Interaction, byReader map[string][]Interaction, holdout []Interaction, opts SelectOptions) Selection {
	start := time.Now()
	train = inOrder(train) // once, not in every trial
	cache := &alsCache{trial: true}
	var sel Selection
	tried := map[ModelParams]bool{}
	try := func(p ModelParams) (Metrics, bool) {
		if tried[p] {
			return Metrics{}, false
		}
		tried[p] = true
		t0 := time.Now()
		m := HoldoutMetrics(trainArtifact(train, p, cache), byReader, holdout)
		sel.Trials = append(sel.Trials, Trial{Params: p, Metrics: m, Seconds: time.Since(t0).Seconds()})
		return m, true
	}
	spent := func() bool { return opts.Budget > 0 && time.Since(start) > opts.Budget }
	better := func(a, b Metrics) bool {
		se := math.Sqrt(b.Recall * (1 - b.Recall) / float64(max(1, b.Users)))
		return a.Recall > b.Recall+se
	}

	pop, _ := try(ModelParams{Kind: "popularity"})
	best := opts.Start
	bestM, _ := try(best)
	if books(train) <= EASEMaxItems {
		ease := ModelParams{Kind: "ease", Lambda: 100}
		if m, ok := try(ease); ok && better(m, bestM) {
			best, bestM = ease, m
		}
	}
	for improved := true; improved && !spent(); {
		improved = false
		for _, p := range neighbours(best) {
			if spent() {
				break
			}
			if m, ok := try(p); ok && better(m, bestM) {
				best, bestM, improved = p, m, true
			}
		}
	}
	// iALS blended into the best neighbour model, over the books the neighbours reach: it costs a
	// factorisation (seconds to tens of seconds), so it comes last, and moves like the rest.
	if best.Kind == "rp3beta" || best.Kind == "cosine" {
		blend := best
		blend.Factors, blend.ALSWeight = 128, 0.3
		for _, p := range []ModelParams{blend, withALSWeight(blend, 0.15), withALSWeight(blend, 0.45)} {
			if spent() {
				break
			}
			if m, ok := try(p); ok && better(m, bestM) {
				best, bestM = p, m
			} else if p == blend {
				break // the blend does not help here: its other weights will not either
			}
		}
	}
	// A personalised model must earn its cost: within the noise of popularity, popularity serves.
	sel.Best = Trial{Params: ModelParams{Kind: "popularity"}, Metrics: pop}
	if better(bestM, pop) {
		sel.Best = Trial{Params: best, Metrics: bestM}
	}
	for _, t := range sel.Trials {
		if t.Params == sel.Best.Params {
			sel.Best = t
		}
	}
	return sel
}

// neighbours are the settings one step from p, and the other similarity at p's K.
func neighbours(p ModelParams) []ModelParams {
	var out []ModelParams
	step := func(f func(*ModelParams)) {
		q := p
		f(&q)
		out = append(out, q)
	}
	switch p.Kind {
	case "rp3beta":
		for _, d := range []float64{-0.15, 0.15} {
			step(func(q *ModelParams) { q.Alpha = round2(max(0.05, q.Alpha+d)) })
		}
		for _, d := range []float64{-0.1, 0.1} {
			step(func(q *ModelParams) { q.Beta = round2(max(0, q.Beta+d)) })
		}
		out = append(out, ModelParams{Kind: "cosine", K: p.K, Shrink: 10})
	case "cosine":
		for _, d := range []float64{-40, 40} {
			step(func(q *ModelParams) { q.Shrink = max(0, q.Shrink+d) })
		}
	case "ease":
		step(func(q *ModelParams) { q.Lambda /= 4 })
		step(func(q *ModelParams) { q.Lambda *= 4 })
		step(func(q *ModelParams) { q.PopularityWeight = 0.1 })
		return out // K means nothing to EASE
	}
	step(func(q *ModelParams) { q.K = max(10, q.K/2) })
	step(func(q *ModelParams) { q.K = min(1600, q.K*2) })
	if p.PopularityWeight == 0 {
		step(func(q *ModelParams) { q.PopularityWeight = 0.1 })
	} else {
		step(func(q *ModelParams) { q.PopularityWeight = round2(q.PopularityWeight / 3) })
		step(func(q *ModelParams) { q.PopularityWeight = round2(q.PopularityWeight * 3) })
	}
	return out
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

func withALSWeight(p ModelParams, w float64) ModelParams {
	p.ALSWeight = w
	return p
}

// books counts the distinct books of interactions.
func books(inter []Interaction) int {
	seen := map[string]bool{}
	for _, it := range inter {
		seen[it.Book] = true
	}
	return len(seen)
}

// HoldoutReaders is how many held-out interactions a training round measures models on.
const HoldoutReaders = 20_000

// SampleHoldout keeps at most n held-out interactions, drawn with seed, and returns the others
// as rest, to train on: a model search ranks each held-out one per candidate, and 20,000 measure
// Recall@20 to about ±0.003 at a fraction of the cost of Amazon-book's 70,000.
func SampleHoldout(holdout []Interaction, n int, seed uint64) (kept, rest []Interaction) {
	if len(holdout) <= n {
		return holdout, nil
	}
	s := slices.Clone(holdout)
	slices.SortFunc(s, func(a, b Interaction) int { return strings.Compare(a.Reader, b.Reader) }) // map order is random
	rand.New(rand.NewPCG(seed, 0x686f6c64)).Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s[:n], s[n:]
}

// SplitLatest holds out, for every reader with at least three liked books, the most recent one
// (ties broken by book id), and returns the rest as train.
func SplitLatest(byReader map[string][]Interaction) (train, holdout []Interaction) {
	for _, list := range byReader {
		latest, positives := -1, 0
		for i, it := range list {
			if it.Weight > 0 {
				positives++
				if latest < 0 || it.At > list[latest].At || (it.At == list[latest].At && it.Book > list[latest].Book) {
					latest = i
				}
			}
		}
		for i, it := range list {
			if i == latest && positives >= 3 {
				holdout = append(holdout, it)
				continue
			}
			train = append(train, it)
		}
	}
	return train, holdout
}

// HoldoutMetrics ranks 20 books for each held-out interaction's reader from the rest of their
// history, as serving does, and measures whether the held-out book is among them (Recall@20) and
// how high (NDCG@20).
func HoldoutMetrics(a *Artifact, byReader map[string][]Interaction, holdout []Interaction) Metrics {
	if len(holdout) == 0 {
		return Metrics{}
	}
	workers := runtime.GOMAXPROCS(0)
	recall, ndcg := make([]float64, workers), make([]float64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var hist []Interaction
			var seen []string
			for i := w; i < len(holdout); i += workers {
				h := holdout[i]
				hist, seen = hist[:0], seen[:0]
				for _, it := range byReader[h.Reader] {
					if it.Book != h.Book {
						hist = append(hist, it)
						seen = append(seen, it.Book)
					}
				}
				for rank, r := range a.Recommend(hist, seen, 20) {
					if r.Book == h.Book {
						recall[w]++
						ndcg[w] += 1 / math.Log2(float64(rank)+2)
						break
					}
				}
			}
		})
	}
	wg.Wait()
	n := float64(len(holdout))
	var r, g float64
	for w := range workers {
		r, g = r+recall[w], g+ndcg[w]
	}
	return Metrics{Recall: r / n, NDCG: g / n, Users: len(holdout)}
}
