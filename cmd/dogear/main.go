// Command dogear is the reading-analytics engine: `dogear serve` runs ingest, processing and the
// query API in one process on embedded storage; the other subcommands operate on it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/dogear-dev/dogear/auth"
	"github.com/dogear-dev/dogear/bench"
	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/importer"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/progress"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/server"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the module version.
var version = ""

type command struct {
	name, summary string
	run           func(args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run ingest, processors and the query API on embedded storage", serve},
		{"rebuild", "recompute all state from the event log (--check compares instead)", rebuild},
		{"dump", "write every event in the log as NDJSON (partition, offset, event)", dump},
		{"loadgen", "send realistic synthetic reading events to a server, or write them as NDJSON", loadgenCmd},
		{"keys", "write keys for event sources: 'keys create NAME', 'keys list', 'keys revoke ID|NAME'", keysCmd},
		{"token", "issue a signed token: 'token --reader ID' (that reader's data) or 'token --admin'", tokenCmd},
		{"import", "load data: 'import catalog books.csv', 'import kindle EXPORT', 'import koreader statistics.sqlite3'", importCmd},
		{"eval", "train and evaluate every recommender on a KGAT-format dataset (Recall@20, NDCG@20)", evalCmd},
		{"bench", "benchmark: 'bench [ingest]' durable ingest, processing, queries; 'bench recommend' serving", benchCmd},
		{"version", "print the version", func([]string) error { fmt.Println(versionString()); return nil }},
	}
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	if isHelp(os.Args[1]) {
		usage(os.Stdout)
		return
	}
	for _, c := range commands() {
		if c.name == os.Args[1] {
			if err := c.run(os.Args[2:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return
				}
				fmt.Fprintln(os.Stderr, "dogear "+c.name+": "+err.Error())
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "dogear: unknown command %q\n\n", os.Args[1])
	usage(os.Stderr)
	os.Exit(2)
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "dogear — reading analytics and recommendations\n\nUsage: dogear <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'dogear <command> --help' for its flags. Every flag can also be set as DOGEAR_<FLAG>,\ne.g. DOGEAR_DATA_DIR=/var/lib/dogear.")
}

// newFlags makes a flag set whose flags fall back to DOGEAR_* environment variables.
func newFlags(name, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dogear %s [flags]\n\n%s.\n\nFlags (each also read from DOGEAR_<NAME>):\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, then fills every flag not given on the command line from its environment
// variable: --data-dir from DOGEAR_DATA_DIR.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: dogear %s takes flags only (see dogear %s --help)", fs.Arg(0), fs.Name(), fs.Name())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "DOGEAR_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !given[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %v", env, v, e)
			}
		}
	})
	return err
}

func logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func serve(args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("serve", "Run ingest, processors and the query API in one process on embedded storage")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder of the embedded event log and state")
	fs.IntVar(&cfg.Partitions, "partitions", 0, "partitions of a new event log (default 16; fixed once created)")
	cacheMB := fs.Int64("cache-mb", cfg.CacheBytes>>20, "block cache of each embedded store, MiB")
	fs.Int64Var(&cfg.Ingest.MaxBodyBytes, "max-body", cfg.Ingest.MaxBodyBytes, "largest ingest body in bytes, compressed and decompressed")
	fs.IntVar(&cfg.Ingest.MaxEvents, "max-events", cfg.Ingest.MaxEvents, "most events in one ingest request")
	fs.IntVar(&cfg.Ingest.MaxInFlight, "max-inflight", cfg.Ingest.MaxInFlight, "ingest requests processed at once; more get 429 with Retry-After")
	fs.DurationVar(&cfg.TrainInterval, "train-interval", cfg.TrainInterval, "retrain the recommender this often (0: only on POST /v1/models/train)")
	fs.StringVar(&cfg.KosyncRegistration, "kosync-registration", cfg.KosyncRegistration, "who may create kosync accounts from a device: auto (anyone in local-only mode, nobody when auth is on), open (anyone; with auth on they write to readers named kosync:USER) or closed; readers link accounts with POST /v1/readers/{id}/kosync")
	roles := fs.String("roles", strings.Join(server.Roles, ","), "roles of this process, from "+strings.Join(server.Roles, ", ")+" (all of them: one embedded process); roles apart need --log and --state")
	fs.StringVar(&cfg.Distributed.Log, "log", "", "event log: empty for the embedded one, or kafka://broker1,broker2/topic")
	mirrors := fs.String("mirror", "", "comma-separated topics holding mirrored copies of the log (MirrorMaker 2) that processors also consume")
	fs.StringVar(&cfg.Distributed.State, "state", "", "state for distributed roles: cassandra://host1,host2/keyspace or partitioned:///dir (one host)")
	fs.StringVar(&cfg.Distributed.Group, "group", cfg.Distributed.Group, "Kafka consumer group of the processors")
	fs.DurationVar(&cfg.Distributed.SessionTimeout, "group-session-timeout", cfg.Distributed.SessionTimeout, "how soon a dead processor's partitions move to the others")
	fs.StringVar(&cfg.Distributed.Keys, "keys", "", "readers' keys for crypto-shredding in distributed mode: dir:///path (one host) or cassandra://host1,host2/keyspace; needed for export and erasure over Kafka")
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
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.CacheBytes = *cacheMB << 20
	cfg.MinFreeBytes = *minFreeMB << 20
	cfg.Distributed.Roles = strings.Split(*roles, ",")
	if *mirrors != "" {
		cfg.Distributed.Mirrors = strings.Split(*mirrors, ",")
	}
	log, err := logger(*level)
	if err != nil {
		return err
	}
	cfg.Logger = log
	start := server.Start
	switch {
	case cfg.Distributed.Enabled():
		start = server.StartDistributed
	case *roles != strings.Join(server.Roles, ","):
		return errors.New("--roles other than all need the distributed parts: --log kafka://BROKERS/TOPIC and --state cassandra://HOSTS/KEYSPACE")
	}
	srv, err := start(cfg)
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

func rebuild(args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("rebuild", "Recompute all state from the event log; with --check, compare a rebuild with the live state instead of replacing it")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder of the embedded event log and state")
	cacheMB := fs.Int64("cache-mb", cfg.CacheBytes>>20, "block cache of each embedded store, MiB")
	check := fs.Bool("check", false, "verify that live state equals a rebuild; exit 1 on a difference")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.CacheBytes = *cacheMB << 20
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return fmt.Errorf("no data directory %s: %w", cfg.DataDir, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if *check {
		diff, err := server.Verify(ctx, cfg)
		if err != nil {
			return err
		}
		if diff != "" {
			return fmt.Errorf("state differs from a rebuild: %s", diff)
		}
		fmt.Printf("state equals a rebuild from the log (%v)\n", time.Since(start).Round(time.Millisecond))
		return nil
	}
	if err := server.Rebuild(ctx, cfg); err != nil {
		return err
	}
	fmt.Printf("state rebuilt from the log in %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func dump(args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("dump", "Write every event of the embedded log as NDJSON, partition by partition in offset order")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder of the embedded event log and state")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return fmt.Errorf("no data directory %s: %w", cfg.DataDir, err)
	}
	n, err := server.Dump(context.Background(), cfg, os.Stdout)
	if err == nil {
		fmt.Fprintf(os.Stderr, "%d events\n", n)
	}
	return err
}

func loadgenCmd(args []string) error {
	gcfg := loadgen.DefaultConfig()
	scfg := loadgen.SendConfig{URL: "http://127.0.0.1:8080/v1/events", Batch: 500, Concurrency: 4}
	fs := newFlags("loadgen", "Send realistic synthetic reading traffic to a server at a rate, or write it as NDJSON to a file")
	fs.StringVar(&scfg.URL, "url", scfg.URL, "ingest URL to post batches to")
	out := fs.String("out", "", "write NDJSON to this file ('-' for stdout) instead of sending")
	fs.Float64Var(&scfg.Rate, "rate", 10_000, "events per second in total; 0 = as fast as the server acknowledges")
	fs.DurationVar(&scfg.Duration, "duration", 0, "stop after this long (0: no limit)")
	fs.Int64Var(&scfg.MaxEvents, "events", 100_000, "stop after this many events (0: no limit)")
	fs.IntVar(&scfg.Batch, "batch", scfg.Batch, "events per request")
	fs.IntVar(&scfg.Concurrency, "concurrency", scfg.Concurrency, "concurrent requests")
	fs.BoolVar(&scfg.Gzip, "gzip", false, "gzip request bodies")
	fs.StringVar(&scfg.Key, "key", "", "write key, when the server requires one (dogear keys create)")
	fs.IntVar(&gcfg.Readers, "readers", gcfg.Readers, "simulated readers")
	fs.IntVar(&gcfg.Books, "books", gcfg.Books, "books in the catalog (Zipf popularity)")
	fs.Uint64Var(&gcfg.Seed, "seed", gcfg.Seed, "random seed: the same seed and flags give the same events")
	days := fs.Int("days", 60, "event times span this many days before --end")
	end := fs.String("end", "", "latest event time, RFC 3339 (default now)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *end != "" {
		t, err := time.Parse(time.RFC3339, *end)
		if err != nil {
			return fmt.Errorf("--end: %v", err)
		}
		gcfg.End = t
	}
	gcfg.Start = gcfg.End.Add(-time.Duration(*days) * 24 * time.Hour)
	if gcfg.Readers < 1 || gcfg.Books < 2 || scfg.Batch < 1 || scfg.Concurrency < 1 {
		return errors.New("--readers, --batch and --concurrency must be at least 1 and --books at least 2")
	}
	if *out == "" {
		// Readers read the server's catalog when it has one, most rated books most often.
		books, err := importer.ServerOf(scfg.URL, "").Catalog(context.Background())
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "could not read the server's catalog (%v): synthetic book ids\n", err)
		case len(books) == 0:
			fmt.Fprintln(os.Stderr, "the server has no catalog (dogear import catalog): synthetic book ids")
		default:
			sort.SliceStable(books, func(i, j int) bool { return books[i].Ratings > books[j].Ratings })
			for _, b := range books {
				gcfg.Catalog = append(gcfg.Catalog, loadgen.CatalogBook{ID: b.ID, AverageRating: b.AverageRating})
			}
			fmt.Fprintf(os.Stderr, "readers read the server's catalog of %d books\n", len(books))
		}
	}
	gen := loadgen.New(gcfg)
	if *out != "" {
		return writeNDJSON(gen, *out, scfg.MaxEvents)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	scfg.Progress = os.Stderr
	res, err := loadgen.Send(ctx, scfg, func(n int) ([]byte, int) {
		return loadgen.EncodeBody(gen.Batch(n), scfg.Gzip), n
	})
	if err != nil {
		return err
	}
	fmt.Printf("sent %d events in %d requests (%d failed) in %v: %.0f events/s acknowledged, batch latency p50 %v p99 %v\n",
		res.Events, res.Requests, res.Failed, res.Elapsed.Round(time.Millisecond), res.EventsPerSecond(),
		res.Percentile(0.5).Round(time.Microsecond), res.Percentile(0.99).Round(time.Microsecond))
	if res.Failed > 0 {
		return fmt.Errorf("%d requests were not acknowledged", res.Failed)
	}
	return nil
}

func writeNDJSON(gen *loadgen.Generator, path string, n int64) error {
	if n <= 0 {
		return errors.New("--out needs --events > 0")
	}
	w := os.Stdout
	if path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	for written := int64(0); written < n; {
		k := min(10_000, n-written)
		if err := loadgen.EncodeNDJSON(w, gen.Batch(int(k))); err != nil {
			return err
		}
		written += k
	}
	if path != "-" {
		fmt.Fprintf(os.Stderr, "wrote %d events to %s\n", n, path)
	}
	return nil
}

func keysCmd(args []string) error {
	const use = "usage: dogear keys create NAME | list | revoke ID|NAME [--data-dir DIR]"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Println(use + "\n\nWrite keys for event sources, stored hashed in DATA_DIR/keys.json; a running server sees changes on its next request.")
		return nil
	}
	if len(args) == 0 {
		return errors.New(use)
	}
	verb, rest := args[0], args[1:]
	var arg string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		arg, rest = rest[0], rest[1:]
	}
	cfg := server.DefaultConfig()
	fs := newFlags("keys "+verb, "Manage write keys (stored hashed in DATA_DIR/keys.json; a running server sees changes on its next request)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder of the embedded event log and state")
	if err := parse(fs, rest); err != nil {
		return err
	}
	keys := auth.OpenKeys(cfg.DataDir)
	switch verb {
	case "create":
		if arg == "" {
			return errors.New("name the source: dogear keys create NAME")
		}
		key, rec, err := keys.Create(arg)
		if err != nil {
			return err
		}
		fmt.Printf("%s\n", key)
		fmt.Fprintf(os.Stderr, "write key %s for %q: shown once, stored only hashed; send it as Authorization: Bearer <key>\n", rec.ID, rec.Name)
	case "list":
		list, err := keys.List()
		if err != nil {
			return err
		}
		for _, k := range list {
			state := "active"
			if k.Revoked != nil {
				state = "revoked " + k.Revoked.Format(time.RFC3339)
			}
			fmt.Printf("%s  %-20s  created %s  %s\n", k.ID, k.Name, k.Created.Format(time.RFC3339), state)
		}
	case "revoke":
		n, err := keys.Revoke(arg)
		if err != nil {
			return err
		}
		fmt.Printf("revoked %d key(s)\n", n)
	default:
		return fmt.Errorf("unknown keys command %q: create, list or revoke", verb)
	}
	return nil
}

func tokenCmd(args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("token", "Issue a signed, expiring token: a reader token opens only that reader's insights, recommendations and export; an admin token opens everything")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder whose token secret signs the token")
	reader := fs.String("reader", "", "issue a token for this reader")
	admin := fs.Bool("admin", false, "issue an admin token")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*reader == "") == !*admin {
		return errors.New("say --reader ID or --admin (one of them)")
	}
	tokens, err := auth.OpenTokens(cfg.DataDir)
	if err != nil {
		return err
	}
	role, subject := auth.RoleReader, *reader
	if *admin {
		role, subject = auth.RoleAdmin, "admin"
	}
	tok, err := tokens.Issue(role, subject, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

func importCmd(args []string) error {
	const use = "usage: dogear import catalog|kindle|koreader PATH [flags]; see dogear import KIND --help"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Println(use + "\n\n  catalog FILE     book metadata (goodbooks-10k books.csv)\n  kindle EXPORT    a Kindle 'Request your data' export (folder or zip) as one reader's events\n  koreader FILE    KOReader's statistics.sqlite3 as one reader's page events")
		return nil
	}
	if len(args) == 0 {
		return errors.New(use)
	}
	kind, rest := args[0], args[1:]
	var path string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		path, rest = rest[0], rest[1:]
	}
	switch kind {
	case "catalog":
		return importCatalog(path, rest)
	case "kindle", "koreader":
		return importReaderData(kind, path, rest)
	}
	return fmt.Errorf("unknown import %q: catalog, kindle or koreader", kind)
}

func importCatalog(path string, args []string) error {
	cfg := server.DefaultConfig()
	fs := newFlags("import catalog", "Load book metadata (goodbooks-10k books.csv: book_id, title, authors, year, isbn, covers, ratings) into a running server, in use at once; with no server running, into the data directory for the next start")
	url := fs.String("url", "http://127.0.0.1:8080", "the running dogear")
	token := fs.String("token", "", "admin token, when the server requires auth (dogear token --admin)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder of the embedded event log and state, written when no server answers at --url")
	if err := parse(fs, args); err != nil {
		return err
	}
	if path == "" {
		return errors.New("name the CSV file: dogear import catalog books.csv")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	books, rep, err := catalog.ReadGoodbooks(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Printf("%s: %d rows read, %d books\n", path, rep.Rows, rep.Books)
	for reason, n := range rep.Skipped {
		fmt.Printf("  skipped %d rows: %s\n", n, reason)
	}
	res, err := importer.Server{Base: *url, Token: *token}.PostCatalog(context.Background(), books, true)
	if err == nil {
		fmt.Printf("the server at %s now has %d books (%d new, %d replaced), in use at once\n", *url, res.Books, res.Added, res.Replaced)
		return nil
	}
	if !errors.Is(err, importer.ErrNoServer) {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	if err := catalog.Save(cfg.DataDir, books); err != nil {
		return err
	}
	fmt.Printf("no server at %s: wrote %s, which dogear serve --data-dir %s loads at start\n", *url, filepath.Join(cfg.DataDir, catalog.FileName), cfg.DataDir)
	return nil
}

func importReaderData(kind, path string, args []string) error {
	what := map[string]string{
		"kindle":   "Import Amazon's Kindle data export (a folder or the .zip from 'Request your data') as one reader's sessions, highlights and finishes, and the titles of Digital Items.csv into the catalog",
		"koreader": "Import KOReader's statistics.sqlite3 as one reader's page events (pages rescaled as KOReader's page_stat view does)",
	}[kind]
	fs := newFlags("import "+kind, what)
	reader := fs.String("reader", "", "whose data it is: the dogear reader id (required)")
	url := fs.String("url", "http://127.0.0.1:8080/v1/events", "ingest URL of a running dogear")
	out := fs.String("out", "", "write the events as NDJSON to this file ('-' for stdout) instead of sending them")
	key := fs.String("key", "", "write key, when the server requires one (dogear keys create)")
	token := fs.String("token", "", "admin token, when the server requires auth: reads the reader's zone and adds titles to the catalog")
	tz := fs.String("tz", "", "IANA time zone the reader lives in, which buckets their days (default: the reader's zone on the server, else UTC)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if path == "" || *reader == "" {
		return fmt.Errorf("usage: dogear import %s PATH --reader ID", kind)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := importer.ServerOf(*url, *token)
	opts := importer.Options{Reader: *reader, TZ: *tz}
	zoneNote := *tz + " (--tz)"
	switch {
	case *tz != "":
		if _, err := event.Location(*tz); err != nil {
			return fmt.Errorf("--tz %q: not an IANA time zone (e.g. Europe/Berlin)", *tz)
		}
	case *out != "":
		zoneNote = "none (with --out the server is not asked; give --tz)"
	default:
		zone, err := srv.ReaderZone(ctx, *reader)
		if err != nil {
			return fmt.Errorf("asking the server for the reader's time zone (or give --tz): %w", err)
		}
		opts.TZ, zoneNote = zone, zone+" (the reader's zone on the server)"
		if zone == "" {
			zoneNote = "UTC (no --tz, and the server holds no zone for the reader)"
		}
	}
	var sink importer.Sink = &importer.HTTPSink{Client: ingest.Client{URL: *url, Key: *key}}
	if *out != "" {
		fsink, err := importer.NewFileSink(*out)
		if err != nil {
			return err
		}
		defer fsink.Abort()
		sink = fsink
	}
	bar := progress.New(os.Stderr)
	var sum *importer.Summary
	var titles []catalog.Book
	var err error
	if kind == "kindle" {
		sum, titles, err = importer.Kindle(ctx, path, opts, sink, bar)
	} else {
		sum, err = importer.KOReader(ctx, path, opts, sink, bar)
	}
	if err != nil {
		return err
	}
	sum.TimeZone = zoneNote
	fmt.Printf("%s: %s\n", path, sum)
	if len(titles) == 0 {
		return nil
	}
	if *out != "" {
		b, _ := json.MarshalIndent(titles, "", "  ")
		fmt.Printf("%d titles not sent (--out); to add them: curl -X POST %s/v1/catalog?replace=false -d @titles.json, with titles.json:\n%s\n", len(titles), srv.Base, b)
		return nil
	}
	res, err := srv.PostCatalog(ctx, titles, false)
	if err != nil {
		return fmt.Errorf("adding the export's titles to the catalog: %w", err)
	}
	fmt.Printf("catalog: %d titles added (books it already had are kept), %d books in all\n", res.Added, res.Books)
	return nil
}

func evalCmd(args []string) error {
	opts := recommend.EvalOptions{ValidationFraction: 0.2, ValidationUsers: 20_000, Seed: 1, Progress: os.Stderr}
	fs := newFlags("eval", "Tune each recommender on a validation split of train.txt, retrain on all of it, and rank all unseen books for every test reader")
	data := fs.String("data", "../shared/data/amazon-book", "folder with train.txt and test.txt (KGAT format)")
	fs.Uint64Var(&opts.Seed, "seed", opts.Seed, "seed of the validation split")
	fs.IntVar(&opts.ValidationUsers, "validation-users", opts.ValidationUsers, "tune on at most this many validation readers (0: all)")
	fs.BoolVar(&opts.Quick, "quick", false, "one setting per algorithm (a smoke run)")
	plotPath := fs.String("plot", "", "also draw the results as a bar chart (.svg, .png or .pdf)")
	if err := parse(fs, args); err != nil {
		return err
	}
	start := time.Now()
	ds, err := recommend.LoadKGAT(*data)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d readers, %d books, %d training and %d test interactions (loaded in %v)\n",
		*data, ds.Train.Rows, ds.Train.Cols, ds.Train.NNZ(), ds.Test.NNZ(), time.Since(start).Round(time.Millisecond))
	results := recommend.RunEval(ds, opts)
	fmt.Print(recommend.FormatTable(results))
	if *plotPath != "" {
		if err := recommend.PlotResults(results, *plotPath); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", *plotPath)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("\nwhole run: %v, peak process memory (max RSS) %d MB\n", time.Since(start).Round(time.Second), ru.Maxrss/1024)
	return nil
}

func benchCmd(args []string) error {
	if len(args) > 0 && args[0] == "recommend" {
		return benchRecommend(args[1:])
	}
	if len(args) > 0 && args[0] == "ingest" {
		args = args[1:]
	}
	opts := bench.Options{Runs: 3, Events: 1_000_000, Batch: 1000, Concurrency: 8, Queries: 300, Out: os.Stderr}
	fs := newFlags("bench", "Benchmark durable HTTP ingest against bare log appends, processing, and query latency; prints medians")
	fs.IntVar(&opts.Runs, "runs", opts.Runs, "repetitions; the report gives medians")
	fs.IntVar(&opts.Events, "events", opts.Events, "events per run")
	fs.IntVar(&opts.Batch, "batch", opts.Batch, "events per request")
	fs.IntVar(&opts.Concurrency, "concurrency", opts.Concurrency, "concurrent clients")
	fs.BoolVar(&opts.Gzip, "gzip", false, "gzip request bodies")
	fs.IntVar(&opts.Queries, "queries", opts.Queries, "queries per kind")
	fs.BoolVar(&opts.Kafka, "kafka", false, "also measure ingest into Kafka (an in-process kfake cluster) in each run")
	fs.StringVar(&opts.Dir, "dir", "", "folder for the benchmark's data (default: the system temp folder)")
	return runBench(fs, args, func(ctx context.Context) error {
		runs, err := bench.Ingest(ctx, opts)
		if err == nil {
			bench.Report(os.Stdout, opts, runs)
		}
		return err
	})
}

func benchRecommend(args []string) error {
	o := bench.RecommendOptions{Runs: 3, Duration: 10 * time.Second, Concurrency: 4, N: 20, Out: os.Stderr}
	fs := newFlags("bench recommend", "Load Amazon-book train.txt as finish events, train a model through the pipeline, and measure recommendation latency and throughput over loopback")
	fs.StringVar(&o.Data, "data", "../shared/data/amazon-book", "KGAT-format folder whose train.txt becomes reading events")
	fs.IntVar(&o.Runs, "runs", o.Runs, "repetitions; the report gives medians")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "length of each measured phase")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "keep-alive client connections")
	fs.IntVar(&o.N, "n", o.N, "recommendations per request")
	fs.StringVar(&o.Dir, "dir", "", "folder for the benchmark's data (default: the system temp folder)")
	return runBench(fs, args, func(ctx context.Context) error {
		runs, err := bench.Recommend(ctx, o)
		if err == nil {
			bench.ReportServing(os.Stdout, o, runs)
		}
		return err
	})
}

// runBench adds --cpuprofile to a benchmark's flags, parses them, and runs the benchmark under
// the profile with a context that Ctrl-C ends.
func runBench(fs *flag.FlagSet, args []string, run func(ctx context.Context) error) error {
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	if err := parse(fs, args); err != nil {
		return err
	}
	stopProfile, err := startProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx)
}

// startProfile starts a CPU profile to path (nothing when path is empty) and returns its stop.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
