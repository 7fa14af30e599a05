package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/dogear-dev/dogear/api"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/internal/pebbledb"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/tracing"
)

// check is one condition a process must meet to take traffic: fn returns "" when it is met, else
// what is wrong, for a person to act on.
type check struct {
	name string
	fn   func(ctx context.Context) string
}

// readyTimeout bounds each readiness check, so /readyz answers within a Kubernetes probe's time.
const readyTimeout = 2 * time.Second

// serveHTTP adds /healthz, /readyz and /metrics to the roles' routes and starts the one HTTP
// server of the process. /readyz runs every check the roles added and answers 503 with the
// reasons when one fails; the roles' status adds facts to its body (roles, lag).
func (s *Server) serveHTTP(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := map[string]any{}
		for _, add := range s.status {
			add(body)
		}
		code, results := http.StatusOK, map[string]string{}
		for _, c := range s.checks {
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
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}))
	handler := s.guard.Wrap(mux)
	if s.cfg.Tracer != nil {
		// Only when tracing is on: off, requests pay nothing for it.
		handler = otelhttp.NewHandler(handler, "dogear", otelhttp.WithTracerProvider(s.cfg.Tracer), otelhttp.WithPropagators(tracing.Propagator))
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

// newMetrics is the process's own Prometheus registry: the Go runtime's and the process's
// collectors and every package's metrics. Processors add their lag when the role runs.
func newMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(eventlog.Metrics...)
	reg.MustRegister(ingest.Metrics...)
	reg.MustRegister(processor.Metrics...)
	reg.MustRegister(api.Metrics...)
	return reg
}

func (s *Server) running(context.Context) string {
	if !s.ready.Load() {
		return "shutting down"
	}
	return ""
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

// tracer is dogear's tracer when tracing is on, else nil (no spans).
func (s *Server) tracer() trace.Tracer {
	if s.cfg.Tracer == nil {
		return nil
	}
	return tracing.Tracer(s.cfg.Tracer)
}
