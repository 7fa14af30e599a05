package state

import (
	"encoding/binary"
	"errors"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/dogear-dev/dogear/internal/pebbledb"
)

// Pebble is the embedded Store. User keys live under "s", partition offsets under "o", so a
// Scan of every user key never sees bookkeeping.
type Pebble struct {
	dir   string
	cache int64
	// MinFreeBytes: commits fail with ErrNoSpace while the disk has less free space (see
	// eventlog.Pebble.MinFreeBytes); processors wait and retry.
	MinFreeBytes int64
	// mu guards db: every use holds it shared; Scrub closes and reopens db holding it alone.
	mu sync.RWMutex
	db *pebble.DB
}

// memTableBytes is a quarter of the default: every batch a processor commits rewrites its
// partition's counts, daily counts and the aggregates of the books it touched, and a memtable
// keeps each version until it is flushed. The queries that scan those records (platform stats,
// trending, book stats) stepped over every version: with 64 MiB, right after a million events,
// stats took 5–7 ms at the median; with 16 MiB, 0.6–0.7 ms, folding as fast (docs/benchmarks.md).
const memTableBytes = 16 << 20

// OpenPebble opens or creates the embedded state store in dir.
func OpenPebble(dir string, cacheBytes int64) (*Pebble, error) {
	db, err := pebbledb.Open(dir, cacheBytes, memTableBytes)
	if err != nil {
		return nil, err
	}
	return &Pebble{dir: dir, cache: cacheBytes, db: db}, nil
}

func userKey(k []byte) []byte { return append([]byte{'s'}, k...) }

// offsetKey holds a partition's next offset. Partition numbers are 32-bit: consumers of several
// topics (a local and a mirrored one) keep one offset per topic and partition.
func offsetKey(p int) []byte {
	return binary.BigEndian.AppendUint32([]byte{'o'}, uint32(p))
}

// Get implements Store.
func (s *Pebble) Get(key []byte) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, closer, err := s.db.Get(userKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

// Scan implements Store.
func (s *Pebble) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ub := []byte{'s' + 1} // the end of all user keys
	if upper != nil {
		ub = userKey(upper)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: userKey(lower), UpperBound: ub})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(it.Key()[1:], v); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return it.Error()
}

// Commit implements Store. It does not fsync unless the writes must be durable: the batch is
// atomic in the write-ahead log, so a crash loses at most a suffix of commits together with their
// offsets, and processors re-apply those events from the durable event log.
func (s *Pebble) Commit(partition int, offset int64, w *Writes) error {
	if s.MinFreeBytes > 0 {
		if free, err := pebbledb.FreeBytes(s.dir); err == nil && free < s.MinFreeBytes {
			return ErrNoSpace
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.db.NewBatch()
	defer b.Close()
	w.Sort()
	err := w.Each(func(k string, v []byte, del bool) error {
		if del {
			return b.Delete(userKey([]byte(k)), nil)
		}
		return b.Set(userKey([]byte(k)), v, nil)
	})
	if err != nil {
		return err
	}
	var off [8]byte
	binary.BigEndian.PutUint64(off[:], uint64(offset))
	if err := b.Set(offsetKey(partition), off[:], nil); err != nil {
		return err
	}
	if w.Durable() {
		return b.Commit(pebble.Sync)
	}
	return b.Commit(pebble.NoSync)
}

// Offset implements Store.
func (s *Pebble) Offset(partition int) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, closer, err := s.db.Get(offsetKey(partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return int64(binary.BigEndian.Uint64(v)), nil
}

// Close implements Store. It flushes the write-ahead log so a clean shutdown loses nothing.
func (s *Pebble) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Flush(); err != nil {
		s.db.Close()
		return err
	}
	return s.db.Close()
}

// Scrub makes deleted state physically gone from the store's files (pebbledb.Rewrite) while
// other users wait.
func (s *Pebble) Scrub() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db, err := pebbledb.Rewrite(s.db, s.dir, s.cache, memTableBytes)
	if db != nil {
		s.db = db
	}
	return err
}
