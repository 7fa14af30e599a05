// Package server assembles one dogear process from its roles (ingest, process, api, train,
// archive) over embedded or distributed backends, and serves them on one HTTP listener.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dogear-dev/dogear/api"
	"github.com/dogear-dev/dogear/archive"
	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/kosync"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/trainer"
)

// Server is a running dogear process.
type Server struct {
	cfg      Config
	backends *backends
	catalog  *catalog.Catalog
	guard    *auth.Guard
	gate     *ingest.Gate // the ingest routes' limits, shared by all of them
	metrics  *prometheus.Registry
	checks   []check
	status   []func(map[string]any)

	// What the roles built; nil when no role of the process needs it.
	proc     *processor.Processor
	registry *registry.Registry
	trainer  *trainer.Trainer
	api      *api.API
	archiver *archive.Archiver
	kosync   *kosync.Server

	ln    net.Listener
	http  *http.Server
	ready atomic.Bool

	// ctx ends at shutdown. bg counts every goroutine that uses the backends (processor,
	// archiver, trainer, model refresh), which must finish before they close; closers close
	// what the roles opened, last first, before the backends.
	ctx     context.Context
	cancel  context.CancelFunc
	bg      sync.WaitGroup
	closers []func() error

	erasures erasureLimit

	shutdown    sync.Once
	shutdownErr error
}

// Start assembles the process cfg.Roles describe over the backends cfg names, and begins serving
// on cfg.Addr. DefaultConfig is every role on embedded storage.
func Start(cfg Config) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, ctx: ctx, cancel: cancel, metrics: newMetrics()}
	s.erasures.init(cfg)
	mux, err := s.assemble()
	if err != nil {
		cancel()
		s.bg.Wait()
		return nil, errors.Join(err, s.close())
	}
	s.serveHTTP(mux)
	return s, nil
}

// assemble opens the backends and wires each role of the process onto mux.
func (s *Server) assemble() (*http.ServeMux, error) {
	b, err := openBackends(s.ctx, s.cfg)
	if err != nil {
		return nil, err
	}
	s.backends = b
	if s.catalog, err = catalog.Load(s.cfg.DataDir); err != nil {
		return nil, err
	}
	if s.guard, err = newGuard(s.cfg); err != nil {
		return nil, err
	}
	icfg := s.cfg.Ingest
	icfg.Limit = s.guard.AllowEvents
	s.gate = ingest.NewGate(icfg)
	ln, err := listen(s.cfg)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.closers = append(s.closers, func() error {
		if s.http == nil {
			return ln.Close()
		}
		return nil
	})
	s.checks = append(s.checks, check{"running", s.running})
	if b.ping != nil {
		s.checks = append(s.checks, check{"kafka", func(ctx context.Context) string {
			if err := b.ping(ctx); err != nil {
				return "Kafka does not answer: " + err.Error()
			}
			return ""
		}})
	}
	if b.stores != nil {
		s.checks = append(s.checks, diskCheck(s.cfg.DataDir, s.cfg.MinFreeBytes))
	}
	s.status = append(s.status, func(m map[string]any) { m["roles"] = s.cfg.Roles })
	mux := http.NewServeMux()
	for _, role := range []struct {
		name string
		wire func(*http.ServeMux) error
	}{
		// process first: the api's stats and the ingest role's erasure report its progress.
		{"process", s.processRole}, {"ingest", s.ingestRole}, {"api", s.apiRole},
		{"train", s.trainRole}, {"archive", s.archiveRole},
	} {
		if s.cfg.has(role.name) {
			if err := role.wire(mux); err != nil {
				return nil, fmt.Errorf("%s role: %w", role.name, err)
			}
		}
	}
	if b.stores != nil { // the embedded process runs every role
		s.embeddedPrivacy(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Fail(w, http.StatusNotFound, httpjson.Error{Error: fmt.Sprintf("no route %s %s in this process (roles %v); see docs/openapi.yaml", r.Method, r.URL.Path, s.cfg.Roles)})
	})
	return mux, nil
}

// background runs fn as a goroutine that shutdown waits for before closing the backends.
func (s *Server) background(fn func()) {
	s.bg.Go(fn)
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Processor is the process role's processor (nil without the role): its lag, catch-up.
func (s *Server) Processor() *processor.Processor { return s.proc }

// Trainer is the training pipeline of the api and train roles (nil without them).
func (s *Server) Trainer() *trainer.Trainer { return s.trainer }

// Shutdown stops taking requests, waits for those in flight (acknowledged events are already
// durable), stops the roles' goroutines (processors commit what they folded, the archiver makes
// a last pass) and closes the backends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		s.ready.Store(false)
		herr := s.http.Shutdown(ctx)
		s.cancel()
		s.bg.Wait()
		s.shutdownErr = errors.Join(herr, s.close())
	})
	return s.shutdownErr
}

// close closes what the roles opened and then the backends.
func (s *Server) close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	if s.backends != nil {
		errs = append(errs, s.backends.close())
	}
	return errors.Join(errs...)
}
