package recommend

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
)

// Metrics are ranking quality averaged over evaluated readers.
type Metrics struct {
	Recall float64 `json:"recall_at_20"`
	NDCG   float64 `json:"ndcg_at_20"`
	Users  int     `json:"users"`
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
	var recall, ndcg float64
	var mu sync.Mutex
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scores := make([]float32, train.Cols)
			top := newTopK(k)
			var r, n float64
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
				r1, n1 := rankMetrics(ranked, truth, k)
				r += r1
				n += n1
				if d := done.Add(1); progress != nil && d%2000 == 0 {
					progress(int(d), len(users))
				}
			}
			mu.Lock()
			recall += r
			ndcg += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if progress != nil {
		progress(len(users), len(users))
	}
	if len(users) == 0 {
		return Metrics{}
	}
	return Metrics{Recall: recall / float64(len(users)), NDCG: ndcg / float64(len(users)), Users: len(users)}
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

func rankMetrics(ranked, truth []int32, k int) (recall, ndcg float64) {
	if len(truth) == 0 {
		return 0, 0
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
	var idcg float64
	for pos := 0; pos < min(k, len(truth)); pos++ {
		idcg += 1 / math.Log2(float64(pos)+2)
	}
	return float64(hits) / float64(len(truth)), dcg / idcg
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
