package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/internal/pebbledb"
)

// check is one condition a process must meet to take traffic: fn returns "" when it is met, else
// what is wrong, for a person to act on.
type check struct {
	name string
	fn   func(ctx context.Context) string
}

// readyTimeout bounds each readiness check, so /readyz answers within a Kubernetes probe's time.
const readyTimeout = 2 * time.Second

// serveHTTP adds /healthz, /readyz and /metrics to the routes of the process's roles and starts
// the one HTTP server every dogear process runs, embedded or distributed. /readyz runs every
// check and answers 503 with the reasons when one fails; status adds facts to its body (roles,
// lag). gatherer adds the process's own metrics to the default registry's.
func (s *Server) serveHTTP(mux *http.ServeMux, checks []check, status func() map[string]any, gatherer prometheus.Gatherer) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := map[string]any{}
		if status != nil {
			maps.Copy(body, status())
		}
		code, results := http.StatusOK, map[string]string{}
		for _, c := range append([]check{{"running", s.running}}, checks...) {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			reason := c.fn(ctx)
			cancel()
			if reason != "" {
				code, results[c.name] = http.StatusServiceUnavailable, reason
			} else {
				results[c.name] = "ok"
			}
		}
		body["checks"], body["status"] = results, "ready"
		if code != http.StatusOK {
			body["status"] = "not ready"
		}
		httpjson.Write(w, code, body)
	})
	gatherers := prometheus.Gatherers{prometheus.DefaultGatherer}
	if gatherer != nil {
		gatherers = append(gatherers, gatherer)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{}))
	var handler http.Handler = mux
	if s.guard != nil {
		handler = s.guard.Wrap(mux)
	}
	s.http = &http.Server{
		Handler: handler,
		// Slow or stalled clients cannot hold connections forever.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	go func() {
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("http server stopped", "err", err)
		}
	}()
	s.ready.Store(true)
}

func (s *Server) running(context.Context) string {
	if !s.ready.Load() {
		return "shutting down"
	}
	return ""
}

// lagCheck fails while processors are more than max events behind the log (max 0: no bound).
func lagCheck(lag func() int64, max int64) check {
	return check{"processors", func(context.Context) string {
		if n := lag(); max > 0 && n > max {
			return fmt.Sprintf("processors are %d events behind the log (ready at %d or fewer)", n, max)
		}
		return ""
	}}
}

// diskCheck fails while the data directory has less free space than ingest needs.
func diskCheck(dir string, min int64) check {
	return check{"disk", func(context.Context) string {
		free, err := pebbledb.FreeBytes(dir)
		if err != nil {
			return "cannot read the free space of " + dir + ": " + err.Error()
		}
		if free < min {
			return fmt.Sprintf("%d MiB free in %s; ingest refuses below %d MiB", free>>20, dir, min>>20)
		}
		return ""
	}}
}
