package processor_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/state"
)

// overlapStore is the real Pebble store that counts how many commits run at once, each made to
// last a while so that concurrent batches overlap.
type overlapStore struct {
	*state.Pebble
	now, most atomic.Int64
}

func (s *overlapStore) Commit(slot int, offset int64, w *state.Writes) error {
	n := s.now.Add(1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	time.Sleep(20 * time.Millisecond)
	s.now.Add(-1)
	return s.Pebble.Commit(slot, offset, w)
}

// TestFoldingLeavesACoreToAcknowledgements folds four partitions on two cores: while ingest
// requests are in flight (Config.Busy), one batch at a time, so that a core is left to them;
// otherwise two, one per core.
func TestFoldingLeavesACoreToAcknowledgements(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	all := entries(t, 2000, 13)
	for _, c := range []struct {
		busy bool
		want int64
	}{{true, 1}, {false, 2}} {
		log, st := openStores(t, 4)
		if _, err := log.Append(context.Background(), all); err != nil {
			t.Fatal(err)
		}
		store := &overlapStore{Pebble: st}
		p := processor.New(log, store, processor.Config{Logger: quiet, Busy: func() bool { return c.busy }})
		if err := p.CatchUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := store.most.Load(); got != c.want {
			t.Errorf("busy %v: %d batches folded at once, want %d", c.busy, got, c.want)
		}
	}
}
