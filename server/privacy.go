package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/ledger"
	"github.com/dogear-dev/dogear/maintenance"
)

// holdings is what a process holds of readers and can export and erase: everything, on the
// embedded log (maintenance.Embedded); the sealed log, over Kafka (maintenance.Sealed).
type holdings interface {
	Export(ctx context.Context, reader string, w io.Writer) error
	Erase(ctx context.Context, reader string) (maintenance.Erasure, error)
}

// privacyRoutes serves a reader's export and erasure; afterErasure runs once an erasure found
// something.
func (s *Server) privacyRoutes(mux *http.ServeMux, h holdings, afterErasure func()) {
	mux.HandleFunc("GET /v1/readers/{id}/export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "dogear-"+r.PathValue("id")+".ndjson"))
		if err := h.Export(r.Context(), r.PathValue("id"), w); err != nil {
			s.cfg.Logger.Error("export failed", "err", err)
		}
	})
	mux.HandleFunc("DELETE /v1/readers/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !s.erasures.allowed(w) {
			return
		}
		reader := r.PathValue("id")
		target := reader
		if hash, ok := strings.CutPrefix(reader, "sha256:"); ok {
			id, found, err := s.readerByHash(hash)
			if err != nil {
				httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: err.Error(), Field: "id"})
				return
			}
			if !found {
				s.erasures.done(true) // the search visited every reader: it counts like an erasure
				httpjson.Write(w, http.StatusOK, map[string]any{"erased": reader, "found": false})
				return
			}
			target = id
		}
		e, err := h.Erase(r.Context(), target)
		s.erasures.done(e.Found)
		if e.Found && afterErasure != nil {
			afterErasure()
		}
		switch {
		case err != nil:
			httpjson.Fail(w, http.StatusInternalServerError, httpjson.Error{Error: err.Error()})
		case e.Pending:
			httpjson.Write(w, http.StatusAccepted, map[string]any{"erased": reader, "found": true,
				"status": "the erasure marker is in the log; the reader is gone once the processor of their partition reaches it"})
		default:
			if e.Found {
				s.cfg.Logger.Info("erased a reader")
			}
			httpjson.Write(w, http.StatusOK, map[string]any{"erased": reader, "found": e.Found})
		}
	})
}

// readerByHash finds the reader whose id has this hex SHA-256, the form in which the
// configuration ledger (package ledger) records erasures. It visits every reader of the state
// once, which is fine for erasures and would not be for anything frequent.
func (s *Server) readerByHash(hash string) (string, bool, error) {
	if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return "", false, fmt.Errorf("id: %q after sha256: is not 64 lower-case hex digits", hash)
	}
	if s.backends.stores == nil {
		return "", false, errors.New("id: erasure by sha256: needs the readers' state, which only the embedded process holds; erase by id here")
	}
	return insights.FindReader(s.backends.state, func(id string) bool { return ledger.HashReader(id) == hash })
}

// erasureLimit rate-limits erasures that find data. Each is costly (embedded: it rewrites every
// store, seconds on a large data directory with ingest slower meanwhile; over Kafka: a marker the
// processor of the partition must reach); a repeat that finds nothing is cheap and not counted.
type erasureLimit struct{ limiter *rate.Limiter }

func (l *erasureLimit) init(cfg Config) {
	l.limiter = rate.NewLimiter(rate.Every(cfg.ErasureEvery), cfg.ErasureBurst)
}

// allowed answers 429 and reports false while erasures are over their rate.
func (l *erasureLimit) allowed(w http.ResponseWriter) bool {
	wait := auth.TokenWait(l.limiter)
	if wait > 0 {
		w.Header().Set("Retry-After", ingest.RetryAfter(wait))
		httpjson.Fail(w, http.StatusTooManyRequests, httpjson.Error{
			Error: fmt.Sprintf("too many erasures at once: nothing was erased; retry after %s", wait.Round(time.Second))})
	}
	return wait == 0
}

// done counts an erasure that found data against the rate.
func (l *erasureLimit) done(found bool) {
	if found {
		l.limiter.Allow()
	}
}
