package server

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/kosync"
	"github.com/dogear-dev/dogear/trainer"
	"go.opentelemetry.io/otel/trace"
)

// Roles a process can run. `dogear serve` runs them all over embedded storage; a distributed
// deployment runs them apart over Kafka and shared state.
var Roles = []string{"ingest", "process", "api", "train", "archive"}

// Config is everything `dogear serve` can be told, every role's options in one place. Errors name
// a setting as `dogear serve` spells it without the dashes (roles, state, tls-cert), so the
// person who set it finds it.
type Config struct {
	// Roles this process runs (default: all of them).
	Roles      []string
	DataDir    string
	Addr       string
	Partitions int   // 0: the log's stored count, or eventlog.DefaultPartitions for a new one
	CacheBytes int64 // block cache of each embedded store
	Logger     *slog.Logger

	// Backends. An empty Log is the embedded log under DataDir, an empty State the embedded
	// state; a process whose roles are apart from the others needs both shared (backends.go).
	//
	// Log is kafka://broker1,broker2/topic; Mirrors are topics of the same cluster holding
	// mirrored copies (MirrorMaker 2) that processors consume too.
	Log     string
	Mirrors []string
	// State is cassandra://host1,host2/keyspace, or partitioned:///dir (each partition's state
	// in its own embedded store, handed between processes on one host).
	State string
	// Group is the Kafka consumer group of the processors; SessionTimeout how soon a silent
	// member's partitions move to the others.
	Group          string
	SessionTimeout time.Duration
	// Keys is the store of the readers' keys: dir:///path (processes of one host) or
	// cassandra://host1,host2/keyspace. With it, events are sealed with their reader's key before
	// they reach Kafka, and erasure works by deleting the key (crypto-shredding, package shred);
	// without it, export and erasure are not available over Kafka.
	Keys string
	// Archive is where the archive role writes Parquet (file:///dir or s3://bucket/prefix; empty:
	// DATA_DIR/archive), every ArchiveInterval (0: never).
	Archive         string
	ArchiveInterval time.Duration
	// Models is the object store of the model registry: file:///dir or s3://bucket/prefix
	// (empty: DATA_DIR/models).
	Models string
	// MinFreeBytes: below this much free disk, ingest answers 503 and processing pauses, so the
	// embedded stores never hit a full disk (which Pebble treats as fatal).
	MinFreeBytes int64

	// The ingest role.
	Ingest ingest.Config
	// Kosync configures the KOReader sync server under /kosync (embedded log only: its accounts
	// live in the data directory); KosyncAtRoot also serves it at the root paths, for devices
	// pointed at the bare host. KosyncRegistration is "auto" (open registration in local-only
	// mode, closed when auth is on), "open" or "closed"; with auth on, openly registered accounts
	// write to readers named kosync:USERNAME, never to an existing reader (docs/security.md).
	Kosync             kosync.Config
	KosyncAtRoot       bool
	KosyncRegistration string
	// RequireAuth turns on keys and tokens even on loopback. Off loopback they are always on.
	RequireAuth bool
	// KeyRate limits each write key to this many events per second (0: no limit).
	KeyRate float64
	// TLS: certificate and key for the listener; ClientCA also requires client certificates
	// signed by it (mutual TLS between roles).
	TLSCert, TLSKey, TLSClientCA string

	// The process role. ReadyMaxLag: /readyz answers 503 while processors are more than this
	// many events behind the log (0: no bound). ProcessLinger: how long a partition's events
	// may gather after a batch before the next (processor.Config.Linger).
	ReadyMaxLag   int64
	ProcessLinger time.Duration

	// The train role: how often to retrain (0: only on request), and with what.
	TrainInterval time.Duration
	// ModelWatchInterval is how often a newly promoted model is compared with the one it
	// replaced on what readers read since (0: never); docs/orchestrator.md.
	ModelWatchInterval time.Duration
	Recommender        trainer.Config

	// Erasure (api role embedded, ingest role over Kafka). An erasure that finds data is
	// costly: at most ErasureBurst at once, then one every ErasureEvery. ErasureWait is how long
	// an erasure over Kafka waits for processors to carry it out before answering 202.
	ErasureBurst int
	ErasureEvery time.Duration
	ErasureWait  time.Duration

	// Tracer, when set, traces HTTP requests (continuing a caller's W3C trace context), Kafka
	// appends (the context travels in record headers), folds, training rounds and
	// recommendations. Nil: tracing off (tracing.Start).
	Tracer trace.TracerProvider
}

// DefaultConfig is what `dogear serve` does with no flags: every role, embedded storage.
func DefaultConfig() Config {
	return Config{
		Roles: Roles, DataDir: "dogear-data", Addr: "127.0.0.1:8080", CacheBytes: 256 << 20, Logger: slog.Default(),
		Group: "dogear-processors", SessionTimeout: 10 * time.Second,
		ArchiveInterval: time.Minute, MinFreeBytes: 128 << 20,
		Ingest: ingest.DefaultConfig(), KosyncRegistration: "auto", KeyRate: 100_000,
		// 100 ms, as Kafka Streams commits under exactly-once: at a few thousand events a
		// second or more per partition, commits cover a full batch.
		ReadyMaxLag: 1_000_000, ProcessLinger: 100 * time.Millisecond,
		TrainInterval: 10 * time.Minute, ModelWatchInterval: 10 * time.Minute, Recommender: trainer.DefaultConfig,
		ErasureBurst: 10, ErasureEvery: 6 * time.Second, ErasureWait: 30 * time.Second,
	}
}

// has reports whether the process runs role.
func (c Config) has(role string) bool { return slices.Contains(c.Roles, role) }

// embedded reports whether the process runs on the embedded log, which only one process opens.
func (c Config) embedded() bool { return c.Log == "" }

// check refuses configurations that cannot work, saying which option to change.
func (c Config) check() error {
	for _, r := range c.Roles {
		if !slices.Contains(Roles, r) {
			return fmt.Errorf("roles: unknown role %q (want %s)", r, strings.Join(Roles, ", "))
		}
	}
	if len(c.Roles) == 0 {
		return fmt.Errorf("roles: no role given (want some of %s)", strings.Join(Roles, ", "))
	}
	if c.embedded() && len(c.Roles) != len(Roles) {
		return fmt.Errorf("roles %s: roles apart need shared backends: set log to kafka://BROKERS/TOPIC and state to cassandra://HOSTS/KEYSPACE", strings.Join(c.Roles, ","))
	}
	if c.embedded() && (c.State != "" || c.Keys != "" || len(c.Mirrors) > 0) {
		return fmt.Errorf("state, keys and mirror go with a log on Kafka (kafka://...); the embedded log keeps state, and erases readers, in the data directory")
	}
	if !c.embedded() && c.State == "" && (c.has("process") || c.has("api") || c.has("train")) {
		return fmt.Errorf("the process, api and train roles over Kafka need state: cassandra://HOSTS/KEYSPACE (or partitioned:///dir on one host)")
	}
	if strings.HasPrefix(c.State, "partitioned://") && (c.has("api") || c.has("train")) {
		return fmt.Errorf("the api and train roles need shared state (state cassandra://HOSTS/KEYSPACE); partitioned state is readable only by the processes that own it")
	}
	if !c.embedded() && c.Keys != "" && c.has("archive") {
		return fmt.Errorf("roles archive with keys set: the archive would hold sealed readers' events in plain Parquet, out of reach of their erasure; run the archive role in a process without keys")
	}
	return nil
}
