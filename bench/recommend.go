package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/server"
)

// RecommendOptions shape the serving benchmark.
type RecommendOptions struct {
	Data        string // KGAT-format folder; its train.txt becomes finish events
	Runs        int
	Duration    time.Duration
	Concurrency int
	N           int
	Dir         string
	Out         io.Writer
}

// ServingRun is one measured phase.
type ServingRun struct {
	Route string
	RPS   float64
	P50   time.Duration
	P99   time.Duration
}

// Recommend loads real interactions as reading events into a fresh server, trains and promotes a
// model through the pipeline, then measures GET /v1/readers/{id}/recommendations with
// keep-alive clients on loopback, next to GET /healthz (the HTTP floor) in the same run.
func Recommend(ctx context.Context, o RecommendOptions) ([]ServingRun, error) {
	ds, err := recommend.LoadKGAT(o.Data)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.Dir, "bench-recs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.TrainInterval = dir, "127.0.0.1:0", 0
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.Start(cfg)
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown(context.Background())
	base := "http://" + srv.Addr()

	start := time.Now()
	if err := postInteractions(ctx, base, ds.Train); err != nil {
		return nil, err
	}
	for srv.Processor().TotalLag() > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintf(o.Out, "loaded %d interactions of %d readers as finish events in %v\n", ds.Train.NNZ(), ds.Train.Rows, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	v, err := srv.Trainer().TrainOnce(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "trained model v%d in %v (training %.2f s; gate Recall@20 %.4f on %d held-out)\n",
		v.Version, time.Since(start).Round(time.Millisecond), v.Metrics.TrainSeconds, v.Metrics.Candidate.Recall, v.Metrics.HeldOut)

	routes := []struct {
		name string
		url  func(*rand.Rand) string
	}{
		{"GET /healthz (HTTP floor)", func(*rand.Rand) string { return base + "/healthz" }},
		{fmt.Sprintf("GET /v1/readers/{id}/recommendations?n=%d", o.N), func(r *rand.Rand) string {
			return fmt.Sprintf("%s/v1/readers/u%d/recommendations?n=%d", base, r.IntN(ds.Train.Rows), o.N)
		}},
	}
	var out []ServingRun
	for run := 1; run <= o.Runs; run++ {
		for _, rt := range routes {
			res, err := hammer(ctx, o.Concurrency, o.Duration, rt.url)
			if err != nil {
				return nil, err
			}
			res.Route = rt.name
			fmt.Fprintf(o.Out, "run %d/%d %-48s %8.0f req/s  p50 %v  p99 %v\n", run, o.Runs, rt.name, res.RPS, res.P50, res.P99)
			out = append(out, res)
		}
	}
	return out, nil
}

func postInteractions(ctx context.Context, base string, m *recommend.Matrix) error {
	at := time.Now().UTC().Add(-50 * 24 * time.Hour)
	var bodies []string
	var b strings.Builder
	n := 0
	for u := 0; u < m.Rows; u++ {
		items, _ := m.Row(u)
		for k, it := range items {
			t := at.Add(time.Duration(u%1000)*time.Hour + time.Duration(k)*time.Minute)
			fmt.Fprintf(&b, `{"id":"ab-%d-%d","type":"finish","reader":"u%d","book":"b%d","time":"%s"}`+"\n", u, it, u, it, t.Format(time.RFC3339))
			if n++; n%5000 == 0 {
				bodies = append(bodies, b.String())
				b.Reset()
			}
		}
	}
	bodies = append(bodies, b.String())
	work := make(chan string)
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				resp, err := http.Post(base+"/v1/events", "application/x-ndjson", strings.NewReader(body))
				if err != nil {
					errc <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errc <- fmt.Errorf("loading events: status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	for _, body := range bodies {
		select {
		case work <- body:
		case err := <-errc:
			close(work)
			return err
		case <-ctx.Done():
			close(work)
			return ctx.Err()
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// hammer sends requests from c keep-alive connections for d and measures throughput and latency.
func hammer(ctx context.Context, c int, d time.Duration, url func(*rand.Rand) string) (ServingRun, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: c, DialContext: (&net.Dialer{}).DialContext}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	deadline := time.Now().Add(d)
	lats := make([][]time.Duration, c)
	errs := make([]error, c)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				resp, err := client.Get(url(rng))
				if err != nil {
					errs[w] = err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs[w] = fmt.Errorf("status %d", resp.StatusCode)
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for w := range lats {
		if errs[w] != nil {
			return ServingRun{}, errs[w]
		}
		all = append(all, lats[w]...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) == 0 {
		return ServingRun{}, fmt.Errorf("no request completed")
	}
	return ServingRun{RPS: float64(len(all)) / elapsed.Seconds(), P50: all[len(all)/2], P99: all[len(all)*99/100]}, nil
}

// ReportServing prints medians per route as a Markdown table.
func ReportServing(w io.Writer, o RecommendOptions, runs []ServingRun) {
	by := map[string][]ServingRun{}
	var order []string
	for _, r := range runs {
		if _, ok := by[r.Route]; !ok {
			order = append(order, r.Route)
		}
		by[r.Route] = append(by[r.Route], r)
	}
	fmt.Fprintf(w, "\nMedians of %d runs of %v each, %d keep-alive clients on loopback (client and server share the 2 cores):\n\n", o.Runs, o.Duration, o.Concurrency)
	fmt.Fprintf(w, "| route | requests/s | p50 | p99 |\n| --- | --- | --- | --- |\n")
	for _, name := range order {
		rs := by[name]
		med := func(f func(ServingRun) float64) float64 { return median(rs, f) }
		fmt.Fprintf(w, "| %s | %.0f | %.3f ms | %.3f ms |\n", name, med(func(r ServingRun) float64 { return r.RPS }),
			med(func(r ServingRun) float64 { return float64(r.P50.Microseconds()) / 1000 }),
			med(func(r ServingRun) float64 { return float64(r.P99.Microseconds()) / 1000 }))
	}
}
