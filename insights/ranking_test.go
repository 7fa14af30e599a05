package insights

import (
	"cmp"
	"fmt"
	"maps"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dogear-dev/dogear/state"
)

// The merge of per-partition rankings gives exactly the top n of the totals, ties broken as the
// kind says, however the ids' weights are spread: skewed or flat, with many ties, with rankings
// longer than a chunk, ids missing from some partitions, and part of some ids' weight taken away.
func TestMergeRankingsIsExact(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		rng := rand.New(rand.NewPCG(seed, 3))
		s, err := state.OpenPebble(t.TempDir(), 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		const parts, ids = 8, 600
		weights := map[string][]int64{} // id → weight per partition
		var w state.Writes
		tx := state.Overlay{Base: s, Writes: &w}
		for i := range ids {
			id := fmt.Sprintf("id-%04d", rng.IntN(100_000))
			if weights[id] != nil {
				continue
			}
			weights[id] = make([]int64, parts)
			for p := range parts {
				if rng.IntN(4) == 0 {
					continue // absent from this partition
				}
				wt := int64(1 + rng.IntN(5)) // flat: many ties
				if seed%2 == 0 {
					wt = int64(1 + 2000/(i+1) + rng.IntN(3)) // skewed
				}
				weights[id][p] = wt
				moveRank(tx, rankPrefix(p), id, new(big.Int), big.NewInt(wt), wt)
			}
		}
		if err := s.Commit(0, 1, &w); err != nil {
			t.Fatal(err)
		}
		totals := func(id string) (ranked, error) {
			r := ranked{id: id}
			for _, wt := range weights[id] {
				r.count += wt
			}
			r.weight.SetInt64(r.count)
			return r, nil
		}
		// Some ids lose part of their weight, as trending takes away the starts after as_of: any
		// id now and then, and the 300 heaviest nearly all of it, so that the top n must be
		// found among ids the first chunks do not reach.
		byWeight := slices.Collect(maps.Keys(weights))
		sum := func(id string) (n int64) {
			for _, wt := range weights[id] {
				n += wt
			}
			return n
		}
		slices.SortFunc(byWeight, func(a, b string) int { return cmp.Compare(sum(b), sum(a)) })
		less := map[string]*ranked{}
		for i, id := range byWeight {
			total := sum(id)
			var l *ranked
			switch {
			case total <= 1:
			case i < 300:
				l = &ranked{id: id, count: total - 1}
			case rng.IntN(5) == 0:
				l = &ranked{id: id, count: 1 + rng.Int64N(total-1)}
			}
			if l != nil {
				l.weight.SetInt64(l.count)
				less[id] = l
			}
		}
		var all []ranked
		for id := range weights {
			r, _ := totals(id)
			if l := less[id]; l != nil {
				r.count -= l.count
				r.weight.SetInt64(r.count)
			}
			if r.count > 0 {
				all = append(all, r)
			}
		}
		r := bookRankings(s, nil)
		r.total = totals
		r.less = less
		for p := range parts {
			r.prefixes = append(r.prefixes, rankPrefix(p))
		}
		slices.SortFunc(all, func(a, b ranked) int {
			if r.heavier(&a, &b) {
				return -1
			}
			return 1
		})
		for _, n := range []int{1, 3, 10, 50, 1000} {
			for _, suffice := range []bool{true, false} {
				r.entriesSuffice = suffice
				got, err := r.top(s, n)
				if err != nil {
					t.Fatal(err)
				}
				want := all[:min(n, len(all))]
				if fmt.Sprint(idsOf(got)) != fmt.Sprint(idsOf(want)) {
					t.Fatalf("seed %d, top %d (entries suffice %v):\ngot  %v\nwant %v", seed, n, suffice, idsOf(got), idsOf(want))
				}
			}
		}
		s.Close()
	}
}

func idsOf(rs []ranked) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s:%d", r.id, r.count))
	}
	return out
}
