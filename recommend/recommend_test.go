package recommend

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRankMetricsByHand(t *testing.T) {
	// One hit of two at rank 2: recall 1/2; DCG 1/log2(3); ideal DCG 1 + 1/log2(3).
	m := rankMetrics([]int32{5, 3, 9}, []int32{3, 7}, 20)
	wantN := (1 / math.Log2(3)) / (1 + 1/math.Log2(3))
	if m.Recall != 0.5 || math.Abs(m.NDCG-wantN) > 1e-12 {
		t.Fatalf("recall %v ndcg %v, want 0.5 %v", m.Recall, m.NDCG, wantN)
	}
	// KGAT's code divides by the DCG of the one hit retrieved, moved to the top: 1/log2(3) / 1.
	if math.Abs(m.NDCGKGAT-1/math.Log2(3)) > 1e-12 {
		t.Fatalf("KGAT's ndcg %v, want %v", m.NDCGKGAT, 1/math.Log2(3))
	}
	// Hits beyond k do not count.
	if m := rankMetrics([]int32{1, 2, 3}, []int32{3}, 2); m.Recall != 0 {
		t.Fatalf("hit at rank 3 counted with k=2: %v", m.Recall)
	}
}

// fixed scores items by a fixed list, whatever the history.
type fixed []float32

func (f fixed) Score(_ []int32, _ []float32, s []float32) {
	for i, v := range f {
		s[i] += v
	}
}

func TestEvaluateExcludesTrainingItemsAndSkipsUsersWithoutTest(t *testing.T) {
	train := Build(3, 4, []Entry{{0, 0, 1}, {1, 1, 1}})
	test := Build(3, 4, []Entry{{0, 1, 1}, {1, 0, 1}})
	// Item 0 scores highest but is user 0's training item, so user 0's top-1 is item 1 (a hit);
	// user 1's training item 1 is excluded and their top-1 is item 0 (a hit). User 2 has no test
	// items and is not evaluated.
	m := Evaluate(fixed{4, 3, 2, 1}, train, test, 1, nil)
	if m.Users != 2 || m.Recall != 1 || m.NDCG != 1 {
		t.Fatalf("%+v", m)
	}
}

// TestAmazonBookSlice guards the whole evaluation path on real data: the first 5000 readers of
// the Amazon-book split. The expected values were measured when the protocol was written; a
// change beyond noise means the data loading, a model or the metrics changed.
func TestAmazonBookSlice(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "data", "amazon-book")
	if _, err := os.Stat(filepath.Join(dir, "train.txt")); err != nil {
		t.Skipf("Amazon-book data not beside the checkout: %v", err)
	}
	ds, err := LoadKGAT(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Train.Rows != 70679 || ds.Train.Cols != 24915 || ds.Train.NNZ() != 652514 || ds.Test.NNZ() != 193920 {
		t.Fatalf("loaded %d×%d with %d/%d interactions; the README of the data says 70,679 × 24,915, 652,514/193,920",
			ds.Train.Rows, ds.Train.Cols, ds.Train.NNZ(), ds.Test.NNZ())
	}
	train, test := firstRows(ds.Train, 5000), firstRows(ds.Test, 5000)
	pop := Evaluate(TrainPopularity(train), train, test, 20, nil)
	rp3 := Evaluate(TrainNeighbors(train, ModelParams{Kind: "rp3beta", K: 100, Alpha: 0.55, Beta: 0.2}, nil), train, test, 20, nil)
	t.Logf("popularity %+v, rp3beta %+v", pop, rp3)
	if math.Abs(rp3.Recall-sliceRP3Recall) > 0.005 || math.Abs(pop.Recall-slicePopRecall) > 0.005 {
		t.Fatalf("Recall@20 rp3beta %.4f popularity %.4f; measured %.4f and %.4f when written", rp3.Recall, pop.Recall, sliceRP3Recall, slicePopRecall)
	}
}

const (
	sliceRP3Recall = 0.0608
	slicePopRecall = 0.0175
)

func firstRows(m *Matrix, n int) *Matrix {
	var e []Entry
	for u := 0; u < n && u < m.Rows; u++ {
		items, vals := m.Row(u)
		for k, it := range items {
			e = append(e, Entry{int32(u), it, vals[k]})
		}
	}
	return Build(min(n, m.Rows), m.Cols, e)
}

// clusters makes readers who each read 6 of the 20 books of one of 5 groups; half of each
// reader's books are test items.
func clusters() (train, test *Matrix) {
	rng := newRand(3)
	var tr, te []Entry
	for u := 0; u < 300; u++ {
		g := u % 5
		for k, b := range rng.Perm(20)[:6] {
			e := Entry{int32(u), int32(g*20 + b), 1}
			if k < 3 {
				tr = append(tr, e)
			} else {
				te = append(te, e)
			}
		}
	}
	return Build(300, 100, tr), Build(300, 100, te)
}

// TestModelsLearnStructure: on data with clear groups every model must beat popularity by far.
func TestModelsLearnStructure(t *testing.T) {
	train, test := clusters()
	pop := Evaluate(TrainPopularity(train), train, test, 20, nil).Recall
	models := map[string]Model{
		"cosine":  TrainNeighbors(train, ModelParams{Kind: "cosine", K: 30, Shrink: 1}, nil),
		"rp3beta": TrainNeighbors(train, ModelParams{Kind: "rp3beta", K: 30, Alpha: 0.55, Beta: 0.2}, nil),
		"ials":    TrainALS(train, ALSParams{Factors: 8, Iterations: 6, Lambda: 1, Alpha: 10, CGSteps: 3, Seed: 1}, nil),
	}
	for name, m := range models {
		// All 17 unread books of the reader's group fit in the top 20, so a model that learned
		// the groups finds nearly every test item.
		if r := Evaluate(m, train, test, 20, nil).Recall; r < 0.9 || r < 2*pop {
			t.Errorf("%s Recall@20 %.3f (popularity %.3f)", name, r, pop)
		}
	}
}

func TestArtifactRoundTripAndRecommend(t *testing.T) {
	var inter []Interaction
	for u := 0; u < 50; u++ {
		for b := 0; b < 4; b++ {
			inter = append(inter, Interaction{Reader: string(rune('A'+u%26)) + string(rune('a'+u/26)), Book: string(rune('p'+u%2)) + string(rune('0'+b)), Weight: 1})
		}
	}
	a := TrainArtifact(inter, ModelParams{Kind: "rp3beta", K: 10, Alpha: 0.55, Beta: 0.2})
	var buf bytes.Buffer
	if err := a.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	b, err := DecodeArtifact(&buf)
	if err != nil {
		t.Fatal(err)
	}
	hist := []Interaction{{Book: "p0", Weight: 1}}
	recs := b.Recommend(hist, []string{"p0"}, 5)
	if len(recs) != 3 {
		t.Fatalf("recs %+v: want the 3 other p-books", recs)
	}
	// A request's exclusions do not outlive it, though its scratch space is reused.
	left := b.Recommend(hist, []string{"p0", recs[0].Book}, 5)
	again := b.Recommend(hist, []string{"p0"}, 5)
	if len(left) != 2 || slices.ContainsFunc(left, func(r Rec) bool { return r.Book == recs[0].Book }) || fmt.Sprint(again) != fmt.Sprint(recs) {
		t.Fatalf("excluding %s too gave %+v, then without it %+v; want 2 books, then %+v again", recs[0].Book, left, again, recs)
	}
	for _, r := range recs {
		if r.Book[0] != 'p' || r.Book == "p0" || r.Because != "p0" {
			t.Fatalf("rec %+v", r)
		}
	}
}

// Select measures rather than assumes: where readers' books share no structure beyond a few
// bestsellers, popularity wins; where readers keep to their tastes, the neighbours do.
func TestSelectFitsTheCatalogue(t *testing.T) {
	gen := func(structured bool) []Interaction {
		rng := rand.New(rand.NewPCG(3, 3))
		var out []Interaction
		for u := range 3000 {
			for k := range 5 {
				var b int
				switch {
				case structured:
					b = (u%10)*20 + rng.IntN(20) // a taste of 20 books
				case rng.IntN(2) == 0:
					b = rng.IntN(10) // half of all reading is ten bestsellers
				default:
					b = 10 + rng.IntN(490) // the rest is anything
				}
				out = append(out, Interaction{Reader: fmt.Sprint("u", u), Book: fmt.Sprint("b", b), Weight: 1, At: int64(k)})
			}
		}
		return out
	}
	for _, c := range []struct {
		structured bool
		want       string
	}{{false, "popularity"}, {true, "personal"}} {
		byReader := ByReader(gen(c.structured))
		train, holdout := SplitLatest(byReader)
		sel := Select(train, byReader, holdout, SelectOptions{Start: DefaultParams})
		kind := sel.Best.Params.Kind
		if kind != "popularity" {
			kind = "personal"
		}
		if kind != c.want || len(sel.Trials) < 2 {
			t.Fatalf("structured=%v: chose %s after %d trials, want %s", c.structured, sel.Best.Params, len(sel.Trials), c.want)
		}
		for _, tr := range sel.Trials {
			if tr.Metrics.Recall > sel.Best.Metrics.Recall+0.02 {
				t.Fatalf("structured=%v: %s scored %.4f, far above the chosen %s (%.4f)", c.structured, tr.Params, tr.Metrics.Recall, sel.Best.Params, sel.Best.Metrics.Recall)
			}
		}
	}
}

func TestInvertSPD(t *testing.T) {
	// A = MᵀM + I for a fixed M: symmetric positive definite.
	n := 6
	a := make([]float64, n*n)
	for i := range n {
		for j := range n {
			for k := range n {
				a[i*n+j] += float64((i+2*k)%5) * float64((j+2*k)%5)
			}
		}
		a[i*n+i]++
	}
	inv := append([]float64(nil), a...)
	if err := invertSPD(inv, n); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for j := range n {
			var s float64
			for k := range n {
				s += a[i*n+k] * inv[k*n+j]
			}
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(s-want) > 1e-9 {
				t.Fatalf("(A·A⁻¹)[%d][%d] = %v, want %v", i, j, s, want)
			}
		}
	}
}

// A blend serves a reader's newest events at once: their trained iALS factors stand only while
// their history is the one trained on, and a changed history is folded in at request time.
func TestBlendFollowsNewEvents(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	var inter []Interaction
	for u := range 600 {
		for k := range 8 {
			b := (u%6)*25 + rng.IntN(25) // six tastes of 25 books
			inter = append(inter, Interaction{Reader: fmt.Sprint("u", u), Book: fmt.Sprint("b", b), Weight: 1, At: int64(k)})
		}
	}
	a := TrainArtifact(inter, ModelParams{Kind: "rp3beta", K: 50, Alpha: 0.45, Beta: 0.2, Factors: 16, ALSWeight: 0.5})
	history := ByReader(inter)["u0"] // taste 0: books b0..b24
	taste := func(h []Interaction) map[int]int {
		out := map[int]int{}
		for _, r := range a.Recommend(h, historyBooks(h), 10) {
			var b int
			fmt.Sscanf(r.Book, "b%d", &b)
			out[b/25]++
		}
		return out
	}
	if got := taste(history); got[0] < 8 {
		t.Fatalf("a taste-0 reader got %v", got)
	}
	if _, ok := a.trainedRow(history); !ok {
		t.Fatal("the reader's history is the one trained on, but it was not recognised")
	}
	// The lists made at training are the lists that making them at request time gives, for every
	// trained reader and length, and when the request leaves out one of the list's books too.
	byReader := ByReader(inter)
	lists := func(fromCache bool) string {
		saved := a.ReaderLists
		if !fromCache {
			a.ReaderLists = nil
		}
		defer func() { a.ReaderLists = saved }()
		var out strings.Builder
		for u := range 600 {
			h := byReader[fmt.Sprint("u", u)]
			for _, n := range []int{1, 10, blendCandidates} {
				fmt.Fprintln(&out, a.Recommend(h, historyBooks(h), n))
			}
			first := a.Recommend(h, historyBooks(h), 1)
			fmt.Fprintln(&out, a.Recommend(h, append(historyBooks(h), first[0].Book), 10))
		}
		return out.String()
	}
	cached, made := strings.Split(lists(true), "\n"), strings.Split(lists(false), "\n")
	for i := range made {
		if cached[i] != made[i] {
			t.Fatalf("line %d: the list made at training differs from the one made at request time:\n%s\n%s", i, cached[i], made[i])
		}
	}
	// They now read ten books of taste 3: the list must follow without retraining.
	for b := 75; b < 85; b++ {
		history = append(history, Interaction{Reader: "u0", Book: fmt.Sprint("b", b), Weight: 1, At: 100})
	}
	if _, ok := a.trainedRow(history); ok {
		t.Fatal("the reader's history changed, but it passed for the trained one")
	}
	if got := taste(history); got[3] < 5 {
		t.Fatalf("after ten taste-3 books the reader got %v", got)
	}
}

// BenchmarkServe measures Artifact.Recommend on Amazon-book, as the API calls it for a reader
// (docs/recommendations.md, "Serving"): RP3beta alone, the blend for a reader whose history is the
// one trained on (candidates and iALS scores looked up), and the blend for a reader with a new
// event (a fold-in and 100 dot products).
//
//	go test ./recommend -run '^$' -bench Serve -benchtime 20000x
func BenchmarkServe(b *testing.B) {
	ds, err := LoadKGAT(filepath.Join("..", "..", "shared", "data", "amazon-book"))
	if err != nil {
		b.Skip("Amazon-book not found next to the repository:", err)
	}
	inter := KGATInteractions(ds.Train)
	byReader := ByReader(inter)
	readers := make([]string, 0, len(byReader))
	for r := range byReader {
		readers = append(readers, r)
	}
	slices.Sort(readers)
	rp3 := ModelParams{Kind: "rp3beta", K: 100, Alpha: 0.45, Beta: 0.2}
	blend := rp3
	blend.Factors, blend.ALSWeight = 128, 0.3
	for _, c := range []struct {
		name    string
		params  ModelParams
		newBook bool
	}{{"rp3beta", rp3, false}, {"blend-trained-history", blend, false}, {"blend-new-event", blend, true}} {
		a := TrainArtifact(inter, c.params)
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				history := byReader[readers[i%len(readers)]]
				if c.newBook {
					history = append(slices.Clip(history), Interaction{Reader: history[0].Reader, Book: "b0", Weight: 1})
				}
				a.Recommend(history, historyBooks(history), 20)
				i++
			}
		})
	}
}

// historyBooks are the books of a history, which a request leaves out of the reader's list.
func historyBooks(h []Interaction) []string {
	out := make([]string, len(h))
	for i, it := range h {
		out[i] = it.Book
	}
	return out
}
