package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/dogear-dev/dogear/importer"
	"github.com/dogear-dev/dogear/loadgen"
)

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
