// Package pebbledb opens the embedded Pebble LSM stores that back dogear's event log and state,
// with the options both share: an explicit block cache and bloom filters on every level.
package pebbledb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// DefaultMemTableBytes is the memtable size of a store whose keys are mostly written once.
const DefaultMemTableBytes = 64 << 20

// Open opens (creating if needed) a Pebble store in dir. cacheBytes sizes the block cache: the
// 8 MB default reads several times slower than 256 MB on this workload. memTableBytes sizes each
// memtable (DefaultMemTableBytes unless the store rewrites the same keys often: a memtable keeps
// every version of a key until it is flushed, and a scan steps over each). A Rewrite that a
// crash interrupted is finished or rolled back first (see Rewrite).
func Open(dir string, cacheBytes int64, memTableBytes uint64) (*pebble.DB, error) {
	interrupted, err := recoverRewrite(dir)
	if err != nil {
		return nil, err
	}
	db, err := open(dir, cacheBytes, memTableBytes, false)
	if err != nil || !interrupted {
		return db, err
	}
	return Rewrite(db, dir, cacheBytes, memTableBytes)
}

func open(dir string, cacheBytes int64, memTableBytes uint64, disableWAL bool) (*pebble.DB, error) {
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref() // the DB holds its own reference
	opts := &pebble.Options{
		Cache:        cache,
		MemTableSize: memTableBytes,
		// Point lookups (dedup by event id, state reads) mostly miss; bloom filters make a
		// miss cost one memory probe per file instead of a block read.
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             quietLogger{},
		DisableWAL:         disableWAL,
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if errors.Is(err, syscall.EAGAIN) {
		return nil, fmt.Errorf("store %s is in use by %s: stop it first (dogear dump and rebuild need the server stopped; a running server exports through GET /v1/readers/{id}/export)", dir, lockHolder(dir))
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return db, nil
}

// lockHolder names the process that holds the store's LOCK file open, from /proc (Linux), or
// says that another process does.
func lockHolder(dir string) string {
	lock, err := filepath.Abs(filepath.Join(dir, "LOCK"))
	if err != nil {
		return "another process"
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && target == lock {
			pid := strings.Split(fd, "/")[2]
			cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			return fmt.Sprintf("process %s (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")))
		}
	}
	return "another process"
}

// Rewrite makes deleted data physically gone: it copies every live key of db into a new store
// beside dir, closes db, puts the copy in dir's place and opens it. Compaction cannot promise
// this: Pebble moves a file that overlaps nothing below it to the last level unchanged, so
// tombstones (which hold the deleted keys) can stay in live tables, and every manifest keeps the
// bounds of the tables it has seen. A copy has neither: its tables hold only live keys, its
// manifest only its own tables, and the old directory's files (tables, write-ahead logs,
// manifests) are deleted. The cost is one read and one write of the store.
//
// On error before db is closed, db is returned as it was. A crash part-way is finished or rolled
// back by the next Open, which then rewrites again, so the erasure is never left half-done.
func Rewrite(db *pebble.DB, dir string, cacheBytes int64, memTableBytes uint64) (*pebble.DB, error) {
	next, old := dir+".rewrite", dir+".old"
	if err := os.RemoveAll(next); err != nil {
		return db, err
	}
	if err := copyLive(db, next, cacheBytes); err != nil {
		os.RemoveAll(next)
		return db, fmt.Errorf("rewrite %s: %w", dir, err)
	}
	if err := db.Close(); err != nil {
		os.RemoveAll(next)
		return nil, err
	}
	if err := os.Rename(dir, old); err != nil {
		return nil, err
	}
	if err := os.Rename(next, dir); err != nil {
		return nil, err
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(old); err != nil {
		return nil, err
	}
	return open(dir, cacheBytes, memTableBytes, false)
}

// copyLive writes every live key and value of db into a new store in dir, durably.
func copyLive(db *pebble.DB, dir string, cacheBytes int64) error {
	// No write-ahead log for the copy: it is flushed whole before it counts.
	dst, err := open(dir, min(cacheBytes, 8<<20), DefaultMemTableBytes, true)
	if err != nil {
		return err
	}
	it, err := db.NewIter(nil)
	if err != nil {
		dst.Close()
		return err
	}
	b := dst.NewBatch()
	for ok := it.First(); ok && err == nil; ok = it.Next() {
		var v []byte
		if v, err = it.ValueAndErr(); err != nil {
			break
		}
		b.Set(it.Key(), v, nil)
		if b.Len() >= 4<<20 {
			err = b.Commit(pebble.NoSync)
			b = dst.NewBatch()
		}
	}
	err = errors.Join(err, it.Close())
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err == nil {
		err = dst.Flush()
	}
	return errors.Join(err, dst.Close())
}

// recoverRewrite finishes or undoes a Rewrite of dir that a crash interrupted, and reports
// whether one was (the erasure it served must then be rewritten again).
func recoverRewrite(dir string) (bool, error) {
	next, old := dir+".rewrite", dir+".old"
	_, errDir := os.Stat(dir)
	_, errNext := os.Stat(next)
	switch {
	case errNext == nil && errors.Is(errDir, os.ErrNotExist):
		// Crashed between the two renames: the copy is complete; put it in place.
		if err := os.Rename(next, dir); err != nil {
			return false, err
		}
	case errNext == nil:
		// Crashed while copying: the copy may be partial, the original is whole.
		if err := os.RemoveAll(next); err != nil {
			return false, err
		}
		return true, nil
	}
	if _, err := os.Stat(old); err == nil {
		return true, os.RemoveAll(old) // crashed before the old files were deleted
	}
	return false, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
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
