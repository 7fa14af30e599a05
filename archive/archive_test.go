package archive_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/archive"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/objstore/objstoretest"
)

// TestArchiveExactlyOnceAcrossCrash: every event of the log is in the Parquet files exactly once,
// read back with parquet-go, even when the archiver crashed after writing files but before
// recording its progress.
func TestArchiveExactlyOnceAcrossCrash(t *testing.T) {
	for name, store := range objstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			log, err := eventlog.OpenPebble(t.TempDir(), 4, 8<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close()
			end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
			events := loadgen.New(loadgen.Config{Readers: 40, Books: 20, Seed: 3, Start: end.Add(-3 * 24 * time.Hour), End: end}).Batch(3000)
			appendLog := func(evs []eventlogEntry) {
				if _, err := log.Append(ctx, evs); err != nil {
					t.Fatal(err)
				}
			}
			var entries []eventlogEntry
			for i := range events {
				entries = append(entries, eventlogEntry{ID: events[i].ID, Key: events[i].Reader, Value: events[i].Encode()})
			}
			appendLog(entries[:2000])
			a := &archive.Archiver{Log: log, Store: store, ChunkSize: 250, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if _, err := a.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			// A crash after the files of the next chunks were written, before the cursors moved:
			// put the cursors back, as if they had never been written.
			appendLog(entries[2000:])
			cursors := map[string][]byte{}
			keys, _ := store.List(ctx, "_cursors/")
			for _, k := range keys {
				cursors[k], _ = store.Get(ctx, k)
			}
			if _, err := a.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			for k, v := range cursors {
				store.Put(ctx, k, v)
			}
			if _, err := a.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}

			seen := map[string]int{}
			files, _ := store.List(ctx, "dt=")
			for _, f := range files {
				data, err := store.Get(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				rows, err := archive.Decode(data)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				for _, r := range rows {
					seen[r.ID]++
					if want := fmt.Sprintf("dt=%s/hour=%02d/", r.Time.UTC().Format("2006-01-02"), r.Time.UTC().Hour()); f[:len(want)] != want {
						t.Fatalf("row at %v in %s", r.Time, f)
					}
				}
			}
			for _, e := range events {
				if seen[e.ID] != 1 {
					t.Fatalf("event %s is in the archive %d times", e.ID, seen[e.ID])
				}
			}
			if len(seen) != len(events) {
				t.Fatalf("%d rows, %d events", len(seen), len(events))
			}

			// Erasure rewrites the reader's files without them.
			reader := events[0].Reader
			if _, err := a.EraseReader(ctx, reader); err != nil {
				t.Fatal(err)
			}
			files, _ = store.List(ctx, "dt=")
			left := 0
			for _, f := range files {
				data, _ := store.Get(ctx, f)
				rows, _ := archive.Decode(data)
				for _, r := range rows {
					if r.Reader == reader {
						t.Fatalf("erased reader still in %s", f)
					}
					left++
				}
			}
			if left == 0 || left >= len(events) {
				t.Fatalf("%d rows left after erasing one reader of %d events", left, len(events))
			}
		})
	}
}

type eventlogEntry = eventlog.Entry
