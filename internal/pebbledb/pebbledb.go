// Package pebbledb opens the embedded Pebble LSM stores that back dogear's event log and state,
// with the options both share: an explicit block cache and bloom filters on every level.
package pebbledb

import (
	"context"
	"fmt"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// Open opens (creating if needed) a Pebble store in dir. cacheBytes sizes the block cache: the
// 8 MB default reads several times slower than 256 MB on this workload.
func Open(dir string, cacheBytes int64) (*pebble.DB, error) {
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref() // the DB holds its own reference
	opts := &pebble.Options{
		Cache:        cache,
		MemTableSize: 64 << 20,
		// Point lookups (dedup by event id, state reads) mostly miss; bloom filters make a
		// miss cost one memory probe per file instead of a block read.
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             quietLogger{},
		// Rotate the manifest at every change so it never keeps a history of file boundary
		// keys: after an erasure no erased key may survive anywhere in the store (Scrub).
		MaxManifestFileSize: 1,
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return db, nil
}

// Scrub makes deleted data physically gone: it flushes the memtable, compacts every level
// (dropping deleted keys and their tombstones), and records one more change so the manifest
// rotates past the compaction's history. The caller then closes and reopens the store, at which
// point Pebble deletes the obsolete (and recycled) write-ahead logs, tables and manifests.
func Scrub(db *pebble.DB, marker []byte) error {
	if err := db.Flush(); err != nil {
		return err
	}
	// Twice: the first pass brings everything to the last level, where the second can drop
	// every tombstone (a tombstone survives a compaction whose output is not the last level).
	for range 2 {
		if err := db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff, 0xff, 0xff}, true); err != nil {
			return err
		}
	}
	if err := db.Set(marker, nil, pebble.Sync); err != nil {
		return err
	}
	return db.Flush()
}

// quietLogger drops Pebble's informational messages (WAL recovery, compactions) that would flood
// dogear's own log, and keeps errors and fatal ones.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	pebble.DefaultLogger.Errorf(format, args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	pebble.DefaultLogger.Fatalf(format, args...)
}

// FreeBytes is the space left for unprivileged writers on the file system holding dir.
func FreeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
