package recommend

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestRankMetricsByHand(t *testing.T) {
	// One hit of two at rank 2: recall 1/2; DCG 1/log2(3); ideal DCG 1 + 1/log2(3).
	r, n := rankMetrics([]int32{5, 3, 9}, []int32{3, 7}, 20)
	wantN := (1 / math.Log2(3)) / (1 + 1/math.Log2(3))
	if r != 0.5 || math.Abs(n-wantN) > 1e-12 {
		t.Fatalf("recall %v ndcg %v, want 0.5 %v", r, n, wantN)
	}
	// Hits beyond k do not count.
	if r, _ := rankMetrics([]int32{1, 2, 3}, []int32{3}, 2); r != 0 {
		t.Fatalf("hit at rank 3 counted with k=2: %v", r)
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
	rp3 := Evaluate(TrainNeighbors(train, NeighborParams{Kind: "rp3beta", K: 100, Alpha: 0.55, Beta: 0.2}, nil), train, test, 20, nil)
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
		"cosine":  TrainNeighbors(train, NeighborParams{Kind: "cosine", K: 30, Shrink: 1}, nil),
		"rp3beta": TrainNeighbors(train, NeighborParams{Kind: "rp3beta", K: 30, Alpha: 0.55, Beta: 0.2}, nil),
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
	a := TrainArtifact(inter, NeighborParams{Kind: "rp3beta", K: 10, Alpha: 0.55, Beta: 0.2})
	var buf bytes.Buffer
	if err := a.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	b, err := DecodeArtifact(&buf)
	if err != nil {
		t.Fatal(err)
	}
	hist := []Interaction{{Book: "p0", Weight: 1}}
	recs := b.Recommend(hist, func(book string) bool { return book == "p0" }, 5)
	if len(recs) != 3 {
		t.Fatalf("recs %+v: want the 3 other p-books", recs)
	}
	for _, r := range recs {
		if r.Book[0] != 'p' || r.Book == "p0" || r.Because != "p0" {
			t.Fatalf("rec %+v", r)
		}
	}
}
