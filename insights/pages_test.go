package insights

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestPageRuns adds pages at random, forward runs among them as readers read, and holds the set
// to a map of the same pages: add must tell a new page from one read before, the runs must be
// the one canonical form (sorted, apart by a page at least, so that state is the same bytes
// whatever the order), and a record must give them back after encoding.
func TestPageRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	var runs pageRuns
	read := map[int64]bool{}
	for range 5000 {
		p := int64(1 + rng.IntN(400))
		for n := rng.IntN(6); n >= 0; n-- { // a few pages forward from there
			if got := runs.add(p); got == read[p] {
				t.Fatalf("page %d: add said new=%v, read before=%v", p, got, read[p])
			}
			read[p] = true
			p++
		}
		for i, r := range runs {
			if r.from > r.to || i > 0 && r.from <= runs[i-1].to+1 {
				t.Fatalf("runs not canonical at %d: %v", i, runs)
			}
		}
	}
	var n int64
	for _, r := range runs {
		for p := r.from; p <= r.to; p++ {
			if !read[p] {
				t.Fatalf("page %d in the runs, never read", p)
			}
			n++
		}
	}
	if n != int64(len(read)) {
		t.Fatalf("runs hold %d pages, %d read", n, len(read))
	}

	rb := ReaderBook{Reader: "r", Book: "b", pages: runs}
	var back ReaderBook
	if err := decodeRecord(encodeRecord(&rb), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.pages, runs) || back.pageKeys {
		t.Fatalf("decoded %d runs (page keys %v), encoded %d", len(back.pages), back.pageKeys, len(runs))
	}
}
