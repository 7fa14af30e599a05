package eventlog

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func uuidLike(rng *rand.Rand) string { return fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()) }

// The filter never forgets an id, and across its growth lets through about idFilterFP of fresh
// ids per filter in its chain: the share of fresh ids that pay an index lookup.
func TestIDFilterFalsePositives(t *testing.T) {
	const stored = 3 << 20 // past the first filter's capacity, so the chain has grown
	f := newIDFilter(0)
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 0, stored)
	for range stored {
		id := uuidLike(rng)
		f.add(id)
		ids = append(ids, id)
	}
	if len(f.chain) < 2 {
		t.Fatalf("chain of %d filters after %d ids: it did not grow", len(f.chain), stored)
	}
	for _, id := range ids[:100000] {
		if !f.add(id) {
			t.Fatalf("id %s added before is reported as new", id)
		}
	}
	const fresh = 200000
	passed := 0
	for range fresh {
		if f.add(uuidLike(rng)) {
			passed++
		}
	}
	if rate, limit := float64(passed)/fresh, float64(len(f.chain))*idFilterFP*1.2; rate > limit {
		t.Fatalf("%.4f of fresh ids passed the filter (%d filters), want at most %.4f", rate, len(f.chain), limit)
	}
}

// BenchmarkIDFilterAdd is the writer's cost per fresh id, with a filter sized for a log that
// held a million ids at open.
func BenchmarkIDFilterAdd(b *testing.B) {
	f := newIDFilter(1 << 20)
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = uuidLike(rng)
	}
	i := 0
	for b.Loop() {
		f.add(ids[i%len(ids)])
		if i++; i%len(ids) == 0 {
			b.StopTimer()
			f = newIDFilter(1 << 20)
			b.StartTimer()
		}
	}
}
