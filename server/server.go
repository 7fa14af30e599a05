// Package server assembles one dogear process on embedded storage: event log and state under a
// data directory, processors, and the HTTP listener for ingest, queries, health and metrics.
package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/dogear-dev/dogear/api"
	"github.com/dogear-dev/dogear/archive"
	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/dashboard"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/kosync"
	"github.com/dogear-dev/dogear/objstore"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/segment"
	"github.com/dogear-dev/dogear/shred"
	"github.com/dogear-dev/dogear/state"
	"github.com/dogear-dev/dogear/trainer"
)

// Config is everything `dogear serve` can be told.
type Config struct {
	DataDir    string
	Addr       string
	Partitions int   // 0: the log's stored count, or eventlog.DefaultPartitions for a new one
	CacheBytes int64 // block cache of each embedded store
	Ingest     ingest.Config
	Logger     *slog.Logger
	// TrainInterval is how often the trainer retrains the recommender (0: only on request).
	TrainInterval time.Duration
	Recommender   recommend.NeighborParams
	// Kosync configures the KOReader sync server under /kosync; KosyncAtRoot also serves it at
	// the root paths, for devices pointed at the bare host. KosyncRegistration is "auto" (open
	// registration in local-only mode, closed when auth is on), "open" or "closed"; with auth
	// on, openly registered accounts write to readers named kosync:USERNAME, never to an
	// existing reader (docs/security.md).
	Kosync             kosync.Config
	KosyncAtRoot       bool
	KosyncRegistration string
	// RequireAuth turns on keys and tokens even on loopback. Off loopback they are always on.
	RequireAuth bool
	// KeyRate limits each write key to this many events per second (0: no limit).
	KeyRate float64
	// TLS: certificate and key for every listener; ClientCA also requires client certificates
	// signed by it (mutual TLS between roles).
	TLSCert, TLSKey, TLSClientCA string
	// MinFreeBytes: below this much free disk, ingest answers 503 and processing pauses, so the
	// stores never hit a full disk (which Pebble treats as fatal).
	MinFreeBytes int64
	// Archive is where the archiver writes Parquet (file:///dir or s3://bucket/prefix; empty:
	// DATA_DIR/archive), every ArchiveInterval (0: never).
	Archive         string
	ArchiveInterval time.Duration
	// Models is the object store of the model registry: file:///dir or s3://bucket/prefix
	// (empty: DATA_DIR/models).
	Models string
	// An erasure that finds data rewrites every store: at most ErasureBurst at once, then one
	// every ErasureEvery.
	ErasureBurst int
	ErasureEvery time.Duration
	// ReadyMaxLag: /readyz answers 503 while processors are more than this many events behind the
	// log (0: no bound).
	ReadyMaxLag int64
	// ErasureWait is how long a distributed erasure waits for processors to carry it out
	// before answering 202 (it completes all the same).
	ErasureWait time.Duration
	// Distributed selects roles over Kafka and shared state (distributed.go).
	Distributed Distributed
}

// DefaultConfig is what `dogear serve` does with no flags.
func DefaultConfig() Config {
	return Config{
		DataDir: "dogear-data", Addr: "127.0.0.1:8080", CacheBytes: 256 << 20,
		Ingest: ingest.DefaultConfig(), Logger: slog.Default(),
		TrainInterval: 10 * time.Minute, Recommender: trainer.DefaultParams,
		KosyncRegistration: "auto", KeyRate: 100_000, MinFreeBytes: 128 << 20,
		ArchiveInterval: time.Minute, ErasureBurst: 10, ErasureEvery: 6 * time.Second, ErasureWait: 30 * time.Second, ReadyMaxLag: 1_000_000,
		Distributed: Distributed{Roles: Roles, Group: "dogear-processors", SessionTimeout: 10 * time.Second},
	}
}

// Stores are the opened embedded log and state of a data directory.
type Stores struct {
	Log   *eventlog.Pebble
	State *state.Pebble
}

// Open opens the log and state under dataDir.
func Open(cfg Config) (*Stores, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	log, err := eventlog.OpenPebble(filepath.Join(cfg.DataDir, "log"), cfg.Partitions, cfg.CacheBytes)
	if err != nil {
		return nil, err
	}
	st, err := state.OpenPebble(filepath.Join(cfg.DataDir, "state"), cfg.CacheBytes)
	if err != nil {
		log.Close()
		return nil, err
	}
	log.MinFreeBytes = cfg.MinFreeBytes
	st.MinFreeBytes = cfg.MinFreeBytes / 2 // processing may go on a little longer than ingest
	return &Stores{Log: log, State: st}, nil
}

// Close closes both stores.
func (s *Stores) Close() error { return errors.Join(s.State.Close(), s.Log.Close()) }

// Server is a running dogear process.
type Server struct {
	cfg      Config
	stores   *Stores
	proc     *processor.Processor
	http     *http.Server
	ln       net.Listener
	cancel   context.CancelFunc
	procDone chan error
	registry *registry.Registry
	trainer  *trainer.Trainer
	catalog  *catalog.Catalog
	kosync   *kosync.Server
	api      *api.API
	guard    *auth.Guard
	gate     *ingest.Gate
	archiver *archive.Archiver

	distLog   *eventlog.Kafka
	distState state.Store
	keys      shred.Keys

	erasuresOnce sync.Once
	erasures     *rate.Limiter
	ready        atomic.Bool

	shutdown    sync.Once
	shutdownErr error
	// ctx ends at shutdown; bg counts the goroutines that use the stores besides processors
	// (archiver, trainer), which must finish before the stores close.
	ctx context.Context
	bg  sync.WaitGroup
}

// Start opens storage, starts processors and begins serving on cfg.Addr.
func Start(cfg Config) (*Server, error) {
	stores, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	cat, err := catalog.Load(cfg.DataDir)
	if err != nil {
		stores.Close()
		return nil, err
	}
	proc, err := newProcessor(stores.Log, stores.State, cfg, cat)
	if err != nil {
		stores.Close()
		return nil, err
	}
	modelsURL := cfg.Models
	if modelsURL == "" {
		modelsURL = filepath.Join(cfg.DataDir, "models")
	}
	modelStore, err := objstore.Open(context.Background(), modelsURL)
	if err != nil {
		stores.Close()
		return nil, err
	}
	reg, err := registry.Open(context.Background(), modelStore)
	if err != nil {
		stores.Close()
		return nil, err
	}
	guard, err := newGuard(cfg)
	if err != nil {
		stores.Close()
		return nil, err
	}
	gate := newGate(cfg, guard)
	kcfg, err := kosyncConfig(cfg, guard)
	if err != nil {
		stores.Close()
		return nil, err
	}
	ks, err := kosync.Open(filepath.Join(cfg.DataDir, "kosync"), stores.Log, gate, cat, kcfg, cfg.Logger)
	if err != nil {
		stores.Close()
		return nil, err
	}
	archiveURL := cfg.Archive
	if archiveURL == "" {
		archiveURL = filepath.Join(cfg.DataDir, "archive")
	}
	archiveStore, err := objstore.Open(context.Background(), archiveURL)
	if err != nil {
		ks.Close()
		stores.Close()
		return nil, err
	}
	ln, err := listen(cfg)
	if err != nil {
		ks.Close()
		stores.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, stores: stores, proc: proc, ln: ln, procDone: make(chan error, 1), kosync: ks, guard: guard, gate: gate,
		archiver: &archive.Archiver{Log: stores.Log, Store: archiveStore, ChunkSize: 100_000, Logger: cfg.Logger},
		registry: reg, catalog: cat, trainer: trainer.New(stores.State, reg, cfg.Recommender, cfg.Logger)}
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx, s.cancel = ctx, cancel
	go func() { s.procDone <- proc.Run(ctx) }()
	if cfg.TrainInterval > 0 {
		s.background(func() { s.trainer.Run(ctx, cfg.TrainInterval) })
	}
	if cfg.ArchiveInterval > 0 {
		s.background(func() { s.archiver.Run(ctx, cfg.ArchiveInterval) })
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(proc)
	s.serveHTTP(s.routes(), []check{diskCheck(cfg.DataDir, cfg.MinFreeBytes), lagCheck(proc.TotalLag, cfg.ReadyMaxLag)},
		func() map[string]any { return map[string]any{"processor_lag_events": proc.TotalLag()} }, metrics)
	return s, nil
}

// routes are the embedded process's routes: every role's.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", ingest.New(s.stores.Log, s.gate, s.cfg.Logger))
	segment.New(s.stores.Log, s.gate, s.guard.CheckWriteKey, s.cfg.Logger).Register(mux)
	s.kosync.Register(mux, "/kosync")
	s.kosync.RegisterLinks(mux)
	if s.cfg.KosyncAtRoot {
		s.kosync.Register(mux, "")
	}
	s.api = api.New(s.stores.State, s.proc, s.cfg.Logger)
	s.api.Register(mux)
	s.api.RegisterRecommendations(mux, s.recommender())
	s.api.RegisterCatalog(mux, s.catalog)
	s.privacyRoutes(mux)
	mux.Handle("GET /{$}", dashboard.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Fail(w, http.StatusNotFound, httpjson.Error{Error: fmt.Sprintf("no route %s %s; see docs/openapi.yaml", r.Method, r.URL.Path)})
	})
	return mux
}

// newGuard sets up authentication: on unless the server only listens on loopback (local-only
// mode) and RequireAuth is off. The log says which, plainly.
func newGuard(cfg Config) (*auth.Guard, error) {
	tokens, err := auth.OpenTokens(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	g := &auth.Guard{On: cfg.RequireAuth || !loopback(cfg.Addr), Keys: auth.OpenKeys(cfg.DataDir), Tokens: tokens,
		EventsPerSecond: cfg.KeyRate, Burst: max(int(cfg.KeyRate), cfg.Ingest.MaxEvents)}
	if g.On {
		cfg.Logger.Info("auth: write keys required for ingest, signed tokens for reads (dogear keys, dogear token)")
	} else {
		cfg.Logger.Warn("auth: LOCAL-ONLY MODE on loopback: no write keys or tokens are checked; listening beyond loopback (or --require-auth) turns them on")
	}
	return g, nil
}

// newGate is the gate every ingest route of the process shares, with the guard's per-caller
// rate limit.
func newGate(cfg Config, guard *auth.Guard) *ingest.Gate {
	icfg := cfg.Ingest
	icfg.Limit = guard.AllowEvents
	return ingest.NewGate(icfg)
}

// kosyncConfig decides kosync's registration from --kosync-registration and the guard: with auth
// on, open registration is off unless asked for, and then writes to readers named kosync:USER.
func kosyncConfig(cfg Config, guard *auth.Guard) (kosync.Config, error) {
	kcfg := cfg.Kosync
	switch cfg.KosyncRegistration {
	case "", "auto":
		kcfg.AllowRegistration = !guard.On
	case "open":
		kcfg.AllowRegistration = true
	case "closed":
		kcfg.AllowRegistration = false
	default:
		return kcfg, fmt.Errorf("--kosync-registration: %q is not auto, open or closed", cfg.KosyncRegistration)
	}
	if guard.On {
		kcfg.ReaderPrefix = "kosync:"
	}
	return kcfg, nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listen opens the listener, with TLS (and client certificates) when configured.
func listen(cfg Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		if cfg.TLSClientCA != "" {
			ln.Close()
			return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
		}
		return ln, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			ln.Close()
			return nil, fmt.Errorf("--tls-client-ca: no PEM certificate in %s", cfg.TLSClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tls.NewListener(ln, tc), nil
}

func (s *Server) recommender() *api.Recommender {
	return &api.Recommender{Registry: s.registry, Trainer: s.trainer, Catalog: s.catalog}
}

// Archiver gives access to the Parquet archiver.
func (s *Server) Archiver() *archive.Archiver { return s.archiver }

// Registry gives access to the model registry.
func (s *Server) Registry() *registry.Registry { return s.registry }

// State gives read access to the state store.
func (s *Server) State() state.Reader { return s.stores.State }

// background runs fn as a goroutine that Shutdown waits for before closing the stores.
func (s *Server) background(fn func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
}

// Trainer gives access to the training pipeline.
func (s *Server) Trainer() *trainer.Trainer { return s.trainer }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Processor gives access to the running processor (lag, catch-up).
func (s *Server) Processor() *processor.Processor { return s.proc }

// Shutdown stops accepting requests, waits for in-flight ones (acknowledged events are already
// durable), stops processors and closes storage.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		s.ready.Store(false)
		herr := s.http.Shutdown(ctx)
		s.cancel()
		perr := <-s.procDone
		s.bg.Wait()
		if s.stores == nil { // distributed roles
			s.shutdownErr = errors.Join(herr, perr, s.closeDistributed())
			return
		}
		s.shutdownErr = errors.Join(herr, perr, s.kosync.Close(), s.stores.Close())
	})
	return s.shutdownErr
}

// Rebuild recomputes all state from the log: the old state is removed and every partition is
// processed again from offset 0.
func Rebuild(ctx context.Context, cfg Config) error {
	if err := os.RemoveAll(filepath.Join(cfg.DataDir, "state")); err != nil {
		return err
	}
	stores, err := Open(cfg)
	if err != nil {
		return err
	}
	proc, err := newProcessor(stores.Log, stores.State, cfg, nil)
	if err != nil {
		stores.Close()
		return err
	}
	return errors.Join(proc.CatchUp(ctx), stores.Close())
}

// newProcessor folds log into st, naming books as the catalog does (the data directory's when
// cat is nil): a rebuild then resolves every alias the catalog knows now.
func newProcessor(log eventlog.Log, st state.Store, cfg Config, cat *catalog.Catalog) (*processor.Processor, error) {
	if cat == nil {
		var err error
		if cat, err = catalog.Load(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	proc, err := processor.New(log, st, cfg.Logger)
	if err != nil {
		return nil, err
	}
	proc.Canonical = cat.Canonical
	return proc, nil
}

// Verify checks that live state equals a rebuild: it brings the state up to the end of the log,
// rebuilds a second state from the log in a scratch folder, and compares every key, value and
// partition offset. It returns a description of the first difference, or "" when equal.
func Verify(ctx context.Context, cfg Config) (string, error) {
	stores, err := Open(cfg)
	if err != nil {
		return "", err
	}
	defer stores.Close()
	cat, err := catalog.Load(cfg.DataDir)
	if err != nil {
		return "", err
	}
	proc, err := newProcessor(stores.Log, stores.State, cfg, cat)
	if err != nil {
		return "", err
	}
	if err := proc.CatchUp(ctx); err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp(cfg.DataDir, "verify-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	fresh, err := state.OpenPebble(scratch, cfg.CacheBytes)
	if err != nil {
		return "", err
	}
	defer fresh.Close()
	rebuilt, err := newProcessor(stores.Log, fresh, cfg, cat)
	if err != nil {
		return "", err
	}
	if err := rebuilt.CatchUp(ctx); err != nil {
		return "", err
	}
	for p := 0; p < stores.Log.Partitions(); p++ {
		a, _ := stores.State.Offset(p)
		b, _ := fresh.Offset(p)
		if a != b {
			return fmt.Sprintf("partition %d: live state at offset %d, rebuild at %d", p, a, b), nil
		}
	}
	return state.Diff(stores.State, fresh)
}

// DumpRecord is one line of `dogear dump`.
type DumpRecord struct {
	Partition int             `json:"partition"`
	Offset    int64           `json:"offset"`
	Event     json.RawMessage `json:"event"`
}

// Dump writes every record of the event log as NDJSON, partition by partition in offset order.
func Dump(ctx context.Context, cfg Config, w io.Writer) (int64, error) {
	log, err := eventlog.OpenPebble(filepath.Join(cfg.DataDir, "log"), 0, cfg.CacheBytes)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	var n int64
	for p := 0; p < log.Partitions(); p++ {
		for off := int64(0); ; {
			recs, err := log.Read(ctx, p, off, 10_000)
			if err != nil {
				return n, err
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				if err := enc.Encode(DumpRecord{Partition: p, Offset: r.Offset, Event: r.Value}); err != nil {
					return n, err
				}
				n++
			}
			off = recs[len(recs)-1].Offset + 1
		}
	}
	return n, bw.Flush()
}
