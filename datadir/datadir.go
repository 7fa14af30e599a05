// Package datadir is the layout of an embedded dogear data directory: it opens the event log and
// state kept there and names the folders of the kosync store, archive and model registry.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/state"
)

// Folders of a data directory, besides the log and state.
const (
	Kosync  = "kosync"
	Archive = "archive"
	Models  = "models"
)

// Options are how the stores are opened.
type Options struct {
	// Partitions of a new log (0: the stored count, or eventlog.DefaultPartitions).
	Partitions int
	// CacheBytes is the block cache of each store.
	CacheBytes int64
	// MinFreeBytes: below this much free disk the log refuses appends, and state below half of
	// it refuses commits, so the stores never hit a full disk (which Pebble treats as fatal).
	MinFreeBytes int64
}

// Stores are the opened log and state of a data directory.
type Stores struct {
	Log   *eventlog.Pebble
	State *state.Pebble
}

// Open opens, creating them when new, the log and state under dir.
func Open(dir string, o Options) (*Stores, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	log, err := eventlog.OpenPebble(filepath.Join(dir, "log"), o.Partitions, o.CacheBytes)
	if err != nil {
		return nil, err
	}
	st, err := state.OpenPebble(StateDir(dir), o.CacheBytes)
	if err != nil {
		log.Close()
		return nil, err
	}
	log.MinFreeBytes = o.MinFreeBytes
	st.MinFreeBytes = o.MinFreeBytes / 2 // processing may go on a little longer than ingest
	return &Stores{Log: log, State: st}, nil
}

// OpenLog opens only the log under dir, which must exist.
func OpenLog(dir string, cacheBytes int64) (*eventlog.Pebble, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("no data directory %s: %w", dir, err)
	}
	return eventlog.OpenPebble(filepath.Join(dir, "log"), 0, cacheBytes)
}

// StateDir is the folder of the state under dir: all of it can be rebuilt from the log.
func StateDir(dir string) string { return filepath.Join(dir, "state") }

// Close closes both stores.
func (s *Stores) Close() error { return errors.Join(s.State.Close(), s.Log.Close()) }
