package main

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dogear-dev/dogear/server"
	"github.com/dogear-dev/dogear/tracing"
)

func serve(args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("serve", "Run dogear: every role in one process on embedded storage, or the roles asked for over Kafka and shared state")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	dataDirFlag(fs, &cfg)
	fs.IntVar(&cfg.Partitions, "partitions", 0, "partitions of a new event log (default 16; fixed once created)")
	cacheMB := fs.Int64("cache-mb", cfg.CacheBytes>>20, "block cache of each embedded store, MiB")
	fs.Int64Var(&cfg.Ingest.MaxBodyBytes, "max-body", cfg.Ingest.MaxBodyBytes, "largest ingest body in bytes, compressed and decompressed")
	fs.IntVar(&cfg.Ingest.MaxEvents, "max-events", cfg.Ingest.MaxEvents, "most events in one ingest request")
	fs.IntVar(&cfg.Ingest.MaxInFlight, "max-inflight", cfg.Ingest.MaxInFlight, "ingest requests processed at once; more get 429 with Retry-After")
	fs.DurationVar(&cfg.TrainInterval, "train-interval", cfg.TrainInterval, "retrain the recommender this often (0: only on POST /v1/models/train)")
	fs.DurationVar(&cfg.ModelWatchInterval, "model-watch-interval", cfg.ModelWatchInterval, "compare a newly promoted model with the one it replaced this often, on what readers read since, and promote the old one back if the new one does significantly worse (0: never)")
	fs.DurationVar(&cfg.Recommender.SearchBudget, "train-search-budget", cfg.Recommender.SearchBudget, "time each training round may spend choosing the model for this catalogue (0: RP3beta with its default settings)")
	fs.StringVar(&cfg.KosyncRegistration, "kosync-registration", cfg.KosyncRegistration, "who may create kosync accounts from a device: auto (anyone in local-only mode, nobody when auth is on), open (anyone; with auth on they write to readers named kosync:USER) or closed; readers link accounts with POST /v1/readers/{id}/kosync")
	roles := fs.String("roles", strings.Join(server.Roles, ","), "roles of this process, from "+strings.Join(server.Roles, ", ")+" (all of them: one embedded process); roles apart need --log and --state")
	fs.StringVar(&cfg.Log, "log", "", "event log: empty for the embedded one, or kafka://broker1,broker2/topic")
	mirrors := fs.String("mirror", "", "comma-separated topics holding mirrored copies of the log (MirrorMaker 2) that processors also consume")
	fs.StringVar(&cfg.State, "state", "", "state for distributed roles: cassandra://host1,host2/keyspace or partitioned:///dir (one host)")
	fs.StringVar(&cfg.Group, "group", cfg.Group, "Kafka consumer group of the processors")
	fs.DurationVar(&cfg.SessionTimeout, "group-session-timeout", cfg.SessionTimeout, "how soon a dead processor's partitions move to the others")
	fs.StringVar(&cfg.Keys, "keys", "", "readers' keys for crypto-shredding in distributed mode: dir:///path (one host) or cassandra://host1,host2/keyspace; needed for export and erasure over Kafka")
	fs.StringVar(&cfg.Archive, "archive", "", "where to archive the log as hourly Parquet: file:///dir or s3://bucket/prefix?endpoint=URL (default DATA_DIR/archive)")
	fs.StringVar(&cfg.Models, "models", "", "object store of the model registry: file:///dir or s3://bucket/prefix?endpoint=URL (default DATA_DIR/models)")
	fs.DurationVar(&cfg.ArchiveInterval, "archive-interval", cfg.ArchiveInterval, "archive this often (0: never)")
	fs.BoolVar(&cfg.RequireAuth, "require-auth", false, "require write keys and tokens even on loopback (always required off loopback)")
	fs.Float64Var(&cfg.KeyRate, "key-rate", cfg.KeyRate, "events per second each write key may send (0: no limit)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate (PEM) for the listener")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "require client certificates signed by this CA (PEM): mutual TLS between roles")
	fs.BoolVar(&cfg.KosyncAtRoot, "kosync-root", false, "also serve the kosync protocol at the root paths (/users/..., /syncs/...), for devices pointed at the bare host")
	minFreeMB := fs.Int64("min-free-mb", cfg.MinFreeBytes>>20, "below this much free disk, ingest answers 503 and processing pauses (a full disk is fatal to the store)")
	fs.Int64Var(&cfg.ReadyMaxLag, "ready-max-lag", cfg.ReadyMaxLag, "/readyz answers 503 while processors are more than this many events behind the log (0: no bound)")
	fs.DurationVar(&cfg.ProcessLinger, "process-linger", cfg.ProcessLinger, "how long a partition's events may gather after a batch before the next is folded, unless a full batch is there sooner, so that one commit covers many (0: fold what is there at once)")
	traceMode := fs.String("tracing", "off", "off, or otlp: send OpenTelemetry traces to OTEL_EXPORTER_OTLP_ENDPOINT (sampling by OTEL_TRACES_SAMPLER)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.CacheBytes = *cacheMB << 20
	cfg.MinFreeBytes = *minFreeMB << 20
	cfg.Roles = strings.Split(*roles, ",")
	if *mirrors != "" {
		cfg.Mirrors = strings.Split(*mirrors, ",")
	}
	log, err := logger(*level)
	if err != nil {
		return err
	}
	cfg.Logger = log
	tp, err := tracing.Start(context.Background(), *traceMode, "dogear")
	if err != nil {
		return err
	}
	if tp != nil {
		cfg.Tracer = tp
		defer tp.Shutdown(context.Background()) // flushes the last spans
	}
	srv, err := server.Start(cfg)
	if err != nil {
		return err
	}
	log.Info("dogear serving", "addr", "http://"+srv.Addr(), "data_dir", cfg.DataDir, "version", versionString())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
