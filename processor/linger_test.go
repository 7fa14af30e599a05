package processor_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/state"
)

// countingStore is the real Pebble store that counts its commits.
type countingStore struct {
	*state.Pebble
	commits atomic.Int64
}

func (s *countingStore) Commit(slot int, offset int64, w *state.Writes) error {
	s.commits.Add(1)
	return s.Pebble.Commit(slot, offset, w)
}

// TestLingerGathersATrickleIntoOneCommit: with Config.Linger, events that trickle in after a
// commit are folded together once the linger has passed, not one commit each; an event after a
// quiet spell is folded at once, and so is a backlog of full batches.
func TestLingerGathersATrickleIntoOneCommit(t *testing.T) {
	const linger = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, st := openStores(t, 1)
	store := &countingStore{Pebble: st}
	p := processor.New(log, store, processor.Config{Logger: quiet, Linger: linger})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	all := entries(t, 21+3*processor.BatchSize, 17)
	// folded appends es, one at a time gap apart (all at once when gap is 0), and returns how
	// long they took to be committed.
	folded := func(es []eventlog.Entry, gap time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for len(es) > 0 {
			n := len(es)
			if gap > 0 {
				n = 1
			}
			if _, err := log.Append(ctx, es[:n]); err != nil {
				t.Fatal(err)
			}
			es = es[n:]
			time.Sleep(gap)
		}
		end, _ := log.End(0)
		for off, _ := st.Offset(0); off < end; off, _ = st.Offset(0) {
			if time.Since(start) > 4*linger {
				t.Fatalf("offset %d of %d committed after %v", off, end, time.Since(start))
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}

	if took := folded(all[:1], 0); took > linger/2 {
		t.Errorf("the first event, after a quiet spell, took %v to be folded; want it at once, not after the %v linger", took, linger)
	}
	before := store.commits.Load()
	folded(all[1:21], 10*time.Millisecond)
	if n := store.commits.Load() - before; n > 2 {
		t.Errorf("20 events trickling in over 200 ms took %d commits; want them gathered into one or two", n)
	}
	// Three full batches right after a commit: no linger before or between them.
	if took := folded(all[21:], 0); took > linger/2 {
		t.Errorf("three full batches took %v to be folded; want them at once, not after the %v linger", took, linger)
	}
}
