package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dogear-dev/dogear/api"
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
	fmt.Fprintf(o.Out, "trained model v%d in %v (search and refit %.2f s; chose %s, Recall@20 %.4f on %d held-out)\n",
		v.Version, time.Since(start).Round(time.Millisecond), v.Metrics.TrainSeconds, v.Params, v.Metrics.Candidate.Recall, v.Metrics.HeldOut)
	if sel := v.Metrics.Selection; sel != nil {
		for _, t := range sel.Trials {
			fmt.Fprintf(o.Out, "  tried %-70s Recall@20 %.4f  %.1f s\n", t.Params, t.Metrics.Recall, t.Seconds)
		}
	}
	if err := servedQuality(ctx, o.Out, base, ds, v.Params); err != nil {
		return nil, err
	}
	if err := freshness(ctx, o.Out, base, ds); err != nil {
		return nil, err
	}

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

// servedQuality scores the lists the server serves to every test reader against test.txt, next
// to what `dogear eval` computes offline for the same settings (recommend.ServedMetrics).
func servedQuality(ctx context.Context, out io.Writer, base string, ds *recommend.Dataset, params recommend.ModelParams) error {
	start := time.Now()
	recall, users, err := ServedRecall(ctx, base, ds.Test)
	if err != nil {
		return err
	}
	offline := recommend.ServedMetrics(recommend.TrainArtifact(recommend.KGATInteractions(ds.Train), params), ds.Train, ds.Test)
	fmt.Fprintf(out, "served lists of %d test readers: Recall@20 %.4f (the eval of the same settings: %.4f, NDCG@20 %.4f, KGAT's NDCG@20 %.4f) in %v\n",
		users, recall, offline.Recall, offline.NDCG, offline.NDCGKGAT, time.Since(start).Round(time.Millisecond))
	return nil
}

// ServedRecall asks the server at base for the 20 recommendations of every reader with test
// items (a KGAT-format test matrix; readers "u<row>", books "b<column>") and returns their mean
// Recall@20 and how many readers that is.
func ServedRecall(ctx context.Context, base string, test *recommend.Matrix) (float64, int, error) {
	var recall float64
	users := 0
	for u := 0; u < test.Rows; u++ {
		truth, _ := test.Row(u)
		if len(truth) == 0 {
			continue
		}
		var recs api.Recommendations
		if err := getJSON(ctx, fmt.Sprintf("%s/v1/readers/u%d/recommendations?n=20", base, u), &recs); err != nil {
			return 0, 0, err
		}
		want := map[string]bool{}
		for _, b := range truth {
			want[fmt.Sprint("b", b)] = true
		}
		hits := 0
		for _, it := range recs.Items {
			if want[it.Book] {
				hits++
			}
		}
		recall += float64(hits) / float64(len(truth))
		users++
	}
	if users == 0 {
		return 0, 0, nil
	}
	return recall / float64(users), users, nil
}

// freshness measures how soon a reader's new event changes their list: for 200 readers it posts
// a finish of a book they have not read, and polls their recommendations until the list differs.
func freshness(ctx context.Context, out io.Writer, base string, ds *recommend.Dataset) error {
	rng := rand.New(rand.NewPCG(9, 9))
	var lats []time.Duration
	for i := range 200 {
		u := rng.IntN(ds.Train.Rows)
		url := fmt.Sprintf("%s/v1/readers/u%d/recommendations?n=20", base, u)
		var before api.Recommendations
		if err := getJSON(ctx, url, &before); err != nil || len(before.Items) == 0 {
			continue
		}
		book := before.Items[0].Book // finishing the top suggestion must change the list
		ev := fmt.Sprintf(`{"id":"fresh-%d","type":"finish","reader":"u%d","book":%q,"time":%q}`, i, u, book, time.Now().UTC().Format(time.RFC3339))
		t0 := time.Now()
		resp, err := http.Post(base+"/v1/events", "application/x-ndjson", strings.NewReader(ev))
		if err != nil {
			return err
		}
		resp.Body.Close()
		acked := time.Now()
		for {
			var after api.Recommendations
			if err := getJSON(ctx, url, &after); err != nil {
				return err
			}
			if len(after.Items) > 0 && after.Items[0].Book != book {
				lats = append(lats, time.Since(acked))
				break
			}
			if time.Since(t0) > 10*time.Second {
				return fmt.Errorf("reader u%d's list did not change 10 s after they finished %s", u, book)
			}
		}
	}
	slices.Sort(lats)
	fmt.Fprintf(out, "event acknowledged → changed list, %d readers: p50 %v, p99 %v, max %v\n", len(lats),
		lats[len(lats)/2].Round(time.Microsecond), lats[len(lats)*99/100].Round(time.Microsecond), lats[len(lats)-1].Round(time.Microsecond))
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func postInteractions(ctx context.Context, base string, m *recommend.Matrix) error {
	at := time.Now().UTC().Add(-50 * 24 * time.Hour)
	var bodies []string
	var b strings.Builder
	n := 0
	for u := 0; u < m.Rows; u++ {
		items, _ := m.Row(u)
		order := recommend.KGATOrder(u, len(items))
		for k, it := range items {
			t := at.Add(time.Duration(u%1000)*time.Hour + time.Duration(order[k])*time.Minute)
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
