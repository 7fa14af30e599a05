package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dogear-dev/dogear/bench"
	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/server"
	"github.com/dogear-dev/dogear/trainer"
)

func evalCmd(args []string) error {
	opts := recommend.EvalOptions{ValidationFraction: 0.2, ValidationUsers: 20_000, Seed: 1, SelectBudget: trainer.DefaultConfig.SearchBudget, Progress: os.Stderr}
	fs := newFlags("eval", "Tune each recommender on a validation split of train.txt, retrain on all of it, and rank all unseen books for every test reader")
	data := fs.String("data", "../shared/data/amazon-book", "folder with train.txt and test.txt (KGAT format)")
	fs.Uint64Var(&opts.Seed, "seed", opts.Seed, "seed of the validation split")
	fs.IntVar(&opts.ValidationUsers, "validation-users", opts.ValidationUsers, "tune on at most this many validation readers (0: all)")
	fs.BoolVar(&opts.Quick, "quick", false, "one setting per algorithm (a smoke run)")
	fs.DurationVar(&opts.SelectBudget, "select-budget", opts.SelectBudget, "search budget of the served model's selection (as the trainer's --train-search-budget)")
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

func convertRatingsCmd(args []string) error {
	o := recommend.RatingsOptions{MinRating: 4, TestFraction: 0.2, Seed: 1}
	fs := newFlags("convert-ratings", "Turn a ratings CSV (user_id,book_id,rating, as goodbooks-10k ships them) into a KGAT-format folder: ratings at or above --min-rating are positives, a random --test share of each reader's goes to test.txt")
	in := fs.String("in", "", "the ratings CSV")
	out := fs.String("out", "", "the folder to write train.txt, test.txt, user_list.txt and item_list.txt into")
	fs.IntVar(&o.MinRating, "min-rating", o.MinRating, "lowest rating that counts as a positive interaction")
	fs.Float64Var(&o.TestFraction, "test", o.TestFraction, "share of each reader's positives held out for test")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the split")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		return errors.New("convert-ratings needs --in RATINGS.csv and --out DIR")
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	readers, books, err := recommend.ConvertRatings(f, *out, o)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d readers, %d books\n", *out, readers, books)
	return nil
}

func benchCmd(args []string) error {
	if len(args) > 0 && args[0] == "recommend" {
		return benchRecommend(args[1:])
	}
	if len(args) > 0 && args[0] == "queries" {
		return benchQueries(args[1:])
	}
	if len(args) > 0 && args[0] == "ingest" {
		args = args[1:]
	}
	opts := bench.Options{Runs: 3, Events: 1_000_000, Batch: 1000, Concurrency: 8, Queries: 300, Readers: 20_000, Books: 5_000,
		ProcessLinger: server.DefaultConfig().ProcessLinger, Out: os.Stderr}
	fs := newFlags("bench", "Benchmark durable HTTP ingest against bare log appends, processing, and query latency; prints medians")
	fs.IntVar(&opts.Runs, "runs", opts.Runs, "repetitions; the report gives medians")
	fs.IntVar(&opts.Events, "events", opts.Events, "events per run")
	fs.IntVar(&opts.Batch, "batch", opts.Batch, "events per request")
	fs.IntVar(&opts.Concurrency, "concurrency", opts.Concurrency, "concurrent clients")
	fs.BoolVar(&opts.Gzip, "gzip", false, "gzip request bodies")
	fs.IntVar(&opts.Queries, "queries", opts.Queries, "queries per kind")
	fs.IntVar(&opts.Readers, "readers", opts.Readers, "distinct readers the events spread over")
	fs.IntVar(&opts.Books, "books", opts.Books, "distinct books the events spread over")
	fs.DurationVar(&opts.ProcessLinger, "process-linger", opts.ProcessLinger, "the server's --process-linger")
	fs.BoolVar(&opts.Kafka, "kafka", false, "also measure ingest into Kafka (an in-process kfake cluster) in each run")
	fs.StringVar(&opts.Dir, "dir", "", "folder for the benchmark's data (default: the system temp folder)")
	fs.StringVar(&opts.IngestProfile, "ingest-cpuprofile", "", "write a CPU profile of the first run's HTTP ingest with processing, from the first post until all is folded, to this file")
	return runBench(fs, args, func(ctx context.Context) error {
		runs, err := bench.Ingest(ctx, opts)
		if err == nil {
			bench.Report(os.Stdout, opts, runs)
		}
		return err
	})
}

// benchQueries measures query latency against a running server, for readers and books drawn as
// dogear loadgen with the same flags draws them.
func benchQueries(args []string) error {
	gcfg := loadgen.DefaultConfig()
	fs := newFlags("bench queries", "Measure query latency (reader insights, book stats, trending, stats) of a running server, for the readers and books dogear loadgen sent it")
	url := fs.String("url", "http://127.0.0.1:8080", "the server")
	token := fs.String("token", "", "admin token, when the server requires one (dogear token --admin)")
	queries := fs.Int("queries", 300, "queries per kind and run")
	runs := fs.Int("runs", 3, "repetitions; the report gives medians")
	fs.IntVar(&gcfg.Readers, "readers", gcfg.Readers, "readers, as given to dogear loadgen")
	fs.IntVar(&gcfg.Books, "books", gcfg.Books, "books, as given to dogear loadgen")
	fs.Uint64Var(&gcfg.Seed, "seed", gcfg.Seed, "seed, as given to dogear loadgen")
	sent := fs.Int("events", 100_000, "events dogear loadgen sent")
	return runBench(fs, args, func(ctx context.Context) error {
		if *queries < 1 || *runs < 1 || *sent < 1 {
			return errors.New("--queries, --runs and --events must be at least 1")
		}
		// The first of the events loadgen sent pick readers and books as often as they read.
		events := loadgen.New(gcfg).Batch(min(*sent, 100_000))
		rng := rand.New(rand.NewPCG(1, 2))
		pick := func() event.Event { return events[rng.IntN(len(events))] }
		p50s, p99s := map[string][]float64{}, map[string][]float64{}
		for r := range *runs {
			p50, p99, err := bench.QueryLatency(ctx, strings.TrimSuffix(*url, "/"), *token, *queries, pick)
			if err != nil {
				return err
			}
			for _, k := range bench.QueryKinds {
				fmt.Fprintf(os.Stderr, "run %d/%d %-16s p50 %v p99 %v\n", r+1, *runs, k, p50[k], p99[k])
				p50s[k] = append(p50s[k], float64(p50[k].Microseconds())/1000)
				p99s[k] = append(p99s[k], float64(p99[k].Microseconds())/1000)
			}
		}
		fmt.Printf("\nMedians of %d runs of %d queries per kind against %s:\n\n| query | p50 | p99 |\n| --- | --- | --- |\n", *runs, *queries, *url)
		for _, k := range bench.QueryKinds {
			slices.Sort(p50s[k])
			slices.Sort(p99s[k])
			fmt.Printf("| %s | %.2f ms | %.2f ms |\n", k, p50s[k][*runs/2], p99s[k][*runs/2])
		}
		return nil
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
	stopProfile, err := bench.StartProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx)
}
