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
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/internal/httpjson"
)

// Config bounds what one request may cost.
type Config struct {
	MaxBodyBytes int64 // compressed and decompressed body, each
	MaxEvents    int   // events per request
	MaxInFlight  int   // requests decoded or waiting for the log at once; more get 429
	// Limit, when set, takes n events from the caller's rate limit (per write key); refused, the
	// request gets 429 with Retry-After.
	Limit func(ctx context.Context, n int) (ok bool, wait time.Duration, err error) `json:"-"`
}

// DefaultConfig: 16 MiB bodies, 100k events per request, 32 requests in flight, which bounds
// ingest memory to roughly 32 × 16 MiB of bodies plus their parsed events.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 16 << 20, MaxEvents: 100_000, MaxInFlight: 32}
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
	eventsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "dogear_ingest_events_total", Help: "Events accepted by ingest, by result: new or duplicate.",
	}, []string{"result"})
	refusedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "dogear_ingest_refused_total", Help: "Events refused by ingest, by reason code.",
	}, []string{"reason"})
	requestsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "dogear_ingest_requests_total", Help: "Ingest requests by HTTP status.",
	}, []string{"status"})
	requestSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "dogear_ingest_request_seconds", Help: "Time from request start to durable acknowledgement.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	batchEvents = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "dogear_ingest_batch_events", Help: "Events per ingest request.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10),
	})
)

// Handler serves POST /v1/events.
type Handler struct {
	log    eventlog.Log
	cfg    Config
	slots  chan struct{}
	logger *slog.Logger
	now    func() time.Time
}

// New returns an ingest handler appending to log.
func New(log eventlog.Log, cfg Config, logger *slog.Logger) *Handler {
	return &Handler{log: log, cfg: cfg, slots: make(chan struct{}, cfg.MaxInFlight), logger: logger, now: time.Now}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status := h.serve(w, r)
	requestsTotal.WithLabelValues(strconv.Itoa(status)).Inc()
	if status == http.StatusOK {
		requestSeconds.Observe(time.Since(start).Seconds())
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) int {
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		// Refusing at once keeps memory bounded; clients back off and retry the same batch,
		// which dedup by event id makes safe.
		w.Header().Set("Retry-After", "1")
		return httpjson.Fail(w, http.StatusTooManyRequests, httpjson.Error{Error: "server busy: too many ingest requests in flight; retry after 1 second"})
	}
	body, status, msg := ReadBody(w, r, h.cfg.MaxBodyBytes)
	if status != 0 {
		return httpjson.Fail(w, status, httpjson.Error{Error: msg})
	}
	items, err := event.Split(body)
	if err != nil {
		var be *event.BodyError
		if errors.As(err, &be) {
			refusedTotal.WithLabelValues(event.CodeMalformed).Inc()
			return httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: be.Error(), Line: be.Line, Offset: &be.Offset})
		}
		return httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: err.Error()})
	}
	if len(items) == 0 {
		return httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: "no events in the body: send a JSON array of events, or one event per line (NDJSON)"})
	}
	if len(items) > h.cfg.MaxEvents {
		return httpjson.Fail(w, http.StatusRequestEntityTooLarge, httpjson.Error{
			Error: fmt.Sprintf("%d events in one request; at most %d allowed: split the batch", len(items), h.cfg.MaxEvents)})
	}
	batchEvents.Observe(float64(len(items)))

	resp := Response{Refused: []Refusal{}}
	entries := make([]eventlog.Entry, 0, len(items))
	now := h.now()
	for i, it := range items {
		e, ferr := event.Parse(it.Raw, now)
		if ferr != nil {
			refusedTotal.WithLabelValues(ferr.Code).Inc()
			resp.Refused = append(resp.Refused, Refusal{Index: i, Line: it.Line, ID: idOf(it.Raw), Field: ferr.Field, Code: ferr.Code, Reason: ferr.Reason})
			continue
		}
		entries = append(entries, eventlog.Entry{ID: e.ID, Key: e.Reader, Value: e.Marshal()})
	}
	if h.cfg.Limit != nil && len(entries) > 0 {
		ok, wait, err := h.cfg.Limit(r.Context(), len(entries))
		if err != nil {
			return httpjson.Fail(w, http.StatusRequestEntityTooLarge, httpjson.Error{Error: err.Error()})
		}
		if !ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
			return httpjson.Fail(w, http.StatusTooManyRequests, httpjson.Error{
				Error: fmt.Sprintf("rate limit of this write key reached: retry after %v; nothing from this request was stored", wait.Round(time.Millisecond))})
		}
	}
	if len(entries) > 0 {
		dup, err := h.log.Append(r.Context(), entries)
		if err != nil {
			return AppendFailed(w, r.Context(), err, h.logger)
		}
		resp.Accepted = len(entries)
		for _, d := range dup {
			if d {
				resp.Duplicates++
			}
		}
		eventsTotal.WithLabelValues("new").Add(float64(resp.Accepted - resp.Duplicates))
		eventsTotal.WithLabelValues("duplicate").Add(float64(resp.Duplicates))
	}
	status = http.StatusOK
	if resp.Accepted == 0 {
		status = http.StatusBadRequest // every event was refused
	}
	httpjson.Write(w, status, resp)
	return status
}

// ReadBody reads and decompresses (gzip, zstd) a request body within limit bytes, compressed
// and decompressed. A non-zero status refuses the request with msg.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int, string) {
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is %d bytes; at most %d allowed", r.ContentLength, limit)
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
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
	body, err := io.ReadAll(io.LimitReader(src, limit+1))
	if err != nil {
		what := "reading the body"
		if enc != "" && enc != "identity" {
			what = "decompressing the " + enc + " body (truncated or corrupt?)"
		}
		return nil, readStatus(err), fmt.Sprintf("%s failed after %d bytes: %v", what, len(body), err)
	}
	if int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body exceeds %d bytes", limit)
	}
	return body, 0, ""
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
