package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/trainer"
)

// Export streams everything dogear holds about a reader as NDJSON, one object per line with a
// "kind": every event in the log, insights, books, recommendations, and kosync data.
func (s *Server) Export(ctx context.Context, reader string, w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	p := eventlog.PartitionFor(reader, s.stores.Log.Partitions())
	var probe struct {
		Reader string `json:"reader"`
	}
	for off := int64(0); ; {
		recs, err := s.stores.Log.Read(ctx, p, off, 10_000)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			probe.Reader = ""
			if json.Unmarshal(r.Value, &probe) == nil && probe.Reader == reader {
				enc.Encode(map[string]any{"kind": "event", "partition": p, "offset": r.Offset, "event": json.RawMessage(r.Value)})
			}
		}
		off = recs[len(recs)-1].Offset + 1
	}
	now := time.Now()
	if ins, err := insights.ForReader(s.stores.State, reader, now, 366); err == nil {
		enc.Encode(map[string]any{"kind": "insights", "insights": ins})
	} else if !errors.Is(err, insights.ErrNotFound) {
		return err
	}
	if books, err := insights.Books(s.stores.State, reader); err == nil {
		enc.Encode(map[string]any{"kind": "books", "books": books})
	}
	if recs, err := s.api.Recommend(s.recommender(), reader, 20); err == nil {
		enc.Encode(map[string]any{"kind": "recommendations", "recommendations": recs})
	}
	accounts, err := s.kosync.ExportReader(reader)
	if err != nil {
		return err
	}
	for _, a := range accounts {
		enc.Encode(map[string]any{"kind": "kosync", "account": a.Username, "progress": a.Progress})
	}
	return bw.Flush()
}

// Erase removes a reader from the event log, state (their records and their share of every
// aggregate), the Parquet archive and the kosync store, records the erasure (by a hash of the id)
// so replays cannot bring them back, rewrites the stores so no byte of them remains in the files,
// and retrains the recommender without them. It reports whether anything of the reader was held;
// when nothing was (a repeated erasure), the stores are not rewritten, which makes a repeat cheap.
func (s *Server) Erase(ctx context.Context, reader string) (bool, error) {
	inLog, err := s.proc.Erase(ctx, reader)
	if err != nil {
		return false, fmt.Errorf("erasing from log and state: %w", err)
	}
	archived, err := s.archiver.EraseReader(ctx, reader)
	if err != nil {
		return true, fmt.Errorf("erasing from the archive: %w", err)
	}
	synced, err := s.kosync.EraseReader(reader)
	if err != nil {
		return true, fmt.Errorf("erasing from kosync: %w", err)
	}
	if !inLog && archived == 0 && !synced {
		return false, nil
	}
	if err := s.stores.Log.Scrub(); err != nil {
		return true, fmt.Errorf("scrubbing the log: %w", err)
	}
	if err := s.stores.State.Scrub(); err != nil {
		return true, fmt.Errorf("scrubbing state: %w", err)
	}
	s.background(func() {
		if _, err := s.trainer.TrainAfterErasure(s.ctx); err != nil && !errors.Is(err, trainer.ErrNoData) && s.ctx.Err() == nil {
			s.cfg.Logger.Error("retraining after an erasure failed", "err", err)
		}
	})
	s.cfg.Logger.Info("erased a reader from log, state, archive and kosync")
	return true, nil
}

func (s *Server) privacyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/readers/{id}/export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "dogear-"+r.PathValue("id")+".ndjson"))
		if err := s.Export(r.Context(), r.PathValue("id"), w); err != nil {
			s.cfg.Logger.Error("export failed", "err", err)
		}
	})
	mux.HandleFunc("DELETE /v1/readers/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !s.erasureAllowed(w) {
			return
		}
		found, err := s.Erase(r.Context(), r.PathValue("id"))
		s.erasureDone(found)
		if err != nil {
			httpjson.Fail(w, http.StatusInternalServerError, httpjson.Error{Error: err.Error()})
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"erased": r.PathValue("id"), "found": found})
	})
}

// erasureAllowed answers 429 and reports false while erasures are over their rate. Each erasure
// that finds data is costly (embedded: it rewrites every store, seconds on a large data directory
// with ingest slower meanwhile; distributed: a marker every processor of the partition must
// reach), so those are rate-limited; a repeat that finds nothing is cheap and not counted.
func (s *Server) erasureAllowed(w http.ResponseWriter) bool {
	s.erasuresOnce.Do(func() { s.erasures = rate.NewLimiter(rate.Every(s.cfg.ErasureEvery), s.cfg.ErasureBurst) })
	wait := auth.TokenWait(s.erasures)
	if wait > 0 {
		w.Header().Set("Retry-After", ingest.RetryAfter(wait))
		httpjson.Fail(w, http.StatusTooManyRequests, httpjson.Error{
			Error: fmt.Sprintf("too many erasures at once: nothing was erased; retry after %s", wait.Round(time.Second))})
	}
	return wait == 0
}

// erasureDone counts an erasure that found data against the rate.
func (s *Server) erasureDone(found bool) {
	if found {
		s.erasures.Allow()
	}
}
