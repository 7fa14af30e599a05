package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dogear-dev/dogear/api"
	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/objstore"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/segment"
	"github.com/dogear-dev/dogear/shred"
	"github.com/dogear-dev/dogear/state"
	"github.com/dogear-dev/dogear/trainer"
)

// Roles a distributed deployment runs apart; an embedded `dogear serve` runs them all.
var Roles = []string{"ingest", "process", "api", "train"}

// Distributed is the part of Config that selects distributed mode.
type Distributed struct {
	Roles []string
	// Log is kafka://broker1,broker2/topic; Mirrors are extra topics of the same cluster holding
	// mirrored copies (MirrorMaker 2) that processors consume too.
	Log     string
	Mirrors []string
	// State is cassandra://host1,host2/keyspace, or partitioned:///dir (each partition's state
	// in its own embedded store, handed between processes on one host).
	State          string
	Group          string
	SessionTimeout time.Duration
	// Keys is the store of the readers' keys: dir:///path (processes of one host) or
	// cassandra://host1,host2/keyspace. With it, events are sealed with their reader's key before
	// they reach Kafka, and erasure works by deleting the key (crypto-shredding, package shred);
	// without it, export and erasure are not available in distributed mode.
	Keys string
}

// openKeys opens the key store URL.
func openKeys(url string) (shred.Keys, error) {
	switch {
	case strings.HasPrefix(url, "dir://"):
		return shred.OpenDirKeys(strings.TrimPrefix(url, "dir://"))
	case strings.HasPrefix(url, "cassandra://"):
		hosts, ks, err := state.ParseCassandraURL(url)
		if err != nil {
			return nil, err
		}
		return shred.OpenCassandraKeys(hosts, ks)
	}
	return nil, fmt.Errorf("--keys %q: want dir:///path or cassandra://host1,host2/keyspace", url)
}

// Enabled reports whether the configuration asks for distributed mode.
func (d Distributed) Enabled() bool { return d.Log != "" }

// openState opens the state URL; owner is set for partitioned state.
func openState(url string, cacheBytes int64) (state.Store, processor.PartitionOwner, error) {
	switch {
	case strings.HasPrefix(url, "cassandra://"):
		hosts, ks, err := state.ParseCassandraURL(url)
		if err != nil {
			return nil, nil, err
		}
		c, err := state.OpenCassandra(hosts, ks)
		return c, nil, err
	case strings.HasPrefix(url, "partitioned://"):
		p, err := state.OpenPartitioned(strings.TrimPrefix(url, "partitioned://"), cacheBytes)
		return p, p, err
	}
	return nil, nil, fmt.Errorf("state URL %q: want cassandra://host1,host2/keyspace or partitioned:///dir", url)
}

// StartDistributed runs the configured roles over Kafka and shared state. Every role serves
// /healthz, /readyz and /metrics; ingest adds the event endpoints, api the query endpoints.
func StartDistributed(cfg Config) (*Server, error) {
	d := cfg.Distributed
	for _, r := range d.Roles {
		if !slices.Contains(Roles, r) {
			return nil, fmt.Errorf("--roles: unknown role %q (want %s)", r, strings.Join(Roles, ", "))
		}
	}
	kcfg, err := eventlog.ParseKafkaURL(d.Log)
	if err != nil {
		return nil, err
	}
	if cfg.Partitions > 0 {
		kcfg.Partitions = cfg.Partitions
	}
	ctx, cancel := context.WithCancel(context.Background())
	log, err := eventlog.OpenKafka(ctx, kcfg)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &Server{cfg: cfg, ctx: ctx, cancel: cancel, procDone: make(chan error, 1), distLog: log}
	var shredder *shred.Shredder
	if d.Keys != "" {
		keys, err := openKeys(d.Keys)
		if err != nil {
			s.closeDistributed()
			return nil, err
		}
		s.keys, shredder = keys, shred.New(keys)
	}
	mux := http.NewServeMux()
	var lag func() int64
	if slices.Contains(d.Roles, "ingest") {
		guard, err := newGuard(cfg)
		if err != nil {
			s.closeDistributed()
			return nil, err
		}
		s.guard = guard
		gate := newGate(cfg, guard)
		var appendTo eventlog.Log = log
		if shredder != nil {
			appendTo = shred.Log{Log: log, Shredder: shredder}
			s.shreddingRoutes(mux, log, shredder)
		}
		mux.Handle("POST /v1/events", ingest.New(appendTo, gate, cfg.Logger))
		segment.New(appendTo, gate, guard.CheckWriteKey, cfg.Logger).Register(mux)
	}
	if slices.Contains(d.Roles, "process") || slices.Contains(d.Roles, "api") || slices.Contains(d.Roles, "train") {
		if d.State == "" {
			s.closeDistributed()
			return nil, errors.New("the process, api and train roles need --state cassandra://... (or partitioned:///dir on one host)")
		}
		st, owner, err := openState(d.State, cfg.CacheBytes)
		if err != nil {
			s.closeDistributed()
			return nil, err
		}
		s.distState = st
		if slices.Contains(d.Roles, "process") {
			group := processor.NewGroup(processor.GroupConfig{Brokers: kcfg.Brokers, Group: d.Group,
				Topics: append([]string{kcfg.Topic}, d.Mirrors...), Partitions: kcfg.Partitions, SessionTimeout: d.SessionTimeout},
				st, owner, log, shredder, cfg.Logger)
			go func() { s.procDone <- group.Run(ctx) }()
			lag = func() int64 { return group.Status().Lag }
			mux.HandleFunc("GET /v1/processor", func(w http.ResponseWriter, r *http.Request) { httpjson.Write(w, http.StatusOK, group.Status()) })
		} else {
			s.procDone <- nil
		}
		if slices.Contains(d.Roles, "api") || slices.Contains(d.Roles, "train") {
			if owner != nil {
				s.closeDistributed()
				return nil, errors.New("the api and train roles need shared state (cassandra://); partitioned state is readable only by the processes that own it")
			}
			if err := s.distributedModels(ctx, mux, st); err != nil {
				s.closeDistributed()
				return nil, err
			}
		}
	} else {
		s.procDone <- nil
	}
	ln, err := listen(cfg)
	if err != nil {
		s.closeDistributed()
		return nil, err
	}
	s.ln = ln
	checks := []check{{"kafka", func(ctx context.Context) string {
		if err := log.Ping(ctx); err != nil {
			return "Kafka does not answer: " + err.Error()
		}
		return ""
	}}}
	if lag != nil {
		checks = append(checks, lagCheck(lag, cfg.ReadyMaxLag))
	}
	s.serveHTTP(mux, checks, func() map[string]any {
		body := map[string]any{"roles": d.Roles}
		if lag != nil {
			body["processor_lag_events"] = lag()
		}
		return body
	}, nil)
	return s, nil
}

// distributedModels sets up the model registry in its object store for the api role (query and
// recommendation endpoints, following promotions) and the train role (periodic training).
func (s *Server) distributedModels(ctx context.Context, mux *http.ServeMux, st state.Store) error {
	cfg := s.cfg
	store, err := objstore.Open(ctx, cmp.Or(cfg.Models, filepath.Join(cfg.DataDir, "models")))
	if err != nil {
		return err
	}
	reg, err := registry.Open(ctx, store)
	if err != nil {
		return err
	}
	cat, err := catalog.Load(cfg.DataDir)
	if err != nil {
		return err
	}
	s.registry, s.catalog = reg, cat
	s.trainer = trainer.New(st, reg, cfg.Recommender, cfg.Logger)
	if slices.Contains(cfg.Distributed.Roles, "train") && cfg.TrainInterval > 0 {
		s.background(func() { s.trainer.Run(ctx, cfg.TrainInterval) })
	}
	if slices.Contains(cfg.Distributed.Roles, "api") {
		s.api = api.New(st, lagFunc(func() int64 { return 0 }), cfg.Logger)
		s.api.Register(mux)
		s.api.RegisterRecommendations(mux, s.recommender())
		s.background(func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if err := reg.Refresh(ctx); err != nil {
						cfg.Logger.Warn("refreshing the serving model", "err", err)
					}
				}
			}
		})
	}
	return nil
}

type lagFunc func() int64

func (f lagFunc) TotalLag() int64 { return f() }

func (s *Server) closeDistributed() error {
	s.cancel()
	var errs []error
	if s.distState != nil {
		errs = append(errs, s.distState.Close())
	}
	if s.distLog != nil {
		errs = append(errs, s.distLog.Close())
	}
	if s.keys != nil {
		errs = append(errs, s.keys.Close())
	}
	return errors.Join(errs...)
}
