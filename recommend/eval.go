package recommend

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
)

// Metrics are ranking quality averaged over evaluated readers.
//
// NDCG divides by the ideal DCG of min(test items, 20) hits (the standard definition). NDCGKGAT is
// the definition in KGAT's released code (and the papers that reuse it): it divides by the DCG of
// the hits retrieved moved to the top, so a list with one hit at rank 5 scores 1/log2(6) by the
// first and 1 by the second. Tables compare like with like (docs/recommendations.md).
type Metrics struct {
	Recall   float64 `json:"recall_at_20"`
	NDCG     float64 `json:"ndcg_at_20"`
	NDCGKGAT float64 `json:"ndcg_at_20_kgat,omitempty"`
	Users    int     `json:"users"`
}

// sum adds one reader's metrics.
func (m *Metrics) sum(o Metrics) {
	m.Recall, m.NDCG, m.NDCGKGAT, m.Users = m.Recall+o.Recall, m.NDCG+o.NDCG, m.NDCGKGAT+o.NDCGKGAT, m.Users+o.Users
}

// mean turns sums over m.Users readers into averages.
func (m Metrics) mean() Metrics {
	if m.Users == 0 {
		return Metrics{}
	}
	n := float64(m.Users)
	return Metrics{Recall: m.Recall / n, NDCG: m.NDCG / n, NDCGKGAT: m.NDCGKGAT / n, Users: m.Users}
}

// Evaluate ranks ALL items each reader with test items has not interacted with in train, takes
// the top k, and averages Recall@k (hits / test items) and NDCG@k (binary relevance, ideal DCG over
// min(test items, k)) — the standard full-ranking protocol of KGAT and its successors.
func Evaluate(m Model, train, test *Matrix, k int, progress func(done, total int)) Metrics {
	var users []int
	for u := 0; u < test.Rows; u++ {
		if test.Ptr[u+1] > test.Ptr[u] {
			users = append(users, u)
		}
	}
	var total Metrics
	var mu sync.Mutex
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scores := make([]float32, train.Cols)
			top := newTopK(k)
			var sub Metrics
			for {
				i := int(next.Add(1) - 1)
				if i >= len(users) {
					break
				}
				u := users[i]
				clear(scores)
				var items []int32
				var vals []float32
				if u < train.Rows {
					items, vals = train.Row(u)
				}
				m.Score(items, vals, scores)
				for _, it := range items {
					scores[it] = float32(math.Inf(-1))
				}
				ranked := TopN(scores, top)
				truth, _ := test.Row(u)
				sub.sum(rankMetrics(ranked, truth, k))
				if d := done.Add(1); progress != nil && d%2000 == 0 {
					progress(int(d), len(users))
				}
			}
			mu.Lock()
			total.sum(sub)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if progress != nil {
		progress(len(users), len(users))
	}
	return total.mean()
}

// TopN returns the indexes of the largest scores, best first, using top's capacity as N. Items
// scored -Inf or NaN are never returned.
func TopN(scores []float32, top *topK) []int32 {
	top.reset()
	for i, s := range scores {
		if s > float32(math.Inf(-1)) {
			top.push(int32(i), s)
		}
	}
	idx, _ := top.sorted()
	return idx
}

// rankMetrics scores one reader's ranking against their test items (truth, sorted).
func rankMetrics(ranked, truth []int32, k int) Metrics {
	if len(truth) == 0 {
		return Metrics{}
	}
	inTruth := func(it int32) bool {
		// truth is sorted (a matrix row).
		lo, hi := 0, len(truth)
		for lo < hi {
			mid := (lo + hi) / 2
			if truth[mid] < it {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return lo < len(truth) && truth[lo] == it
	}
	hits := 0
	var dcg float64
	for pos, it := range ranked {
		if pos >= k {
			break
		}
		if inTruth(it) {
			hits++
			dcg += 1 / math.Log2(float64(pos)+2)
		}
	}
	m := Metrics{Recall: float64(hits) / float64(len(truth)), NDCG: dcg / idealDCG(min(k, len(truth))), Users: 1}
	if hits > 0 {
		m.NDCGKGAT = dcg / idealDCG(hits)
	}
	return m
}

// idealDCG is the DCG of n hits at the top of a list.
func idealDCG(n int) float64 {
	var d float64
	for pos := range n {
		d += 1 / math.Log2(float64(pos)+2)
	}
	return d
}

// SplitValidation carves a validation set out of train: for every reader with at least two
// items, a fraction of them (at least one) chosen at random with seed. Hyper-parameters are chosen
// on it, never on the test set.
func SplitValidation(train *Matrix, fraction float64, seed uint64) (fit, valid *Matrix) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var fitE, validE []Entry
	for u := 0; u < train.Rows; u++ {
		items, vals := train.Row(u)
		n := len(items)
		hold := 0
		if n >= 2 {
			hold = max(1, int(math.Round(fraction*float64(n))))
		}
		perm := rng.Perm(n)
		for k, p := range perm {
			e := Entry{Row: int32(u), Col: items[p], Val: vals[p]}
			if k < hold {
				validE = append(validE, e)
			} else {
				fitE = append(fitE, e)
			}
		}
	}
	return Build(train.Rows, train.Cols, fitE), Build(train.Rows, train.Cols, validE)
}

// Popularity scores items by how many readers interacted with them: the baseline every model
// must beat, and the cold-start fallback.
type Popularity struct{ Count []float32 }

// TrainPopularity counts interactions per item.
func TrainPopularity(ui *Matrix) *Popularity {
	p := &Popularity{Count: make([]float32, ui.Cols)}
	for _, it := range ui.Idx {
		p.Count[it]++
	}
	return p
}

// Score implements Model.
func (p *Popularity) Score(_ []int32, _ []float32, scores []float32) {
	for i, c := range p.Count {
		scores[i] += c
	}
}

// Blend mixes models: each model's scores for a reader are divided by their largest absolute
// value, so models on different scales mix by Weights.
type Blend struct {
	Models  []Model
	Weights []float32
}

// Score implements Model.
func (b *Blend) Score(items []int32, vals []float32, scores []float32) {
	tmp := make([]float32, len(scores))
	for k, m := range b.Models {
		clear(tmp)
		m.Score(items, vals, tmp)
		var top float32
		for _, s := range tmp {
			top = max(top, float32(math.Abs(float64(s))))
		}
		if top == 0 {
			continue
		}
		w := b.Weights[k] / top
		for i, s := range tmp {
			scores[i] += w * s
		}
	}
}
