package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/importer"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/progress"
	"github.com/dogear-dev/dogear/server"
)

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
	dataDirFlag(fs, &cfg) // written when no server answers at --url
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
