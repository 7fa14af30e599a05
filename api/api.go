// Package api serves dogear's read side over HTTP: reader insights, book statistics, trending and
// platform stats as JSON, plus health, readiness and Prometheus metrics.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/dogear-dev/dogear/catalog"
	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/state"
	"github.com/dogear-dev/dogear/tracing"
	"github.com/dogear-dev/dogear/trainer"
)

var querySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "dogear_api_request_seconds",
	Help:    "Query API latency by route.",
	Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
}, []string{"route"})

// queryRequests counts answers by status, so that a canary's error rate can be compared with
// the stable version's (orchestrator.TrackMetrics).
var queryRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "dogear_api_requests_total",
	Help: "Query API requests by route and HTTP status.",
}, []string{"route", "status"})

// Config is what the API answers from.
type Config struct {
	State state.Reader
	// Lag is how far this process's processors are behind the log, for /v1/stats (nil: none run
	// here).
	Lag      func() int64
	Registry *registry.Registry
	Trainer  *trainer.Trainer
	Catalog  *catalog.Catalog
	// Tracer, when set, traces recommendation requests (dogear.recommend).
	Tracer trace.Tracer
	Logger *slog.Logger
}

// API answers queries from state, and recommendations from the serving model.
type API struct {
	store    state.Reader
	lag      func() int64
	registry *registry.Registry
	trainer  *trainer.Trainer
	catalog  *catalog.Catalog
	tracer   trace.Tracer
	logger   *slog.Logger
	now      func() time.Time
}

// New returns the API over cfg.
func New(cfg Config) *API {
	tracer := cfg.Tracer
	if tracer == nil {
		tracer = tracing.Tracer(nil)
	}
	return &API{store: cfg.State, lag: cfg.Lag, registry: cfg.Registry, trainer: cfg.Trainer, catalog: cfg.Catalog,
		tracer: tracer, logger: cfg.Logger, now: time.Now}
}

// Register adds the query, recommendation and model routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	a.registerRecommendations(mux)
	mux.Handle("GET /v1/readers/{id}/insights", a.timed("reader_insights", a.readerInsights))
	mux.Handle("GET /v1/readers/{id}/books", a.timed("reader_books", func(r *http.Request) (any, error) {
		books, err := insights.Books(a.store, r.PathValue("id"))
		return map[string]any{"reader": r.PathValue("id"), "books": titledAll(a, books, func(b insights.BookActivity) string { return b.Book })}, err
	}))
	mux.Handle("GET /v1/readers/{id}/highlights", a.timed("reader_highlights", func(r *http.Request) (any, error) {
		hs, err := insights.ReaderHighlights(a.store, r.PathValue("id"))
		return map[string]any{"reader": r.PathValue("id"), "highlights": titledAll(a, hs, func(h insights.Highlight) string { return h.Book })}, err
	}))
	mux.Handle("GET /v1/books/{id}/stats", a.timed("book_stats", a.bookStats))
	mux.Handle("GET /v1/trending", a.timed("trending", a.trending))
	mux.Handle("GET /v1/stats", a.timed("stats", a.stats))
}

// badParam is a query parameter a person must fix.
type badParam struct{ field, reason string }

func (e *badParam) Error() string { return e.field + ": " + e.reason }

func (a *API) timed(route string, fn func(*http.Request) (any, error)) http.Handler {
	obs := querySeconds.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		v, err := fn(r)
		var bp *badParam
		status := http.StatusOK
		switch {
		case err == nil:
			httpjson.Write(w, status, v)
		case errors.As(err, &bp):
			status = http.StatusBadRequest
			httpjson.Fail(w, status, httpjson.Error{Error: bp.Error(), Field: bp.field})
		case errors.Is(err, insights.ErrNotFound):
			status = http.StatusNotFound
			httpjson.Fail(w, status, httpjson.Error{Error: fmt.Sprintf("no events for %s yet", r.URL.Path)})
		default:
			status = http.StatusInternalServerError
			a.logger.Error("query failed", "route", route, "err", err)
			httpjson.Fail(w, status, httpjson.Error{Error: "query failed: " + err.Error()})
		}
		obs.Observe(time.Since(start).Seconds())
		queryRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	})
}

// asOf reads ?as_of= (RFC 3339), the moment that fixes "today"; the default is now.
func (a *API) asOf(r *http.Request) (time.Time, error) {
	s := r.URL.Query().Get("as_of")
	if s == "" {
		return a.now().UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, &badParam{"as_of", fmt.Sprintf("must be RFC 3339, e.g. 2026-11-26T00:00:00Z; got %q", s)}
	}
	return t, nil
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, &badParam{name, fmt.Sprintf("must be a whole number from %d to %d; got %q", lo, hi, s)}
	}
	return n, nil
}

func (a *API) readerInsights(r *http.Request) (any, error) {
	asOf, err := a.asOf(r)
	if err != nil {
		return nil, err
	}
	days, err := intParam(r, "days", 30, 1, 366)
	if err != nil {
		return nil, err
	}
	return insights.ForReader(a.store, r.PathValue("id"), asOf, days)
}

func (a *API) bookStats(r *http.Request) (any, error) {
	asOf, err := a.asOf(r)
	if err != nil {
		return nil, err
	}
	st, err := insights.Book(a.store, r.PathValue("id"), asOf)
	if err != nil {
		return nil, err
	}
	return a.titled(st.Book, st), nil
}

// TitledBook is a per-book answer with the book's title and authors from the catalog, so pages
// show books by name (both empty when the catalog does not know the book).
type TitledBook struct {
	Item    any
	Title   string
	Authors []string
}

// MarshalJSON flattens the title and authors into the item's object.
func (t TitledBook) MarshalJSON() ([]byte, error) {
	item, err := json.Marshal(t.Item)
	if err != nil || t.Title == "" {
		return item, err
	}
	names, err := json.Marshal(struct {
		Title   string   `json:"title"`
		Authors []string `json:"authors,omitempty"`
	}{t.Title, t.Authors})
	if err != nil {
		return nil, err
	}
	// Both are JSON objects: splice the names into the item's braces.
	if string(item) == "{}" {
		return names, nil
	}
	return append(append(item[:len(item)-1:len(item)-1], ','), names[1:]...), nil
}

// titledAll titles each item by the book book names.
func titledAll[T any](a *API, items []T, book func(T) string) []TitledBook {
	out := make([]TitledBook, len(items))
	for i, it := range items {
		out[i] = a.titled(book(it), it)
	}
	return out
}

func (a *API) titled(book string, item any) TitledBook {
	t := TitledBook{Item: item}
	if a.catalog != nil {
		if b, ok := a.catalog.Book(book); ok {
			t.Title, t.Authors = b.Title, b.Authors
		}
	}
	return t
}

func (a *API) trending(r *http.Request) (any, error) {
	asOf, err := a.asOf(r)
	if err != nil {
		return nil, err
	}
	n, err := intParam(r, "n", 10, 1, 100)
	if err != nil {
		return nil, err
	}
	books, err := insights.Trending(a.store, asOf, n)
	if err != nil {
		return nil, err
	}
	return map[string]any{"as_of": asOf.UTC(), "books": titledAll(a, books, func(b insights.TrendingBook) string { return b.Book })}, nil
}

// Stats is the answer to GET /v1/stats: platform insights plus how far processing is behind.
type Stats struct {
	*insights.PlatformStats
	ProcessorLag int64 `json:"processor_lag_events"`
}

func (a *API) stats(r *http.Request) (any, error) {
	asOf, err := a.asOf(r)
	if err != nil {
		return nil, err
	}
	p, err := insights.Platform(a.store, asOf)
	if err != nil {
		return nil, err
	}
	st := Stats{PlatformStats: p}
	if a.lag != nil {
		st.ProcessorLag = a.lag()
	}
	return st, nil
}

// Metrics are the package's collectors, for the registry of the process that uses it. They count
// process-wide, whichever registry exposes them.
var Metrics = []prometheus.Collector{querySeconds, queryRequests}
