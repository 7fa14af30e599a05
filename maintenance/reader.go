package maintenance

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dogear-dev/dogear/archive"
	"github.com/dogear-dev/dogear/datadir"
	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/kosync"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/shred"
)

// Erasure is what erasing a reader found and did.
type Erasure struct {
	// Found: something of the reader was held.
	Found bool
	// Pending: the erasure is under way and completes without further requests (distributed
	// mode: the processor of the reader's partition has not reached the marker yet).
	Pending bool
}

// Embedded is everything an embedded process holds about its readers.
type Embedded struct {
	Stores    *datadir.Stores
	Processor *processor.Processor
	Archive   *archive.Archiver
	Kosync    *kosync.Server
	// Recommend gives the reader's current recommendations, for the export.
	Recommend func(reader string) (any, error)
}

// Export streams everything dogear holds about a reader as NDJSON, one object per line with a
// "kind": every event in the log, insights, books, recommendations, and kosync data.
func (h Embedded) Export(ctx context.Context, reader string, w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	p := eventlog.PartitionFor(reader, h.Stores.Log.Partitions())
	err := eachRecord(ctx, h.Stores.Log, p, func(r eventlog.Record) error {
		if e, err := event.Decode(r.Value); err == nil && e.Reader == reader {
			return enc.Encode(exportedEvent(p, r.Offset, &e))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if ins, err := insights.ForReader(h.Stores.State, reader, time.Now(), 366); err == nil {
		enc.Encode(map[string]any{"kind": "insights", "insights": ins})
	} else if !errors.Is(err, insights.ErrNotFound) {
		return err
	}
	if books, err := insights.Books(h.Stores.State, reader); err == nil {
		enc.Encode(map[string]any{"kind": "books", "books": books})
	}
	if recs, err := h.Recommend(reader); err == nil {
		enc.Encode(map[string]any{"kind": "recommendations", "recommendations": recs})
	}
	accounts, err := h.Kosync.ExportReader(reader)
	if err != nil {
		return err
	}
	for _, a := range accounts {
		enc.Encode(map[string]any{"kind": "kosync", "account": a.Username, "progress": a.Progress})
	}
	return bw.Flush()
}

func exportedEvent(p int, offset int64, e *event.Event) map[string]any {
	return map[string]any{"kind": "event", "partition": p, "offset": offset, "event": json.RawMessage(e.Marshal())}
}

// Erase removes a reader from the event log, state (their records and their share of every
// aggregate), the Parquet archive and the kosync store, records the erasure (by a hash of the id)
// so replays cannot bring them back, and rewrites the stores so no byte of them remains in the
// files. When nothing of the reader was held (a repeated erasure) the stores are not rewritten,
// which makes a repeat cheap. The caller retrains the recommender when something was found.
func (h Embedded) Erase(ctx context.Context, reader string) (Erasure, error) {
	inLog, err := h.Processor.Erase(ctx, reader)
	if err != nil {
		return Erasure{}, fmt.Errorf("erasing from log and state: %w", err)
	}
	archived, err := h.Archive.EraseReader(ctx, reader)
	if err != nil {
		return Erasure{Found: true}, fmt.Errorf("erasing from the archive: %w", err)
	}
	synced, err := h.Kosync.EraseReader(reader)
	if err != nil {
		return Erasure{Found: true}, fmt.Errorf("erasing from kosync: %w", err)
	}
	if !inLog && archived == 0 && !synced {
		return Erasure{}, nil
	}
	if err := h.Stores.Log.Scrub(); err != nil {
		return Erasure{Found: true}, fmt.Errorf("scrubbing the log: %w", err)
	}
	if err := h.Stores.State.Scrub(); err != nil {
		return Erasure{Found: true}, fmt.Errorf("scrubbing state: %w", err)
	}
	return Erasure{Found: true}, nil
}

// Sealed is a log whose events are sealed with their reader's key (package shred): distributed
// mode, where a reader is erased by deleting their key (crypto-shredding).
type Sealed struct {
	Log      eventlog.Log
	Shredder *shred.Shredder
	// Wait is how long Erase waits for the processor of the reader's partition to carry the
	// erasure out before reporting it pending.
	Wait time.Duration
}

// Export writes every event of the reader in the log as NDJSON, as the embedded export does.
// Only the reader's partition is read.
func (h Sealed) Export(ctx context.Context, reader string, w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	p := eventlog.PartitionFor(reader, h.Log.Partitions())
	err := eachRecord(ctx, h.Log, p, func(r eventlog.Record) error {
		opened, err := h.Shredder.Open(ctx, r.Value)
		if err != nil || opened.Event == nil {
			return err // nil for a marker, or another erased reader's record
		}
		if e, err := event.Decode(opened.Event); err == nil && e.Reader == reader {
			return enc.Encode(exportedEvent(p, r.Offset, &e))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// Erase starts the reader's erasure (their key turns erasing, the marker goes into their
// partition) and waits up to h.Wait for the processor of that partition to carry it out, which it
// does by erasing the reader from state and then deleting the key: from then on no copy of their
// events, in the topic, its mirrors or any backup, can be read.
func (h Sealed) Erase(ctx context.Context, reader string) (Erasure, error) {
	marker, found, err := h.Shredder.StartErasure(ctx, reader)
	if err != nil || !found {
		return Erasure{Found: found}, err
	}
	if _, err := h.Log.Append(ctx, []eventlog.Entry{marker}); err != nil {
		return Erasure{Found: true}, fmt.Errorf("appending the erasure marker: %w", err)
	}
	for deadline := time.Now().Add(h.Wait); time.Now().Before(deadline); {
		if _, err := h.Shredder.Keys.Get(ctx, marker.Key); errors.Is(err, shred.ErrNoKey) {
			return Erasure{Found: true}, nil
		}
		select {
		case <-ctx.Done():
			return Erasure{Found: true}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return Erasure{Found: true, Pending: true}, nil
}
