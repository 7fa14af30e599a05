package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Partitioned keeps each log partition's state in its own embedded store under one folder
// (p00000, p00001, ...), opened only by the process that owns the partition: Pebble's directory
// lock makes ownership exclusive, and a killed owner's lock goes with it. Processes of a Kafka
// consumer group on one machine (or one shared volume) can so hand partitions to each other with
// their state and offsets, as they would through Cassandra. Offsets of partition p, of any topic,
// live in p's store (slot % SlotStride = p).
type Partitioned struct {
	dir   string
	cache int64

	// mu is held for reading while an open store is read, so that Release cannot close a store
	// under a reader of another partition (the api role reads across every open partition).
	mu   sync.RWMutex
	open map[int]*Pebble
}

// SlotStride separates topics in offset slots: slot = topic index × SlotStride + partition.
const SlotStride = 1 << 16

// OpenPartitioned opens the folder; partition stores open on first use.
func OpenPartitioned(dir string, cacheBytes int64) (*Partitioned, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Partitioned{dir: dir, cache: cacheBytes, open: map[int]*Pebble{}}, nil
}

// Acquire implements Handoff: it opens partition p's store, waiting for a previous holder (whose
// directory lock keeps it closed to others) to let go.
func (s *Partitioned) Acquire(ctx context.Context, p int) (Store, error) {
	for {
		s.mu.Lock()
		if db, ok := s.open[p]; ok {
			s.mu.Unlock()
			return db, nil
		}
		db, err := OpenPebble(filepath.Join(s.dir, fmt.Sprintf("p%05d", p)), s.cache)
		if err == nil {
			s.open[p] = db
		}
		s.mu.Unlock()
		if err == nil {
			return db, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("partition %d state is still held by another process: %w", p, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Release implements Handoff: it closes partition p's store so another process can take it.
func (s *Partitioned) Release(p int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, ok := s.open[p]
	if !ok {
		return nil
	}
	delete(s.open, p)
	return db.Close()
}

// stores returns the open stores in partition order. Callers hold s.mu for reading.
func (s *Partitioned) stores() []*Pebble {
	ps := make([]int, 0, len(s.open))
	for p := range s.open {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	out := make([]*Pebble, len(ps))
	for i, p := range ps {
		out[i] = s.open[p]
	}
	return out
}

// Get implements Store over the open partitions: a key belongs to exactly one partition.
func (s *Partitioned) Get(key []byte) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, db := range s.stores() {
		if v, ok, err := db.Get(key); err != nil || ok {
			return v, ok, err
		}
	}
	return nil, false, nil
}

// Scan implements Store over the open partitions, merging them in key order.
func (s *Partitioned) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	type kv struct{ k, v []byte }
	var all []kv
	s.mu.RLock()
	for _, db := range s.stores() {
		err := db.Scan(lower, upper, func(k, v []byte) error {
			all = append(all, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		})
		if err != nil {
			s.mu.RUnlock()
			return err
		}
	}
	s.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return bytes.Compare(all[i].k, all[j].k) < 0 })
	for _, e := range all {
		if err := fn(e.k, e.v); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func (s *Partitioned) owner(slot int) (*Pebble, error) {
	s.mu.RLock()
	db, ok := s.open[slot%SlotStride]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("partition %d is not owned by this process", slot%SlotStride)
	}
	return db, nil
}

// Commit implements Store: writes and offset go to the slot's partition store, atomically.
func (s *Partitioned) Commit(slot int, offset int64, w *Writes) error {
	db, err := s.owner(slot)
	if err != nil {
		return err
	}
	return db.Commit(slot, offset, w)
}

// Offset implements Store.
func (s *Partitioned) Offset(slot int) (int64, error) {
	db, err := s.owner(slot)
	if err != nil {
		return 0, err
	}
	return db.Offset(slot)
}

// Close implements Store.
func (s *Partitioned) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, db := range s.stores() {
		errs = append(errs, db.Close())
	}
	s.open = map[int]*Pebble{}
	return errors.Join(errs...)
}
