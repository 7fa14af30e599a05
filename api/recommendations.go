package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/internal/httpjson"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/trainer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Item is one recommended book as readers see it.
type Item struct {
	Book    string   `json:"book"`
	Title   string   `json:"title,omitempty"`
	Authors []string `json:"authors,omitempty"`
	Cover   string   `json:"cover_url,omitempty"`
	Score   float32  `json:"score"`
	Reason  string   `json:"reason"`
	Because string   `json:"because_book,omitempty"`
}

// Recommendations is the answer to GET /v1/readers/{id}/recommendations.
type Recommendations struct {
	Reader       string `json:"reader"`
	ModelVersion int    `json:"model_version"` // 0 when no model is serving yet
	Items        []Item `json:"items"`
}

// registerRecommendations adds the recommendation and model routes.
func (a *API) registerRecommendations(mux *http.ServeMux) {
	mux.Handle("GET /v1/readers/{id}/recommendations", a.timed("recommendations", func(req *http.Request) (any, error) {
		n, err := intParam(req, "n", 20, 1, 100)
		if err != nil {
			return nil, err
		}
		_, span := a.tracer.Start(req.Context(), "dogear.recommend", trace.WithAttributes(attribute.Int("dogear.n", n)))
		defer span.End()
		recs, err := a.Recommend(req.PathValue("id"), n)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
			return nil, err
		}
		span.SetAttributes(attribute.Int("dogear.model.version", recs.ModelVersion), attribute.Int("dogear.items", len(recs.Items)))
		return recs, nil
	}))
	mux.Handle("GET /v1/books/{id}/similar", a.timed("similar", func(req *http.Request) (any, error) {
		n, err := intParam(req, "n", 20, 1, 100)
		if err != nil {
			return nil, err
		}
		return a.similar(req.PathValue("id"), n)
	}))
	mux.Handle("GET /v1/models", a.timed("models", func(*http.Request) (any, error) {
		vs, err := a.registry.List()
		return map[string]any{"models": vs}, err
	}))
	mux.HandleFunc("POST /v1/models/{version}/promote", func(w http.ResponseWriter, req *http.Request) {
		v, err := strconv.Atoi(req.PathValue("version"))
		if err != nil {
			httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: fmt.Sprintf("version must be a number, got %q", req.PathValue("version")), Field: "version"})
			return
		}
		if err := a.registry.Promote(v); errors.Is(err, registry.ErrNoVersion) {
			httpjson.Fail(w, http.StatusNotFound, httpjson.Error{Error: err.Error(), Field: "version"})
			return
		} else if err != nil {
			httpjson.Fail(w, http.StatusInternalServerError, httpjson.Error{Error: err.Error()})
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"serving": v})
	})
	mux.HandleFunc("POST /v1/models/train", func(w http.ResponseWriter, req *http.Request) {
		v, err := a.trainer.TrainOnce(req.Context())
		if errors.Is(err, trainer.ErrNoData) {
			httpjson.Fail(w, http.StatusConflict, httpjson.Error{Error: err.Error()})
			return
		} else if err != nil {
			httpjson.Fail(w, http.StatusInternalServerError, httpjson.Error{Error: "training failed: " + err.Error()})
			return
		}
		httpjson.Write(w, http.StatusOK, v)
	})
}

func (a *API) item(book string, score float32, reason, because string) Item {
	it := Item{Book: book, Score: score, Reason: reason, Because: because}
	if b, ok := a.catalog.Book(book); ok {
		it.Title, it.Authors, it.Cover = b.Title, b.Authors, b.Cover
	}
	return it
}

// Recommend ranks books for a reader: neighbours of their history first ("because you read X"),
// then more by their favourite authors, then books trending now, then the most read books and
// the catalog's best rated. Books the reader has any record of are never recommended: finished,
// abandoned, bought, being read (those are in continue_reading), shelved or rated.
func (a *API) Recommend(reader string, n int) (*Recommendations, error) {
	now := a.now()
	var history []recommend.Interaction
	seen := map[string]bool{}
	authorScore := map[string]float32{}
	err := insights.ReaderBooks(a.store, reader, func(rb *insights.ReaderBook) error {
		it := trainer.Interaction(rb, now)
		history = append(history, it)
		// State folded before the catalog knew an alias may hold the book under its ISBN: the
		// reader has read the catalog's book all the same.
		seen[rb.Book], seen[a.catalog.Canonical(rb.Book)] = true, true
		if b, ok := a.catalog.Book(rb.Book); ok && it.Weight > 0 {
			for _, au := range b.Authors {
				authorScore[au] += it.Weight
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := &Recommendations{Reader: reader, Items: []Item{}}
	taken := map[string]bool{}
	add := func(book string, score float32, reason, because string) {
		if len(out.Items) >= n || seen[book] || seen[a.catalog.Canonical(book)] || taken[book] {
			return
		}
		taken[book] = true
		out.Items = append(out.Items, a.item(book, score, reason, because))
	}
	model, version := a.registry.Serving()
	out.ModelVersion = version
	if model != nil && len(history) > 0 {
		for _, rec := range model.Recommend(history, slices.Collect(maps.Keys(seen)), n) {
			reason := "popular with readers"
			if rec.Because != "" {
				reason = "because you read " + a.catalog.Title(rec.Because)
			}
			add(rec.Book, rec.Score, reason, rec.Because)
		}
	}
	for _, au := range topAuthors(authorScore, 3) {
		for _, b := range a.catalog.ByAuthor(au) {
			add(b, 0, "more by "+au+", whom you read", "")
		}
	}
	if len(out.Items) < n {
		trending, err := insights.Trending(a.store, now, 2*n)
		if err != nil {
			return nil, err
		}
		for _, t := range trending {
			switch {
			case t.Score > 0:
				add(t.Book, float32(t.Score), "trending now", "")
			case model == nil:
				// Started, but not for months: with no model, still the best guess.
				add(t.Book, 0, "popular with readers", "")
			}
		}
	}
	if model != nil {
		for _, b := range model.Popular() {
			if len(out.Items) >= n {
				break
			}
			add(b, 0, "popular with readers", "")
		}
	}
	for _, b := range a.catalog.Popular() {
		if len(out.Items) >= n {
			break
		}
		add(b, 0, "highly rated in the catalog", "")
	}
	return out, nil
}

func topAuthors(score map[string]float32, n int) []string {
	var out []string
	for len(out) < n {
		best, bestS := "", float32(0)
		for a, s := range score {
			if s > bestS || (s == bestS && s > 0 && a < best) {
				best, bestS = a, s
			}
		}
		if best == "" {
			break
		}
		out = append(out, best)
		delete(score, best)
	}
	return out
}

func (a *API) similar(book string, n int) (any, error) {
	out := map[string]any{"book": book}
	items := []Item{}
	model, version := a.registry.Serving()
	out["model_version"] = version
	if model != nil {
		if recs, ok := model.Similar(book, n); ok {
			for _, rec := range recs {
				items = append(items, a.item(rec.Book, rec.Score, "readers of "+a.catalog.Title(book)+" also enjoyed", book))
			}
		}
	}
	if b, ok := a.catalog.Book(book); ok {
		seen := map[string]bool{book: true, b.ID: true}
		for _, it := range items {
			seen[it.Book] = true
		}
		for _, au := range b.Authors {
			for _, other := range a.catalog.ByAuthor(au) {
				if len(items) < n && !seen[other] {
					seen[other] = true
					items = append(items, a.item(other, 0, "also by "+au, book))
				}
			}
		}
	}
	if len(items) == 0 {
		return nil, insights.ErrNotFound
	}
	out["items"] = items
	return out, nil
}
