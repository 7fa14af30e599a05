package recommend

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
)

// DefaultParams are the RP3beta settings `dogear eval` chose on the Amazon-book validation split
// (docs/recommendations.md): where a model search starts, and what is trained without one.
var DefaultParams = ModelParams{Kind: "rp3beta", K: 100, Alpha: 0.45, Beta: 0.2}

// KGATInteractions turns a KGAT-format reader × book matrix into interactions named as a dogear
// fed with it (dogear bench recommend) names them: reader "u<row>", book "b<column>", weight 1 (a
// finished book), each reader's books a minute apart in KGATOrder.
func KGATInteractions(m *Matrix) []Interaction {
	out := make([]Interaction, 0, m.NNZ())
	for u := 0; u < m.Rows; u++ {
		items, _ := m.Row(u)
		order := KGATOrder(u, len(items))
		for k, it := range items {
			out = append(out, Interaction{Reader: fmt.Sprint("u", u), Book: fmt.Sprint("b", it), Weight: 1, At: int64(order[k]) * 60_000})
		}
	}
	return out
}

// KGATOrder is the order in which reader u read their n books of a KGAT-format file: the files
// hold no times, and their books are sorted by id, so a reader's "latest" book (what the trainer
// holds out to choose a model) is one drawn at random, as KGAT's own train/test split draws. The
// draw is seeded by the reader, so every run and every tool orders alike.
func KGATOrder(u, n int) []int {
	return rand.New(rand.NewPCG(uint64(u), 0x6b676174)).Perm(n)
}

// ByReader groups interactions by reader.
func ByReader(inter []Interaction) map[string][]Interaction {
	out := map[string][]Interaction{}
	for _, it := range inter {
		out[it.Reader] = append(out[it.Reader], it)
	}
	return out
}

// ServedMetrics scores what a served artifact recommends to every reader with test items: 20
// books ranked from their train books by Artifact.Recommend (train books excluded), filled with the
// most popular books when the list is shorter, as the API fills it.
func ServedMetrics(a *Artifact, train, test *Matrix) Metrics {
	var users []int
	for u := 0; u < test.Rows; u++ {
		if test.Ptr[u+1] > test.Ptr[u] {
			users = append(users, u)
		}
	}
	workers := runtime.GOMAXPROCS(0)
	subs := make([]Metrics, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var hist []Interaction
			var read []string
			seen := map[string]bool{}
			for i := w; i < len(users); i += workers {
				u := users[i]
				hist, read = hist[:0], read[:0]
				clear(seen)
				if u < train.Rows {
					items, _ := train.Row(u)
					reader := fmt.Sprint("u", u)
					for _, it := range items {
						b := fmt.Sprint("b", it)
						hist = append(hist, Interaction{Reader: reader, Book: b, Weight: 1})
						read, seen[b] = append(read, b), true
					}
				}
				recs := a.Recommend(hist, read, 20)
				ranked := make([]int32, 0, 20)
				taken := map[string]bool{}
				for _, r := range recs {
					ranked, taken[r.Book] = append(ranked, bookIndex(r.Book)), true
				}
				for _, b := range a.Popular() {
					if len(ranked) == 20 {
						break
					}
					if !seen[b] && !taken[b] {
						ranked = append(ranked, bookIndex(b))
					}
				}
				truth, _ := test.Row(u)
				subs[w].sum(rankMetrics(ranked, truth, 20))
			}
		})
	}
	wg.Wait()
	var total Metrics
	for _, s := range subs {
		total.sum(s)
	}
	return total.mean()
}

// bookIndex is the column of a book named "b<column>".
func bookIndex(b string) int32 {
	var i int32
	fmt.Sscanf(b, "b%d", &i)
	return i
}
