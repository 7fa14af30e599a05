package maintenance

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/datadir"
	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/state"
)

// fold is a processor over a data directory's stores that names books as its catalog does now:
// a rebuild so resolves every alias the catalog knows.
func fold(dir string, stores *datadir.Stores, into state.Store, logger *slog.Logger) (*processor.Processor, error) {
	cat, err := catalog.Load(dir)
	if err != nil {
		return nil, err
	}
	return processor.New(stores.Log, into, processor.Config{Canonical: cat.Canonical, Logger: logger}), nil
}

// Rebuild recomputes all state of the data directory from its log: the old state is removed and
// every partition is folded again from offset 0.
func Rebuild(ctx context.Context, dir string, o datadir.Options, logger *slog.Logger) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("no data directory %s: %w", dir, err)
	}
	if err := os.RemoveAll(datadir.StateDir(dir)); err != nil {
		return err
	}
	stores, err := datadir.Open(dir, o)
	if err != nil {
		return err
	}
	defer stores.Close()
	proc, err := fold(dir, stores, stores.State, logger)
	if err != nil {
		return err
	}
	return proc.CatchUp(ctx)
}

// Verify checks that live state equals a rebuild: it brings the state up to the end of the log,
// rebuilds a second state from the log in a scratch folder, and compares every key, value and
// partition offset. It returns a description of the first difference, or "" when equal.
func Verify(ctx context.Context, dir string, o datadir.Options, logger *slog.Logger) (string, error) {
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("no data directory %s: %w", dir, err)
	}
	stores, err := datadir.Open(dir, o)
	if err != nil {
		return "", err
	}
	defer stores.Close()
	live, err := fold(dir, stores, stores.State, logger)
	if err != nil {
		return "", err
	}
	if err := live.CatchUp(ctx); err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp(dir, "verify-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	fresh, err := state.OpenPebble(scratch, o.CacheBytes)
	if err != nil {
		return "", err
	}
	defer fresh.Close()
	rebuilt, err := fold(dir, stores, fresh, logger)
	if err != nil {
		return "", err
	}
	if err := rebuilt.CatchUp(ctx); err != nil {
		return "", err
	}
	for p := 0; p < stores.Log.Partitions(); p++ {
		a, _ := stores.State.Offset(p)
		b, _ := fresh.Offset(p)
		if a != b {
			return fmt.Sprintf("partition %d: live state at offset %d, rebuild at %d", p, a, b), nil
		}
	}
	return state.Diff(stores.State, fresh)
}

// DumpRecord is one line of `dogear dump`.
type DumpRecord struct {
	Partition int             `json:"partition"`
	Offset    int64           `json:"offset"`
	Event     json.RawMessage `json:"event"`
}

// Dump writes every record of the data directory's log as NDJSON, partition by partition in offset
// order, and returns how many it wrote.
func Dump(ctx context.Context, dir string, cacheBytes int64, w io.Writer) (int64, error) {
	log, err := datadir.OpenLog(dir, cacheBytes)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	var n int64
	for p := 0; p < log.Partitions(); p++ {
		err := eachRecord(ctx, log, p, func(r eventlog.Record) error {
			e, err := event.Decode(r.Value)
			if err != nil {
				return fmt.Errorf("partition %d offset %d: %w", p, r.Offset, err)
			}
			n++
			return enc.Encode(DumpRecord{Partition: p, Offset: r.Offset, Event: e.Marshal()})
		})
		if err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}
