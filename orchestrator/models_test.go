package orchestrator_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dogear-dev/dogear/objstore"
	"github.com/dogear-dev/dogear/orchestrator"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
)

// genres is reading with structure: reader r reads books of genre r%8 only, 30 books a genre.
func genres(rng *rand.Rand, readers, perReader int, at int64) map[string][]recommend.Interaction {
	out := map[string][]recommend.Interaction{}
	for r := range readers {
		reader := fmt.Sprintf("r%04d", r)
		for i, b := range rng.Perm(30)[:perReader] {
			out[reader] = append(out[reader], recommend.Interaction{Reader: reader, Book: fmt.Sprintf("g%d-%02d", r%8, b), Weight: 1, At: at + int64(i)})
		}
	}
	return out
}

func flatten(m map[string][]recommend.Interaction) []recommend.Interaction {
	var out []recommend.Interaction
	for _, l := range m {
		out = append(out, l...)
	}
	return out
}

// A promoted model that finds fewer of what readers go on to read than the one it replaced is
// rolled back after three intervals; one as good is kept.
func TestWorseModelIsRolledBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	train := flatten(genres(rng, 800, 8, 0))
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	good, err := reg.Save(recommend.TrainArtifact(train, recommend.DefaultParams), registry.Metrics{})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := reg.Save(recommend.TrainArtifact(train, recommend.ModelParams{Kind: "popularity"}), registry.Metrics{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Promote(bad); err != nil {
		t.Fatal(err)
	}
	// Each interval, 300 readers read on: their newest book comes after the last interval's.
	interval := func(k int) map[string][]recommend.Interaction {
		return genres(rng, 300, 9, int64(1000*(k+1)))
	}
	w := orchestrator.NewModelWatch(reg, bad, good, 100)
	for k := range 3 {
		back, err := w.Interval(interval(k))
		if err != nil {
			t.Fatal(err)
		}
		if back != (k == 2) {
			t.Fatalf("interval %d: rolled back %v\n%s", k+1, back, w.Summary())
		}
	}
	t.Log(w.Summary())
	if _, v := reg.Serving(); v != good {
		t.Fatalf("serving version %d after the rollback, want %d", v, good)
	}
	if s := w.Summary(); !strings.Contains(s, "interval 3 failed") || !strings.Contains(s, "McNemar p=") {
		t.Errorf("evidence:\n%s", s)
	}

	// The same model against itself: never rolled back.
	same := orchestrator.NewModelWatch(reg, good, good, 100_000)
	for k := range 5 {
		if back, err := same.Interval(interval(100 + k)); err != nil || back {
			t.Fatalf("an equal model rolled back (%v):\n%s", err, same.Summary())
		}
	}
}
