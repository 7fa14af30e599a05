package recommend

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Model scores every item for one reader's history.
type Model interface {
	// Score adds each item's score for a reader who interacted with items (weights vals) into
	// scores, which has one slot per item. It must be safe for concurrent use.
	Score(items []int32, vals []float32, scores []float32)
}

// Neighbors is an item-to-item model: for each item, its K most similar items. It scores a
// reader's candidate item by summing its similarity to each item in the reader's history, and it
// also answers "readers also enjoyed".
type Neighbors struct {
	Items int
	Ptr   []int64
	Idx   []int32
	Sim   []float32
}

// Similar returns item's neighbours, most similar first.
func (n *Neighbors) Similar(item int) ([]int32, []float32) {
	return n.Idx[n.Ptr[item]:n.Ptr[item+1]], n.Sim[n.Ptr[item]:n.Ptr[item+1]]
}

// Score implements Model.
func (n *Neighbors) Score(items []int32, vals []float32, scores []float32) {
	for k, i := range items {
		if int(i) >= n.Items {
			continue // an item the model has not seen
		}
		w := vals[k]
		nb, sim := n.Similar(int(i))
		for j, s := range sim {
			scores[nb[j]] += w * s
		}
	}
}

// ModelParams choose a servable model. Kind "cosine": item neighbours by co-occurrence weight
// over the product of the items' norms plus Shrink. Kind "rp3beta": a two-step random walk item →
// reader → item with transition probabilities raised to Alpha, divided by the target's
// popularity^Beta (Paudel et al. 2017), which favours less popular, more specific neighbours. Kind
// "ease": EASE's item weights (TrainEASE), for catalogues of at most EASEMaxItems books. Kind
// "popularity": no neighbours, the most read books.
//
// PopularityWeight adds a popularity prior to the neighbours' scores, weighted by
// PopularityWeight / (1 + books in the reader's history): it counts for short histories, where
// neighbours know little, and fades for long ones.
type ModelParams struct {
	Kind             string  `json:"kind"`
	K                int     `json:"k,omitempty"`
	Shrink           float64 `json:"shrink,omitempty"`
	Alpha            float64 `json:"alpha,omitempty"`
	Beta             float64 `json:"beta,omitempty"`
	Lambda           float64 `json:"lambda,omitempty"` // EASE's regularisation
	PopularityWeight float64 `json:"popularity_weight,omitempty"`
	// Factors > 0 blends iALS (ALSDefaults with this many factors) into a neighbour model's
	// scores with weight ALSWeight (the neighbours keep 1 − ALSWeight), over the books the
	// neighbours reach: each is scaled to its maximum among them first.
	Factors   int     `json:"ials_factors,omitempty"`
	ALSWeight float64 `json:"ials_weight,omitempty"`
}

// ALSDefaults are the iALS settings `dogear eval` chose on Amazon-book; a blend sets Factors.
var ALSDefaults = ALSParams{Iterations: 8, Lambda: 10, Alpha: 20, CGSteps: 3, Seed: 1}

// String is the parameters as people read them in tables and logs.
func (p ModelParams) String() string {
	var s string
	switch p.Kind {
	case "popularity":
		return "popularity"
	case "cosine":
		s = fmt.Sprintf("cosine k=%d shrink=%g", p.K, p.Shrink)
	case "ease":
		s = fmt.Sprintf("ease lambda=%g", p.Lambda)
	default:
		s = fmt.Sprintf("%s k=%d alpha=%g beta=%g", p.Kind, p.K, p.Alpha, p.Beta)
	}
	if p.Factors > 0 {
		s = fmt.Sprintf("%s ×%g + iALS factors=%d ×%g", s, 1-p.ALSWeight, p.Factors, p.ALSWeight)
	}
	if p.PopularityWeight > 0 {
		s += fmt.Sprintf(" + popularity×%g/(1+history)", p.PopularityWeight)
	}
	return s
}

// TrainNeighbors computes every item's top-K neighbours from a reader × item matrix, in parallel
// over items. The work is Σ over readers of (items per reader)², with one dense accumulator per
// worker and no allocation per item pair.
func TrainNeighbors(ui *Matrix, p ModelParams, progress func(done, total int)) *Neighbors {
	iu := ui.Transpose()
	nItems := ui.Cols
	// Per-item and per-reader factors that turn co-occurrence into the chosen similarity.
	itemNorm := make([]float64, nItems)
	userW := make([]float32, ui.Rows) // weight of the path through a reader
	for i := 0; i < nItems; i++ {
		_, vals := iu.Row(i)
		for _, v := range vals {
			itemNorm[i] += float64(v) * float64(v)
		}
	}
	targetDiv := make([]float32, nItems)
	switch p.Kind {
	case "rp3beta":
		for u := 0; u < ui.Rows; u++ {
			items, vals := ui.Row(u)
			var deg float64
			for _, v := range vals {
				deg += float64(v)
			}
			if len(items) > 0 {
				userW[u] = float32(math.Pow(1/deg, p.Alpha))
			}
		}
		for i := 0; i < nItems; i++ {
			_, vals := iu.Row(i)
			var deg float64
			for _, v := range vals {
				deg += float64(v)
			}
			itemNorm[i] = math.Pow(max(deg, 1), p.Alpha) // P(item → reader) = r/deg(item)
			targetDiv[i] = float32(math.Pow(max(deg, 1), p.Beta))
		}
	default:
		for u := range userW {
			userW[u] = 1
		}
		for i := range itemNorm {
			itemNorm[i] = math.Sqrt(itemNorm[i])
			targetDiv[i] = float32(itemNorm[i])
		}
	}

	out := &Neighbors{Items: nItems, Ptr: make([]int64, nItems+1)}
	rowsIdx := make([][]int32, nItems)
	rowsSim := make([][]float32, nItems)
	workers := runtime.GOMAXPROCS(0)
	var next, done int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc := make([]float32, nItems)
			touched := make([]int32, 0, 4096)
			top := newTopK(p.K)
			for {
				mu.Lock()
				i := int(next)
				next++
				mu.Unlock()
				if i >= nItems {
					return
				}
				users, uvals := iu.Row(i)
				for k, u := range users {
					wi := uvals[k]
					if p.Kind == "rp3beta" {
						wi = float32(math.Pow(float64(wi), p.Alpha))
					}
					wi *= userW[u]
					items, vals := ui.Row(int(u))
					for m, j := range items {
						if acc[j] == 0 {
							touched = append(touched, j)
						}
						v := vals[m]
						if p.Kind == "rp3beta" && v != 1 {
							v = float32(math.Pow(float64(v), p.Alpha))
						}
						acc[j] += wi * v
					}
				}
				top.reset()
				for _, j := range touched {
					if int(j) != i {
						var s float32
						if p.Kind == "rp3beta" {
							s = acc[j] / float32(itemNorm[i]) / targetDiv[j]
						} else {
							s = acc[j] / (float32(itemNorm[i])*targetDiv[j] + float32(p.Shrink))
						}
						top.push(j, s)
					}
					acc[j] = 0
				}
				touched = touched[:0]
				idx, sim := top.sorted()
				rowsIdx[i] = idx
				rowsSim[i] = sim
				mu.Lock()
				done++
				d := done
				mu.Unlock()
				if progress != nil && d%1000 == 0 {
					progress(int(d), nItems)
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < nItems; i++ {
		out.Ptr[i+1] = out.Ptr[i] + int64(len(rowsIdx[i]))
		out.Idx = append(out.Idx, rowsIdx[i]...)
		out.Sim = append(out.Sim, rowsSim[i]...)
	}
	if progress != nil {
		progress(nItems, nItems)
	}
	return out
}

// topK keeps the k largest (item, score) pairs in a min-heap.
type topK struct {
	k     int
	items []int32
	score []float32
}

func newTopK(k int) *topK {
	return &topK{k: k, items: make([]int32, 0, k), score: make([]float32, 0, k)}
}

func (t *topK) reset() { t.items, t.score = t.items[:0], t.score[:0] }

func (t *topK) push(item int32, s float32) {
	if len(t.items) < t.k {
		t.items = append(t.items, item)
		t.score = append(t.score, s)
		t.up(len(t.items) - 1)
		return
	}
	if !t.accepts(item, s) {
		return
	}
	t.items[0], t.score[0] = item, s
	t.down(0)
}

// accepts reports whether push would keep (item, s).
func (t *topK) accepts(item int32, s float32) bool {
	return len(t.items) < t.k || s > t.score[0] || (s == t.score[0] && item < t.items[0])
}

func (t *topK) less(a, b int) bool {
	// Ties broken by item id so results do not depend on iteration order.
	return t.score[a] < t.score[b] || (t.score[a] == t.score[b] && t.items[a] > t.items[b])
}

func (t *topK) swap(a, b int) {
	t.items[a], t.items[b] = t.items[b], t.items[a]
	t.score[a], t.score[b] = t.score[b], t.score[a]
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *topK) down(i int) {
	n := len(t.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.less(r, l) {
			m = r
		}
		if !t.less(m, i) {
			return
		}
		t.swap(i, m)
		i = m
	}
}

// sorted empties the heap into new slices, best first.
func (t *topK) sorted() ([]int32, []float32) {
	n := len(t.items)
	idx := make([]int32, n)
	sim := make([]float32, n)
	for k := n - 1; k >= 0; k-- {
		idx[k], sim[k] = t.items[0], t.score[0]
		last := len(t.items) - 1
		t.swap(0, last)
		t.items, t.score = t.items[:last], t.score[:last]
		t.down(0)
	}
	return idx, sim
}
