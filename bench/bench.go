// Package bench measures dogear end to end on this machine: durable ingest over loopback HTTP
// against a baseline of bare log appends, processing catch-up, and insight query latency.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/server"
)

// Options shape a benchmark run.
type Options struct {
	Runs        int
	Events      int // per run
	Batch       int
	Concurrency int
	Gzip        bool
	Queries     int // per query kind
	// Readers and Books shape the events: how many distinct readers and books they spread over.
	Readers, Books int
	Dir            string
	Out            io.Writer
	// ProcessLinger is the servers' processor linger (server.Config.ProcessLinger).
	ProcessLinger time.Duration
	// Kafka also measures ingest into Kafka (franz-go's in-process cluster, kfake) in each run.
	Kafka bool
	// IngestProfile, when set, is a file for a CPU profile of the first run's HTTP ingest with
	// processing, from the first post until every event is folded: where the measured time goes,
	// without the other phases.
	IngestProfile string
}

// Run is one run's measurements.
type Run struct {
	BaselineEPS float64 // bare eventlog appends of the same events, same concurrency
	NullSinkEPS float64 // the same bodies posted to a server that only writes and fsyncs them
	// IngestOnlyEPS is the same bodies posted to dogear's ingest handler over a fresh embedded
	// log, with nothing folding them: the ingest path alone.
	IngestOnlyEPS float64
	IngestEPS     float64 // HTTP ingest, acknowledged after fsync
	AckP50        time.Duration
	AckP99        time.Duration
	// HalfRateP50 and HalfRateP99 are ack latencies when the same bodies go to a fresh server
	// at half of IngestEPS: the latency of a server that is not saturated.
	HalfRateP50 time.Duration
	HalfRateP99 time.Duration
	// HalfRateFsyncP99 is the event log's group commits' 99th percentile (write and fsync) in
	// the half-rate phase, as the upper bound of its histogram bucket: the part of the ack
	// latency the disk takes.
	HalfRateFsyncP99 time.Duration
	ProcessedEPS     float64 // events folded into state per second, from ingest start to lag 0
	// ProcessedCPU is the process's CPU time (user and system, every core) over the same span,
	// in seconds per million events: the cost, less sensitive than a rate to what else a shared
	// machine runs. It includes the benchmark's own clients, the same for every build.
	ProcessedCPU float64
	// CommitRecords is the mean number of records a state commit covered over the same span.
	CommitRecords float64
	QueryP50      map[string]time.Duration
	QueryP99      map[string]time.Duration
	KafkaEPS      float64 // HTTP ingest acknowledged after Kafka acks=all (kfake, 3 brokers)
	KafkaP50      time.Duration
	KafkaP99      time.Duration
}

// Ingest runs the benchmark opts.Runs times and prints each run and the medians.
func Ingest(ctx context.Context, opts Options) ([]Run, error) {
	cfg := loadgen.DefaultConfig()
	cfg.Readers, cfg.Books = opts.Readers, opts.Books
	fmt.Fprintf(opts.Out, "generating %d events of %d readers and %d books in batches of %d...\n", opts.Events, opts.Readers, opts.Books, opts.Batch)
	gen := loadgen.New(cfg)
	batches := opts.Events / opts.Batch
	events := make([][]event.Event, batches)
	for i := range events {
		events[i] = gen.Batch(opts.Batch)
	}
	bodies := make([][]byte, batches)
	for i := range bodies {
		bodies[i] = loadgen.EncodeBody(events[i], opts.Gzip)
	}
	if len(events) > 0 { // sizes of the first batch's events
		var jsonBytes, storedBytes int
		for _, e := range events[0] {
			jsonBytes, storedBytes = jsonBytes+len(e.Marshal()), storedBytes+len(e.Encode())
		}
		fmt.Fprintf(opts.Out, "an event averages %d bytes as JSON, %d in its stored form\n", jsonBytes/len(events[0]), storedBytes/len(events[0]))
	}
	var runs []Run
	for r := 1; r <= opts.Runs; r++ {
		run, err := once(ctx, opts, events, bodies)
		opts.IngestProfile = "" // the first run's only
		if err != nil {
			return runs, err
		}
		if opts.Kafka {
			if err := kafkaIngest(ctx, opts, bodies, &run); err != nil {
				return runs, err
			}
		}
		fmt.Fprintf(opts.Out, "run %d/%d: baseline %.0f ev/s, null sink %.0f ev/s, ingest only %.0f ev/s, ingest %.0f ev/s (p50 %v, p99 %v; at half rate p50 %v, p99 %v, log commits p99 ≤ %v), processed %.0f ev/s (%.2f CPU s per 1M, %.0f records per state commit), kafka ingest %.0f ev/s\n",
			r, opts.Runs, run.BaselineEPS, run.NullSinkEPS, run.IngestOnlyEPS, run.IngestEPS, run.AckP50, run.AckP99, run.HalfRateP50, run.HalfRateP99, run.HalfRateFsyncP99, run.ProcessedEPS, run.ProcessedCPU, run.CommitRecords, run.KafkaEPS)
		runs = append(runs, run)
	}
	return runs, nil
}

func once(ctx context.Context, opts Options, events [][]event.Event, bodies [][]byte) (Run, error) {
	var run Run

	// Baseline: the same events appended straight to a fresh log.
	dir, err := os.MkdirTemp(opts.Dir, "bench-baseline-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(dir)
	log, err := eventlog.OpenPebble(dir, 0, 256<<20)
	if err != nil {
		return run, err
	}
	entries := make([][]eventlog.Entry, len(events))
	for i, batch := range events {
		for _, e := range batch {
			entries[i] = append(entries[i], eventlog.Entry{ID: e.ID, Key: e.Reader, Value: e.Encode()})
		}
	}
	start := time.Now()
	work := make(chan int)
	done := make(chan error, opts.Concurrency)
	for range opts.Concurrency {
		go func() {
			for i := range work {
				if _, err := log.Append(ctx, entries[i]); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for i := range entries {
		work <- i
	}
	close(work)
	for range opts.Concurrency {
		if err := <-done; err != nil {
			return run, err
		}
	}
	run.BaselineEPS = float64(len(entries)*opts.Batch) / time.Since(start).Seconds()
	log.Close()

	if run.NullSinkEPS, err = nullSink(ctx, opts, bodies); err != nil {
		return run, err
	}
	if run.IngestOnlyEPS, err = ingestOnly(ctx, opts, bodies); err != nil {
		return run, err
	}

	// The real thing: a server on loopback, clients posting the pre-encoded batches.
	srv, stopServer, err := startServer(opts, "bench-server-", nil)
	if err != nil {
		return run, err
	}
	defer stopServer()
	stopProfile, err := StartProfile(opts.IngestProfile)
	if err != nil {
		return run, err
	}
	commitsBefore, err := histogram(processor.Metrics, "dogear_processor_batch_records")
	if err != nil {
		stopProfile()
		return run, err
	}
	start, cpuStart := time.Now(), processCPU()
	res, err := sendBodies(ctx, "http://"+srv.Addr()+"/v1/events", opts, 0, bodies)
	if err != nil {
		stopProfile()
		return run, err
	}
	run.IngestEPS = res.EventsPerSecond()
	run.AckP50, run.AckP99 = res.Percentile(0.5), res.Percentile(0.99)
	for srv.Processor().TotalLag() > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	run.ProcessedEPS = float64(res.Events) / time.Since(start).Seconds()
	run.ProcessedCPU = (processCPU() - cpuStart).Seconds() * 1e6 / float64(res.Events)
	commitsAfter, err := histogram(processor.Metrics, "dogear_processor_batch_records")
	if err != nil {
		stopProfile()
		return run, err
	}
	run.CommitRecords = (commitsAfter.GetSampleSum() - commitsBefore.GetSampleSum()) / float64(commitsAfter.GetSampleCount()-commitsBefore.GetSampleCount())
	stopProfile()

	// Query latency over the state just built.
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() event.Event { b := events[rng.IntN(len(events))]; return b[rng.IntN(len(b))] }
	run.QueryP50, run.QueryP99, err = QueryLatency(ctx, "http://"+srv.Addr(), "", opts.Queries, pick)
	if err != nil {
		return run, err
	}

	// The first server's background work (its last archive pass, compactions) would share the
	// cores with the next one: it goes first.
	if err := srv.Shutdown(ctx); err != nil {
		return run, err
	}
	run.HalfRateP50, run.HalfRateP99, run.HalfRateFsyncP99, err = halfRate(ctx, opts, bodies, run.IngestEPS/2)
	return run, err
}

// processCPU is the CPU time the process has used so far, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// StartProfile starts a CPU profile to path (nothing when path is empty) and returns its stop.
func StartProfile(path string) (func(), error) {
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

// QueryKinds are the queries QueryLatency measures, in the order reports list them.
var QueryKinds = []string{"reader_insights", "book_stats", "trending", "stats"}

// QueryLatency sends each kind of query n times, one at a time over one keep-alive connection,
// to the server at base (with token as a bearer token when not empty), for readers and books
// drawn by pick, and returns each kind's p50 and p99.
func QueryLatency(ctx context.Context, base, token string, n int, pick func() event.Event) (p50, p99 map[string]time.Duration, err error) {
	urls := map[string]func() string{
		"reader_insights": func() string { return base + "/v1/readers/" + pick().Reader + "/insights" },
		"book_stats":      func() string { return base + "/v1/books/" + pick().Book + "/stats" },
		"trending":        func() string { return base + "/v1/trending" },
		"stats":           func() string { return base + "/v1/stats" },
	}
	p50, p99 = map[string]time.Duration{}, map[string]time.Duration{}
	client := &http.Client{}
	for _, kind := range QueryKinds {
		var lat []time.Duration
		for range n {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, urls[kind](), nil)
			if err != nil {
				return nil, nil, err
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return nil, nil, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, nil, fmt.Errorf("%s %s: status %d", kind, req.URL, resp.StatusCode)
			}
			lat = append(lat, time.Since(t0))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p50[kind], p99[kind] = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return p50, p99, nil
}

// Report prints the medians over runs as a Markdown table.
func Report(w io.Writer, opts Options, runs []Run) {
	med := func(f func(Run) float64) float64 { return median(runs, f) }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Fprintf(w, "\nMedians of %d runs, %d events per run of %d readers and %d books, batches of %d, %d concurrent clients, gzip=%v:\n\n",
		len(runs), opts.Events, opts.Readers, opts.Books, opts.Batch, opts.Concurrency, opts.Gzip)
	fmt.Fprintf(w, "| measure | median |\n| --- | --- |\n")
	fmt.Fprintf(w, "| baseline: bare durable log appends | %.0f events/s |\n", med(func(r Run) float64 { return r.BaselineEPS }))
	fmt.Fprintf(w, "| null sink: read body, write, fsync, answer (the ceiling) | %.0f events/s |\n", med(func(r Run) float64 { return r.NullSinkEPS }))
	fmt.Fprintf(w, "| ingest only: dogear's ingest handler over an embedded log, nothing folding | %.0f events/s |\n", med(func(r Run) float64 { return r.IngestOnlyEPS }))
	fmt.Fprintf(w, "| HTTP ingest, acknowledged after fsync | %.0f events/s |\n", med(func(r Run) float64 { return r.IngestEPS }))
	fmt.Fprintf(w, "| HTTP ingest / null sink | %.3f |\n", med(func(r Run) float64 { return r.IngestEPS / r.NullSinkEPS }))
	fmt.Fprintf(w, "| ack latency p50 per batch | %.2f ms |\n", med(func(r Run) float64 { return ms(r.AckP50) }))
	fmt.Fprintf(w, "| ack latency p99 per batch | %.2f ms |\n", med(func(r Run) float64 { return ms(r.AckP99) }))
	fmt.Fprintf(w, "| ack latency p50 / p99 per batch at half that rate | %.2f / %.2f ms |\n",
		med(func(r Run) float64 { return ms(r.HalfRateP50) }), med(func(r Run) float64 { return ms(r.HalfRateP99) }))
	fmt.Fprintf(w, "| the log's group commits (write + fsync) p99 at half that rate, bucket bound | ≤ %.1f ms |\n",
		med(func(r Run) float64 { return ms(r.HalfRateFsyncP99) }))
	fmt.Fprintf(w, "| ingest start to all folded into state | %.0f events/s |\n", med(func(r Run) float64 { return r.ProcessedEPS }))
	fmt.Fprintf(w, "| CPU of the process over that span, every core | %.2f s per million events |\n", med(func(r Run) float64 { return r.ProcessedCPU }))
	fmt.Fprintf(w, "| records per state commit over that span, mean | %.0f |\n", med(func(r Run) float64 { return r.CommitRecords }))
	if opts.Kafka {
		fmt.Fprintf(w, "| HTTP ingest into Kafka (kfake, 3 brokers, acks=all) | %.0f events/s |\n", med(func(r Run) float64 { return r.KafkaEPS }))
		fmt.Fprintf(w, "| Kafka ack latency p50 / p99 per batch | %.2f / %.2f ms |\n",
			med(func(r Run) float64 { return ms(r.KafkaP50) }), med(func(r Run) float64 { return ms(r.KafkaP99) }))
	}
	for _, k := range QueryKinds {
		fmt.Fprintf(w, "| GET %s p50 / p99 | %.2f / %.2f ms |\n", k,
			med(func(r Run) float64 { return ms(r.QueryP50[k]) }), med(func(r Run) float64 { return ms(r.QueryP99[k]) }))
	}
}

// kafkaIngest posts the same bodies to an ingest-only process whose log is Kafka.
func kafkaIngest(ctx context.Context, opts Options, bodies [][]byte, run *Run) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		return err
	}
	defer cluster.Close()
	srv, stopServer, err := startServer(opts, "bench-kafka-", func(cfg *server.Config) {
		cfg.Roles = []string{"ingest"}
		cfg.Log = "kafka://" + strings.Join(cluster.ListenAddrs(), ",") + "/events"
	})
	if err != nil {
		return err
	}
	defer stopServer()
	res, err := sendBodies(ctx, "http://"+srv.Addr()+"/v1/events", opts, 0, bodies)
	if err != nil {
		return fmt.Errorf("kafka ingest: %w", err)
	}
	run.KafkaEPS = res.EventsPerSecond()
	run.KafkaP50, run.KafkaP99 = res.Percentile(0.5), res.Percentile(0.99)
	return nil
}

// sendBodies posts every pre-encoded body once, from opts.Concurrency clients, at rate events/s in
// all (0: as fast as they are acknowledged); every batch must be acknowledged.
func sendBodies(ctx context.Context, url string, opts Options, rate float64, bodies [][]byte) (*loadgen.Result, error) {
	i := 0
	res, err := loadgen.Send(ctx, loadgen.SendConfig{URL: url, Rate: rate, Batch: opts.Batch, Concurrency: opts.Concurrency, Gzip: opts.Gzip},
		func(int) ([]byte, int) { // pre-encoded bodies of opts.Batch events each
			if i >= len(bodies) {
				return nil, 0
			}
			i++
			return bodies[i-1], opts.Batch
		})
	if err == nil && res.Failed > 0 {
		err = fmt.Errorf("%d of %d requests failed", res.Failed, res.Requests)
	}
	return res, err
}

// startServer starts a quiet `dogear serve` on loopback with its data in a new folder under
// opts.Dir, configured by configure when it is not nil. stop shuts it down and removes the folder.
func startServer(opts Options, prefix string, configure func(*server.Config)) (srv *server.Server, stop func(), err error) {
	dir, err := os.MkdirTemp(opts.Dir, prefix)
	if err != nil {
		return nil, nil, err
	}
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Logger = dir, "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.ProcessLinger = opts.ProcessLinger
	if configure != nil {
		configure(&cfg)
	}
	if srv, err = server.Start(cfg); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return srv, func() {
		srv.Shutdown(context.Background())
		os.RemoveAll(dir)
	}, nil
}

// halfRate posts the bodies to a fresh server at rate events/s and returns the ack latency's
// median and 99th percentile, and the 99th percentile of the log's group commits meanwhile.
func halfRate(ctx context.Context, opts Options, bodies [][]byte, rate float64) (p50, p99, fsyncP99 time.Duration, err error) {
	srv, stopServer, err := startServer(opts, "bench-half-rate-", nil)
	if err != nil {
		return 0, 0, 0, err
	}
	defer stopServer()
	before, err := fsyncBuckets()
	if err != nil {
		return 0, 0, 0, err
	}
	res, err := sendBodies(ctx, "http://"+srv.Addr()+"/v1/events", opts, rate, bodies)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("half-rate ingest: %w", err)
	}
	after, err := fsyncBuckets()
	if err != nil {
		return 0, 0, 0, err
	}
	return res.Percentile(0.5), res.Percentile(0.99), bucketQuantile(before, after, 0.99), nil
}

// histogram reads a histogram of collectors (metrics that count process-wide) as it stands.
func histogram(collectors []prometheus.Collector, name string) (*dto.Histogram, error) {
	reg := prometheus.NewRegistry()
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	families, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetHistogram(), nil
		}
	}
	return nil, fmt.Errorf("bench: no histogram %s", name)
}

// fsyncBuckets reads the cumulative buckets of the event log's group commit histogram.
func fsyncBuckets() ([]*dto.Bucket, error) {
	h, err := histogram(eventlog.Metrics, "dogear_eventlog_fsync_seconds")
	return h.GetBucket(), err
}

// bucketQuantile is the upper bound of the bucket holding the q quantile of what was observed
// between two readings of one histogram's cumulative buckets (0 when nothing was). What fell
// beyond the last bound (3.3 s for the log's commits) is not counted.
func bucketQuantile(before, after []*dto.Bucket, q float64) time.Duration {
	total := after[len(after)-1].GetCumulativeCount() - before[len(before)-1].GetCumulativeCount()
	for i, b := range after {
		if n := b.GetCumulativeCount() - before[i].GetCumulativeCount(); total > 0 && float64(n) >= q*float64(total) {
			return time.Duration(b.GetUpperBound() * float64(time.Second))
		}
	}
	return 0
}

// nullSink posts the bodies to a server that does only what no ingest can skip: it reads each
// body, appends it to a file, fsyncs and answers. Its rate is the ceiling the disk, loopback and
// HTTP leave dogear on this machine.
func nullSink(ctx context.Context, opts Options, bodies [][]byte) (float64, error) {
	f, err := os.CreateTemp(opts.Dir, "bench-null-sink-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			_, err = f.Write(body)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	res, err := sendBodies(ctx, srv.URL, opts, 0, bodies)
	if err != nil {
		return 0, err
	}
	return res.EventsPerSecond(), nil
}

// ingestOnly posts the bodies to dogear's ingest handler over a fresh embedded log (as dogear
// serve opens it), with no processor, API or archiver: what parsing, validation, encoding and
// the log's group commit do alone. dogear serve does not run the ingest role apart on the
// embedded log, which only one process can open; this measures the part that role would be.
func ingestOnly(ctx context.Context, opts Options, bodies [][]byte) (float64, error) {
	dir, err := os.MkdirTemp(opts.Dir, "bench-ingest-only-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	log, err := eventlog.OpenPebble(dir, 0, 256<<20)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	srv := httptest.NewServer(ingest.New(log, ingest.NewGate(ingest.DefaultConfig()), slog.New(slog.DiscardHandler)))
	defer srv.Close()
	res, err := sendBodies(ctx, srv.URL, opts, 0, bodies)
	if err != nil {
		return 0, fmt.Errorf("ingest only: %w", err)
	}
	return res.EventsPerSecond(), nil
}

// median is the median of f over xs (the upper middle for an even count).
func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	sort.Float64s(v)
	return v[len(v)/2]
}
