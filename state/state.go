// Package state is the store processors fold events into: ordered keys and values, with each
// partition's applied log offset written atomically with the state changes it covers.
package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Store is the seam between processors and the state they build. Implementations: Pebble
// (embedded) and Cassandra.
type Store interface {
	// Get returns the value of key, or ok=false when it has none.
	Get(key []byte) (value []byte, ok bool, err error)
	// Scan calls fn for every key in [lower, upper), in key order; a nil upper means no bound.
	// The slices are valid only during the call. fn returning ErrStop ends the scan early
	// without error.
	Scan(lower, upper []byte, fn func(key, value []byte) error) error
	// Commit applies the writes and records that the log's slot has been applied up to (not
	// including) offset, atomically: after a crash either both are visible or neither is. A slot
	// is a partition of the log; a consumer of several topics (a local and a mirrored one) keeps
	// one per topic and partition (SlotStride).
	Commit(slot int, offset int64, w *Writes) error
	// Offset is the next log offset the slot must apply (0 for a new store).
	Offset(slot int) (int64, error)
	Close() error
}

// Handoff is a Store whose partitions are held by one process at a time (Partitioned): a
// processor acquires a partition's state before folding it and releases it when the partition
// goes to another process. Stores every process shares (Pebble, Cassandra) need no handoff.
type Handoff interface {
	Store
	// Acquire takes partition p's state, waiting until its previous holder let go or ctx ends,
	// and returns it alone: the partition's folds read and commit there, not across every open
	// partition. It stays open until Release.
	Acquire(ctx context.Context, p int) (Store, error)
	// Release lets partition p's state go to another process.
	Release(p int) error
}

// ScanPrefix calls fn for every key that starts with prefix, in key order.
func ScanPrefix(s Reader, prefix []byte, fn func(key, value []byte) error) error {
	return s.Scan(prefix, PrefixEnd(prefix), fn)
}

// Reader is the read side of a Store, all that queries need.
type Reader interface {
	Get(key []byte) (value []byte, ok bool, err error)
	Scan(lower, upper []byte, fn func(key, value []byte) error) error
}

// PrefixEnd is the smallest key greater than every key with the prefix (nil if there is none).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// ErrNoSpace means the disk is too full to commit; nothing was written.
var ErrNoSpace = errors.New("state: too little free disk space to commit")

// ErrStop ends a Scan early.
var ErrStop = errors.New("stop scan")

// Writes is an ordered set of puts and deletes. A later write to the same key replaces an earlier
// one. The zero value is ready to use.
type Writes struct {
	ops     map[string]write
	order   []string
	durable bool
}

// write is one pending write, held in the map by value so that a put allocates nothing for it.
type write struct {
	value   []byte
	deleted bool
}

// MustBeDurable asks Commit not to return before the writes would survive a crash of the
// machine. Most commits need not be: the log replays what a crash loses. An erasure must be,
// because the reader's key is deleted after it, and the log can then no longer replay it.
func (w *Writes) MustBeDurable() { w.durable = true }

// Durable reports whether MustBeDurable was called since the last Reset.
func (w *Writes) Durable() bool { return w.durable }

// Put sets key to value.
func (w *Writes) Put(key, value []byte) { w.set(string(key), write{value: value}) }

// Delete removes key.
func (w *Writes) Delete(key []byte) { w.set(string(key), write{deleted: true}) }

func (w *Writes) set(k string, v write) {
	if w.ops == nil {
		w.ops = make(map[string]write)
	}
	if _, ok := w.ops[k]; !ok {
		w.order = append(w.order, k)
	}
	w.ops[k] = v
}

// Lookup returns a pending write for key: found says whether there is one, and deleted whether it
// is a delete. Processors read their own pending writes through it before the store.
func (w *Writes) Lookup(key []byte) (value []byte, found, deleted bool) {
	v, ok := w.ops[string(key)]
	return v.value, ok, v.deleted
}

// Each calls fn for each write in first-write order; value is nil for a delete.
func (w *Writes) Each(fn func(key string, value []byte, del bool) error) error {
	for _, k := range w.order {
		v := w.ops[k]
		if err := fn(k, v.value, v.deleted); err != nil {
			return err
		}
	}
	return nil
}

// Sort puts the writes in key order for Each. A Pebble memtable inserts a batch's keys in the
// batch's order, and starts each search from where the last insert was when the key lies near
// it: sorted, a batch's keys of one reader or one book are found from their neighbours instead
// of from the top of the skiplist.
func (w *Writes) Sort() { slices.Sort(w.order) }

// Len is the number of distinct keys written.
func (w *Writes) Len() int { return len(w.order) }

// Reset empties w for reuse.
func (w *Writes) Reset() {
	clear(w.ops)
	w.order = w.order[:0]
	w.durable = false
}

// Overlay reads Base through pending Writes, so that a fold sees its own uncommitted writes.
type Overlay struct {
	Base   Reader
	Writes *Writes
}

// Get returns the pending write for key, if any, and otherwise Base's value.
func (o Overlay) Get(key []byte) ([]byte, bool, error) {
	if v, found, del := o.Writes.Lookup(key); found {
		return v, !del, nil
	}
	return o.Base.Get(key)
}

// Put adds a pending write.
func (o Overlay) Put(key, value []byte) { o.Writes.Put(key, value) }

// Delete adds a pending delete.
func (o Overlay) Delete(key []byte) { o.Writes.Delete(key) }

// Diff compares every key and value of two stores and describes the first difference, or
// returns "" when they hold the same data.
func Diff(a, b Reader) (string, error) {
	type kv struct{ k, v string }
	next := make(chan kv, 1024)
	errc := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(next)
		errc <- b.Scan(nil, nil, func(k, v []byte) error {
			select {
			case next <- kv{string(k), string(v)}:
				return nil
			case <-stop:
				return ErrStop
			}
		})
	}()
	var diff string
	n := 0
	err := a.Scan(nil, nil, func(k, v []byte) error {
		n++
		other, ok := <-next
		switch {
		case !ok:
			diff = fmt.Sprintf("key %q only in the first store", k)
		case other.k != string(k):
			diff = fmt.Sprintf("key %d differs: %q in the first store, %q in the second", n, k, other.k)
		case other.v != string(v):
			diff = fmt.Sprintf("key %q: value %q in the first store, %q in the second", k, v, other.v)
		default:
			return nil
		}
		return ErrStop
	})
	if err != nil || diff != "" {
		return diff, err
	}
	if other, ok := <-next; ok {
		return fmt.Sprintf("key %q only in the second store", other.k), nil
	}
	return "", <-errc
}
