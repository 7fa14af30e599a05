// Package ingest is the HTTP endpoint devices post reading events to: it decompresses and
// validates each event, appends the good ones durably to the event log, and reports every refusal.
package ingest

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/internal/httpjson"
)

// Config bounds what one request may cost.
type Config struct {
	MaxBodyBytes int64 // compressed and decompressed body, each
	MaxEvents    int   // events per request
	MaxInFlight  int   // requests decoded or waiting for the log at once, over every route; more get 429
	// MaxInFlightBytes bounds the decompressed body bytes held by all requests at once; a request
	// that would go over it gets 503 with Retry-After (0: no bound beyond MaxInFlight).
	MaxInFlightBytes int64
	// A body must arrive at MinBodyRate bytes per second or faster once BodyGrace has passed, and
	// whole within MaxBodyTime; slower clients get 408 and their slot goes to others.
	MinBodyRate            int64
	BodyGrace, MaxBodyTime time.Duration
	// Limit, when set, takes n events from the caller's rate limit (per write key); refused, the
	// request gets 429 with Retry-After.
	Limit func(ctx context.Context, n int) (ok bool, wait time.Duration, err error) `json:"-"`
}

// DefaultConfig: 16 MiB bodies, 100k events per request, 32 requests in flight holding at most
// 256 MiB of bodies, and bodies at 16 KiB/s or faster after 10 s (a 16 MiB body within 2 minutes).
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 16 << 20, MaxEvents: 100_000, MaxInFlight: 32, MaxInFlightBytes: 256 << 20,
		MinBodyRate: 16 << 10, BodyGrace: 10 * time.Second, MaxBodyTime: 2 * time.Minute}
}

// Refusal says why one event of a request was not accepted.
type Refusal struct {
	Index  int    `json:"index"` // 0-based position of the event in the request
	Line   int    `json:"line"`  // 1-based line of the body where it starts
	ID     string `json:"id,omitempty"`
	Field  string `json:"field,omitempty"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// Response is the body of every answer to POST /v1/events that got as far as the events.
type Response struct {
	Accepted   int       `json:"accepted"`   // events now durably in the log, new or already there
	Duplicates int       `json:"duplicates"` // of those, how many the log already had
	Refused    []Refusal `json:"refused"`
}

var (
	eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dogear_ingest_events_total", Help: "Events accepted by ingest, by route and result: new or duplicate.",
	}, []string{"route", "result"})
	refusedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dogear_ingest_refused_total", Help: "Events refused by ingest, by route and reason code.",
	}, []string{"route", "reason"})
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dogear_ingest_requests_total", Help: "Ingest requests by route and HTTP status.",
	}, []string{"route", "status"})
	requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dogear_ingest_request_seconds", Help: "Time from request start to durable acknowledgement, by route.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route"})
	batchEvents = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dogear_ingest_batch_events", Help: "Events per ingest request, by route.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10),
	}, []string{"route"})
)

// Routes, as the route label of the ingest metrics names them.
const (
	RouteEvents  = "events"
	RouteSegment = "segment"
	RouteKosync  = "kosync"
)

// ObserveRequest counts one finished ingest request of a route: its status, its duration when
// it was acknowledged, and its events (n in the request, of which accepted were stored and dups
// already there).
func ObserveRequest(route string, status int, start time.Time, n, accepted, dups int) {
	requestsTotal.WithLabelValues(route, strconv.Itoa(status)).Inc()
	if n > 0 {
		batchEvents.WithLabelValues(route).Observe(float64(n))
	}
	if status == http.StatusOK {
		requestSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}
	if accepted > 0 {
		eventsTotal.WithLabelValues(route, "new").Add(float64(accepted - dups))
		eventsTotal.WithLabelValues(route, "duplicate").Add(float64(dups))
	}
}

// ObserveRefused counts one refused event of a route by its reason code.
func ObserveRefused(route, code string) { refusedTotal.WithLabelValues(route, code).Inc() }

// Handler serves POST /v1/events.
type Handler struct {
	log    eventlog.Log
	gate   *Gate
	logger *slog.Logger
	now    func() time.Time
}

// New returns an ingest handler appending to log, behind the gate every ingest route shares.
func New(log eventlog.Log, gate *Gate, logger *slog.Logger) *Handler {
	return &Handler{log: log, gate: gate, logger: logger, now: time.Now}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	resp := Response{Refused: []Refusal{}}
	status, n := h.serve(w, r, &resp)
	ObserveRequest(RouteEvents, status, start, n, resp.Accepted, resp.Duplicates)
}

// serve answers the request and returns its status and how many events it held.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, resp *Response) (int, int) {
	body, done, refused := h.gate.Enter(w, r, h.gate.cfg.MaxBodyBytes)
	if refused != nil {
		return refused.Write(w), 0
	}
	defer done()
	ctx := r.Context()
	items, err := event.Split(ctx, body, h.gate.cfg.MaxEvents)
	var be *event.BodyError
	var tooMany *event.TooManyError
	switch {
	case errors.As(err, &be):
		ObserveRefused(RouteEvents, event.CodeMalformed)
		return httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: be.Error(), Line: be.Line, Offset: &be.Offset}), 0
	case errors.As(err, &tooMany):
		return httpjson.Fail(w, http.StatusRequestEntityTooLarge, httpjson.Error{Error: tooMany.Error(), Offset: &tooMany.Offset}), 0
	case ctx.Err() != nil:
		return 499, 0 // the client went away; nobody reads this answer
	case err != nil:
		return httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: err.Error()}), 0
	case len(items) == 0:
		return httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: "no events in the body: send a JSON array of events, or one event per line (NDJSON)"}), 0
	}

	entries := make([]eventlog.Entry, 0, len(items))
	// The stored forms share one buffer, about half the body's size to start with (an event's
	// stored form is about 40% of its JSON); each entry's value is capped at its own end, so
	// that growing the buffer never writes into an earlier one.
	stored := make([]byte, 0, len(body)/2)
	now := h.now()
	for i, it := range items {
		if i%cancelCheckEvery == 0 && ctx.Err() != nil {
			return 499, len(items)
		}
		e, ferr := event.Parse(it.Raw, now)
		if ferr != nil {
			ObserveRefused(RouteEvents, ferr.Code)
			resp.Refused = append(resp.Refused, Refusal{Index: i, Line: it.Line, ID: idOf(it.Raw), Field: ferr.Field, Code: ferr.Code, Reason: ferr.Reason})
			continue
		}
		start := len(stored)
		stored = e.AppendEncoded(stored)
		entries = append(entries, eventlog.Entry{ID: e.ID, Key: e.Reader, Value: stored[start:len(stored):len(stored)]})
	}
	if refused := h.gate.Admit(ctx, len(entries)); refused != nil {
		return refused.Write(w), len(items)
	}
	if len(entries) > 0 {
		dups, err := Append(ctx, h.log, entries)
		if err != nil {
			return AppendFailed(w, ctx, err, h.logger), len(items)
		}
		resp.Accepted, resp.Duplicates = len(entries), dups
	}
	status := http.StatusOK
	if resp.Accepted == 0 {
		status = http.StatusBadRequest // every event was refused
	}
	httpjson.Write(w, status, resp)
	return status, len(items)
}

// cancelCheckEvery is how many events are parsed between looks at the request's context.
const cancelCheckEvery = 1024

// Append stores entries in the log and says how many the log already had: the write path of
// every ingest route.
func Append(ctx context.Context, log eventlog.Log, entries []eventlog.Entry) (dups int, err error) {
	dup, err := log.Append(ctx, entries)
	for _, d := range dup {
		if d {
			dups++
		}
	}
	return dups, err
}

// readBody reads and decompresses (gzip, zstd) the request's body within limit bytes, compressed
// and decompressed; take is told of every decompressed chunk and may refuse it. A non-zero
// status refuses the request with msg.
func readBody(w http.ResponseWriter, r *http.Request, body io.ReadCloser, limit int64, take func(int) error) ([]byte, int, string) {
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is %d bytes; at most %d allowed", r.ContentLength, limit)
	}
	var src io.Reader = http.MaxBytesReader(w, body, limit)
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, readStatus(err), "body is not valid gzip: " + err.Error()
		}
		defer zr.Close()
		src = zr
	case "zstd":
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)*2))
		if err != nil {
			return nil, http.StatusBadRequest, "body is not valid zstd: " + err.Error()
		}
		defer zr.Close()
		src = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported; use gzip, zstd or none", enc)
	}
	b, err := io.ReadAll(&taking{Reader: io.LimitReader(src, limit+1), take: take})
	if errors.Is(err, errBudget) {
		return nil, http.StatusServiceUnavailable, "server busy: ingest bodies in flight have reached their memory budget; retry after 1 second"
	}
	if err != nil {
		what := "reading the body"
		if enc != "" && enc != "identity" {
			what = "decompressing the " + enc + " body (truncated or corrupt?)"
		}
		if isTimeout(err) {
			what = "reading the body too slowly (below the minimum transfer rate)"
		}
		return nil, readStatus(err), fmt.Sprintf("%s failed after %d bytes: %v", what, len(b), err)
	}
	if int64(len(b)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body exceeds %d bytes", limit)
	}
	return b, 0, ""
}

// taking reports every chunk read to take, which may stop the read.
type taking struct {
	io.Reader
	take func(int) error
}

func (t *taking) Read(b []byte) (int, error) {
	n, err := t.Reader.Read(b)
	if n > 0 {
		if terr := t.take(n); terr != nil {
			return n, terr
		}
	}
	return n, err
}

func readStatus(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, http.ErrHandlerTimeout), isTimeout(err):
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// AppendFailed answers a request whose events the log could not take: 503 with Retry-After, so
// the client resends (dedup by event id makes that safe).
func AppendFailed(w http.ResponseWriter, ctx context.Context, err error, logger *slog.Logger) int {
	if errors.Is(err, eventlog.ErrNoSpace) {
		logger.Error("event log is out of disk space; refusing ingest until space returns")
		w.Header().Set("Retry-After", "30")
		return httpjson.Fail(w, http.StatusServiceUnavailable, httpjson.Error{Error: "event log out of disk space: nothing from this request was stored; retry later"})
	}
	if ctx.Err() != nil {
		return 499 // the client went away; nobody reads this answer
	}
	logger.Error("append to event log failed", "err", err)
	w.Header().Set("Retry-After", "5")
	return httpjson.Fail(w, http.StatusServiceUnavailable, httpjson.Error{Error: "event log unavailable: nothing from this request was acknowledged; retry"})
}

// idOf pulls the id out of a refused event when it has a readable one, so clients can match
// refusals to their events.
func idOf(raw []byte) string {
	var v struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	if s, ok := v.ID.(string); ok && len(s) <= event.MaxIDLen {
		return s
	}
	return ""
}

// Metrics are the package's collectors, for the registry of the process that uses it. They count
// process-wide, whichever registry exposes them.
var Metrics = []prometheus.Collector{eventsTotal, refusedTotal, requestsTotal, requestSeconds, batchEvents}
