package state_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/dogear-dev/dogear/state"
)

// TestPartitionedHandoff hands one partition back and forth while another is read, through the
// store of all partitions and through the partition's own store: a reader never meets a store
// closed under it (Pebble panics on that), and each partition's store holds only its own keys.
func TestPartitionedHandoff(t *testing.T) {
	s, err := state.OpenPartitioned(t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	own := map[int]state.Store{}
	for p := range 2 {
		if own[p], err = s.Acquire(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		var w state.Writes
		w.Put(fmt.Appendf(nil, "key-of-%d", p), []byte("v"))
		if err := s.Commit(p, 7, &w); err != nil {
			t.Fatal(err)
		}
	}
	if _, found, _ := own[0].Get([]byte("key-of-1")); found {
		t.Fatal("partition 0's store answers for a key of partition 1")
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		for range 200 {
			if err := s.Release(1); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Acquire(t.Context(), 1); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 2000 {
		if _, found, err := s.Get([]byte("key-of-0")); err != nil || !found {
			t.Fatalf("a key of the held partition 0: found %v, %v", found, err)
		}
		// A key no partition holds is looked up in every open store, partition 1's too.
		if _, found, err := s.Get([]byte("key-of-none")); err != nil || found {
			t.Fatalf("a key of no partition: found %v, %v", found, err)
		}
		n := 0
		if err := s.Scan(nil, nil, func(k, _ []byte) error { n++; return nil }); err != nil || n == 0 {
			t.Fatalf("a scan of every open partition saw %d keys: %v", n, err)
		}
		if off, err := own[0].Offset(0); err != nil || off != 7 {
			t.Fatalf("partition 0's offset: %d, %v", off, err)
		}
	}
	wg.Wait()
}
