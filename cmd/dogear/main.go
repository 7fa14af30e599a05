// Command dogear is the reading-analytics engine: `dogear serve` runs ingest, processing and the
// query API in one process on embedded storage; the other subcommands operate on it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/dogear-dev/dogear/server"
	// The container image has no CA bundle: Mozilla's roots, compiled in, verify S3 and Kafka
	// over TLS there; a system with its own roots keeps using those.
	_ "golang.org/x/crypto/x509roots/fallback"
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
		{"convert-ratings", "turn a ratings CSV (user_id,book_id,rating) into a KGAT-format dataset for eval", convertRatingsCmd},
		{"bench", "benchmark: 'bench [ingest]' durable ingest, processing, queries; 'bench recommend' serving; 'bench queries' a running server's query latency", benchCmd},
		{"operator", "run the Kubernetes operator for ReadingPipeline resources", operatorCmd},
		{"orchestrate", "scale ahead of the reading rhythm: 'orchestrate replay --trace FILE --policy hpa|keda|predictive'", orchestrateCmd},
		{"ledger", "the configuration ledger on CometBFT: 'ledger init|genesis|node|propose|approve|show|follow'", ledgerCmd},
		{"image", "build dogear's OCI image (static binary, non-root, SBOM) into an OCI layout, without Docker", imageCmd},
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

// dataDirFlag is --data-dir, which every subcommand that touches a data directory has.
func dataDirFlag(fs *flag.FlagSet, cfg *server.Config) {
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "dogear's data directory: event log, state, keys, token secret, catalog")
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

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
