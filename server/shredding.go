package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/shred"
)

// shreddingRoutes serves export and erasure on the ingest role of distributed mode, where events
// in Kafka are sealed with their reader's key (package shred).
func (s *Server) shreddingRoutes(mux *http.ServeMux, log eventlog.Log, shredder *shred.Shredder) {
	mux.HandleFunc("GET /v1/readers/{id}/export", func(w http.ResponseWriter, r *http.Request) {
		reader := r.PathValue("id")
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "dogear-"+reader+".ndjson"))
		if err := exportSealed(r.Context(), log, shredder, reader, w); err != nil {
			s.cfg.Logger.Error("export failed", "err", err)
		}
	})
	mux.HandleFunc("DELETE /v1/readers/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !s.erasureAllowed(w) {
			return
		}
		reader := r.PathValue("id")
		done, found, err := eraseSealed(r.Context(), log, shredder, reader, s.cfg.ErasureWait)
		s.erasureDone(found)
		switch {
		case err != nil:
			httpjson.Fail(w, http.StatusInternalServerError, httpjson.Error{Error: err.Error()})
		case found && !done:
			httpjson.Write(w, http.StatusAccepted, map[string]any{"erased": reader, "found": true,
				"status": "the erasure marker is in the log; the reader is gone once the processor of their partition reaches it"})
		default:
			httpjson.Write(w, http.StatusOK, map[string]any{"erased": reader, "found": found})
		}
	})
}

// exportSealed writes every event of the reader in the log as NDJSON, as embedded export does.
// Only the reader's partition is read.
func exportSealed(ctx context.Context, log eventlog.Log, shredder *shred.Shredder, reader string, w http.ResponseWriter) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	p := eventlog.PartitionFor(reader, log.Partitions())
	end, err := log.End(p)
	if err != nil {
		return err
	}
	for off := int64(0); off < end; {
		recs, err := log.Read(ctx, p, off, 10_000)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			opened, err := shredder.Open(ctx, rec.Value)
			if err != nil {
				return err
			}
			if opened.Event == nil {
				continue // a marker, or another erased reader's record
			}
			e, err := event.Unmarshal(opened.Event)
			if err == nil && e.Reader == reader {
				enc.Encode(map[string]any{"kind": "event", "partition": p, "offset": rec.Offset, "event": json.RawMessage(opened.Event)})
			}
		}
		off = recs[len(recs)-1].Offset + 1
	}
	return bw.Flush()
}

// eraseSealed starts the reader's erasure (their key turns erasing, the marker goes into their
// partition) and waits up to wait for the processor of that partition to carry it out, which it
// does by erasing the reader from state and then deleting the key: from then on no copy of their
// events, in the topic, its mirrors or any backup, can be read. done reports whether that
// happened within wait.
func eraseSealed(ctx context.Context, log eventlog.Log, shredder *shred.Shredder, reader string, wait time.Duration) (done, found bool, err error) {
	marker, found, err := shredder.StartErasure(ctx, reader)
	if err != nil || !found {
		return !found, found, err
	}
	if _, err := log.Append(ctx, []eventlog.Entry{marker}); err != nil {
		return false, true, fmt.Errorf("appending the erasure marker: %w", err)
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		if _, err := shredder.Keys.Get(ctx, marker.Key); errors.Is(err, shred.ErrNoKey) {
			return true, true, nil
		}
		select {
		case <-ctx.Done():
			return false, true, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false, true, nil
}
