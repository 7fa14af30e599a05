package loadgen

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/ingest"
)

// EncodeNDJSON writes events one per line.
func EncodeNDJSON(w io.Writer, events []event.Event) error {
	bw := bufio.NewWriter(w)
	for i := range events {
		bw.Write(events[i].Marshal())
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// SendConfig says where and how fast to send.
type SendConfig struct {
	URL         string
	Rate        float64 // events per second in total; 0 sends as fast as the server acknowledges
	Duration    time.Duration
	MaxEvents   int64 // stop after this many events (0: no limit)
	Batch       int
	Concurrency int
	Gzip        bool
	Key         string    // write key, when the server requires one
	Progress    io.Writer // one line per second, nil for none
}

// Result is what a send run measured.
type Result struct {
	Events    int64
	Requests  int64
	Failed    int64 // requests that were not acknowledged (after retries on 429/503)
	Elapsed   time.Duration
	Latencies []time.Duration // per acknowledged request
}

// EventsPerSecond is the acknowledged event rate.
func (r *Result) EventsPerSecond() float64 { return float64(r.Events) / r.Elapsed.Seconds() }

// Percentile returns the q-quantile (0..1) of request latency.
func (r *Result) Percentile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	l := append([]time.Duration(nil), r.Latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

// EncodeBody encodes events as an NDJSON request body, gzip-compressed if gz.
func EncodeBody(events []event.Event, gz bool) []byte {
	var buf bytes.Buffer
	if !gz {
		EncodeNDJSON(&buf, events)
		return buf.Bytes()
	}
	zw := gzip.NewWriter(&buf)
	EncodeNDJSON(zw, events)
	zw.Close()
	return buf.Bytes()
}

// Send posts batches from next until the event count or ctx ends. next is asked for a batch of
// n events (cfg.Batch, or fewer for the last one, so exactly MaxEvents are sent) and returns its
// body and how many events it holds; it is called from one goroutine at a time.
func Send(ctx context.Context, cfg SendConfig, next func(n int) ([]byte, int)) (*Result, error) {
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	sender := &ingest.Client{URL: cfg.URL, Key: cfg.Key, Gzip: cfg.Gzip,
		HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency}, Timeout: time.Minute}}
	var mu sync.Mutex
	res := &Result{}
	var sent atomic.Int64
	start := time.Now()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(cfg.Batch) / cfg.Rate * float64(time.Second))
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			last := int64(0)
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					n := sent.Load()
					fmt.Fprintf(cfg.Progress, "%6.0fs  %10d events  %9d events/s\n", time.Since(start).Seconds(), n, n-last)
					last = n
				}
			}
		}()
	}
	var nextMu sync.Mutex
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				nextMu.Lock()
				want := cfg.Batch
				if cfg.MaxEvents > 0 {
					want = int(min(int64(want), cfg.MaxEvents-sent.Load()))
				}
				if want <= 0 {
					nextMu.Unlock()
					return
				}
				body, n := next(want)
				sent.Add(int64(n))
				nextMu.Unlock()
				if body == nil {
					return
				}
				t0 := time.Now()
				_, err := sender.Send(ctx, body)
				d := time.Since(t0)
				mu.Lock()
				res.Requests++
				if err != nil {
					res.Failed++
				} else {
					res.Events += int64(n)
					res.Latencies = append(res.Latencies, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	res.Elapsed = time.Since(start)
	return res, nil
}
