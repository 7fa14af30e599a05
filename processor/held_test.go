package processor_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/state"
)

// refusingStore is the real Pebble store that refuses the next commit of one slot, as a full
// disk does (state.ErrNoSpace, nothing written), once armed with it.
type refusingStore struct {
	*state.Pebble
	armed atomic.Int64 // the slot + 1; 0 when disarmed
}

func (s *refusingStore) Commit(slot int, offset int64, w *state.Writes) error {
	if s.armed.CompareAndSwap(int64(slot)+1, 0) {
		return state.ErrNoSpace
	}
	return s.Pebble.Commit(slot, offset, w)
}

// TestHeldRecordsFollowErasuresAndRefusedCommits runs one processor through two waves of events
// with an erasure between them. The processor holds its partitions' records decoded from batch
// to batch (insights.Folder), so it must drop them after a refused commit, whose batch it folds
// again (in the first wave), and after the erasure, which rewrites the erased reader's share of
// their books' and days' aggregates. The refusal is in the first wave, so that dropping the
// records after it cannot hide records kept past the erasure. In the end the state must equal
// one folded once from the same events without the erased reader.
func TestHeldRecordsFollowErasuresAndRefusedCommits(t *testing.T) {
	ctx := context.Background()
	all := entries(t, 4000, 11)
	erased := all[0].Key
	var second, kept []eventlog.Entry // the second wave; every event but the erased reader's
	for i, e := range all {
		if e.Key == erased {
			continue
		}
		kept = append(kept, e)
		if i >= 2000 {
			second = append(second, e)
		}
	}

	log, st := openStores(t, 4)
	store := &refusingStore{Pebble: st}
	p := processor.New(log, store, processor.Config{Logger: quiet})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()

	part := eventlog.PartitionFor(erased, log.Partitions())
	store.armed.Store(int64(part) + 1)
	if _, err := log.Append(ctx, all[:2000]); err != nil {
		t.Fatal(err)
	}
	waitOffsets(t, store, map[int]eventlog.Log{0: log})
	if store.armed.Load() != 0 {
		t.Fatal("no commit was refused: the test proved less than it says")
	}
	if found, err := p.Erase(ctx, erased); err != nil || !found {
		t.Fatalf("erasing %s: found %v, %v", erased, found, err)
	}
	if _, err := log.Append(ctx, second); err != nil {
		t.Fatal(err)
	}
	waitOffsets(t, store, map[int]eventlog.Log{0: log})
	cancel()
	if err := <-done; err != nil && err != context.Canceled {
		t.Fatal(err)
	}

	refLog, ref := openStores(t, 4)
	if _, err := refLog.Append(ctx, kept); err != nil {
		t.Fatal(err)
	}
	if err := processor.New(refLog, ref, processor.Config{Logger: quiet}).CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if diff, err := state.Diff(st, ref); err != nil || diff != "" {
		t.Fatalf("state differs from the events folded once without %s: %s %v", erased, diff, err)
	}
}
