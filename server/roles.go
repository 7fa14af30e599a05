package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/dogear-dev/dogear/api"
	"github.com/dogear-dev/dogear/archive"
	"github.com/dogear-dev/dogear/datadir"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/kosync"
	"github.com/dogear-dev/dogear/maintenance"
	"github.com/dogear-dev/dogear/orchestrator"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/segment"
	"github.com/dogear-dev/dogear/trainer"
	"github.com/dogear-dev/dogear/web"
)

// processRole folds the partitions the log assigns this process into state, and reports its
// partitions and lag at GET /v1/processor and in /readyz.
func (s *Server) processRole(mux *http.ServeMux) error {
	b := s.backends
	pcfg := processor.Config{Group: s.cfg.Group, Mirrors: b.mirrors, Shred: b.shredder,
		Canonical: s.catalog.Canonical, Linger: s.cfg.ProcessLinger, Tracer: s.tracer(), Logger: s.cfg.Logger}
	if s.cfg.has("ingest") {
		pcfg.Busy = s.gate.Busy // the two roles share the cores
	}
	s.proc = processor.New(b.log, b.state, pcfg)
	s.metrics.MustRegister(s.proc)
	var failed atomic.Pointer[error]
	s.background(func() {
		if err := s.proc.Run(s.ctx); err != nil {
			failed.Store(&err)
			s.cfg.Logger.Error("processing stopped", "err", err)
		}
	})
	s.checks = append(s.checks, check{"processors", func(context.Context) string {
		if err := failed.Load(); err != nil {
			return "processing stopped: " + (*err).Error()
		}
		if n, bound := s.proc.TotalLag(), s.cfg.ReadyMaxLag; bound > 0 && n > bound {
			return fmt.Sprintf("processors are %d events behind the log (ready at %d or fewer)", n, bound)
		}
		return ""
	}})
	s.status = append(s.status, func(m map[string]any) { m["processor_lag_events"] = s.proc.TotalLag() })
	mux.HandleFunc("GET /v1/processor", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, s.proc.Status())
	})
	return nil
}

// ingestRole takes events in: the event and Segment endpoints, kosync on the embedded log, and
// export and erasure over a sealed log (where erasure starts by appending a marker).
func (s *Server) ingestRole(mux *http.ServeMux) error {
	b := s.backends
	gate := s.gate
	mux.Handle("POST /v1/events", ingest.New(b.appendTo, gate, s.cfg.Logger))
	segment.New(b.appendTo, gate, s.guard.CheckWriteKey, s.cfg.Logger).Register(mux)
	if b.shredder != nil {
		s.privacyRoutes(mux, maintenance.Sealed{Log: b.log, Shredder: b.shredder, Wait: s.cfg.ErasureWait}, nil)
	}
	if b.stores == nil {
		return nil // kosync accounts live in the data directory, beside the embedded log
	}
	kcfg, err := kosyncConfig(s.cfg, s.guard)
	if err != nil {
		return err
	}
	ks, err := kosync.Open(filepath.Join(s.cfg.DataDir, datadir.Kosync), b.log, gate, s.catalog, kcfg, s.cfg.Logger)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, ks.Close)
	ks.Register(mux, "/kosync")
	ks.RegisterLinks(mux)
	if s.cfg.KosyncAtRoot {
		ks.Register(mux, "")
	}
	s.kosync = ks
	return nil
}

// apiRole answers queries, recommendations and model operations, and serves the web pages. On
// the embedded log it also edits the catalog; over Kafka it follows promotions in the registry.
func (s *Server) apiRole(mux *http.ServeMux) error {
	if err := s.models(); err != nil {
		return err
	}
	cfg := api.Config{State: s.backends.state, Registry: s.registry, Trainer: s.trainer, Catalog: s.catalog, Tracer: s.tracer(), Logger: s.cfg.Logger}
	if s.proc != nil {
		cfg.Lag = s.proc.TotalLag
	}
	a := api.New(cfg)
	s.api = a
	a.Register(mux)
	web.Register(mux)
	if s.backends.stores != nil {
		a.RegisterCatalog(mux)
		return nil
	}
	var refreshErr atomic.Pointer[error]
	s.background(func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
				err := s.registry.Refresh(s.ctx)
				refreshErr.Store(&err)
				if err != nil && s.ctx.Err() == nil {
					s.cfg.Logger.Warn("refreshing the serving model", "err", err)
				}
			}
		}
	})
	s.checks = append(s.checks, check{"models", func(context.Context) string {
		if err := refreshErr.Load(); err != nil && *err != nil {
			return "the model registry cannot be read: " + (*err).Error()
		}
		return ""
	}})
	return nil
}

// trainRole retrains the recommender every TrainInterval.
func (s *Server) trainRole(*http.ServeMux) error {
	if err := s.models(); err != nil {
		return err
	}
	if s.cfg.TrainInterval > 0 {
		s.background(func() { s.trainer.Run(s.ctx, s.cfg.TrainInterval) })
	}
	if s.cfg.ModelWatchInterval > 0 {
		s.background(func() { s.watchModels(s.cfg.ModelWatchInterval) })
	}
	return nil
}

// watchModels follows each promotion — by the trainer, by hand, by another process — against
// the version it replaced, on the books readers go on to read, and promotes the old one back
// when the new one finds significantly fewer (orchestrator.ModelWatch). A version from before a
// reader's erasure is never promoted back.
func (s *Server) watchModels(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var w *orchestrator.ModelWatch
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		// Another process (the api role) may have promoted: read what serves now.
		if err := s.registry.Refresh(s.ctx); err != nil {
			s.cfg.Logger.Warn("model watch: reading the registry", "err", err)
			continue
		}
		_, cur := s.registry.Serving()
		if cur == 0 {
			continue
		}
		if w == nil || w.New != cur {
			w = nil
			prev, err := s.registry.Previous(s.ctx)
			if err != nil {
				s.cfg.Logger.Warn("model watch: reading the registry", "err", err)
				continue
			}
			// A newer version than the one it replaced, which may serve again: watch it.
			if prev != 0 && cur > prev && s.mayServeAgain(prev) {
				w = orchestrator.NewModelWatch(s.registry, cur, prev, time.Now().UnixMilli())
			}
			continue
		}
		byReader, err := trainer.Interactions(s.ctx, s.backends.state, time.Now())
		if err != nil {
			s.cfg.Logger.Warn("model watch: reading interactions", "err", err)
			continue
		}
		back, err := w.Interval(byReader)
		switch {
		case err != nil:
			s.cfg.Logger.Warn("model watch", "version", w.New, "err", err)
		case back:
			s.cfg.Logger.Warn("model rolled back: it found fewer of the books readers went on to read",
				"from", w.New, "to", w.Old, "evidence", w.Summary())
		default:
			s.cfg.Logger.Debug("model watch", "evidence", w.Evidence[len(w.Evidence)-1])
		}
	}
}

// mayServeAgain reports whether version v may be promoted back: no version promoted after an
// erasure is newer than it.
func (s *Server) mayServeAgain(v int) bool {
	vs, err := s.registry.List()
	if err != nil {
		return false
	}
	for _, x := range vs {
		if x.Version > v && x.Metrics.AfterErasure {
			return false
		}
	}
	return true
}

// models opens the model registry and its trainer, once, for the api and train roles.
func (s *Server) models() error {
	if s.registry != nil {
		return nil
	}
	store, err := objectStore(s.ctx, s.cfg.Models, s.cfg.DataDir, datadir.Models)
	if err != nil {
		return err
	}
	if s.registry, err = registry.Open(s.ctx, store); err != nil {
		return err
	}
	tcfg := s.cfg.Recommender
	tcfg.Tracer = s.tracer()
	s.trainer = trainer.New(s.backends.state, s.registry, tcfg, s.cfg.Logger)
	return nil
}

// archiveRole copies the log into hourly Parquet files every ArchiveInterval, and once more at
// shutdown.
func (s *Server) archiveRole(*http.ServeMux) error {
	store, err := objectStore(s.ctx, s.cfg.Archive, s.cfg.DataDir, datadir.Archive)
	if err != nil {
		return err
	}
	s.archiver = &archive.Archiver{Log: s.backends.log, Store: store, ChunkSize: 100_000, Logger: s.cfg.Logger}
	if s.cfg.ArchiveInterval > 0 {
		s.background(func() { s.archiver.Run(s.ctx, s.cfg.ArchiveInterval) })
	}
	return nil
}

// embeddedPrivacy serves export and erasure over everything the embedded process holds; it runs
// after every role is wired, since it reaches what each built.
func (s *Server) embeddedPrivacy(mux *http.ServeMux) {
	h := maintenance.Embedded{Stores: s.backends.stores, Processor: s.proc, Archive: s.archiver, Kosync: s.kosync,
		Recommend: func(reader string) (any, error) { return s.api.Recommend(reader, 20) }}
	s.privacyRoutes(mux, h, func() {
		s.background(func() {
			if _, err := s.trainer.TrainAfterErasure(s.ctx); err != nil && !errors.Is(err, trainer.ErrNoData) && s.ctx.Err() == nil {
				s.cfg.Logger.Error("retraining after an erasure failed", "err", err)
			}
		})
	})
}
