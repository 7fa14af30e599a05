// Package trainer is the training pipeline with an evaluation gate: it periodically chooses and
// trains the recommender from reading state, compares it with the serving model on held-out
// interactions, and promotes it, refit on everything, only if it is not worse.
package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/state"
	"github.com/dogear-dev/dogear/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Config is how a trainer chooses its model.
type Config struct {
	// Params is the model trained when there is no search, and where the first search starts
	// (later ones start from the serving model's settings).
	Params recommend.ModelParams
	// SearchBudget is the wall time each round may spend choosing a model for this catalogue
	// (recommend.Select); 0 trains Params without a search.
	SearchBudget time.Duration
	// Tracer, when set, traces each round (dogear.train).
	Tracer trace.Tracer
}

// DefaultConfig searches for up to 45 s from recommend.DefaultParams: with the refit, a round
// stays within a minute on Amazon-book's 650k interactions (docs/recommendations.md).
var DefaultConfig = Config{Params: recommend.DefaultParams, SearchBudget: 45 * time.Second}

// Trainer trains, gates and promotes models.
type Trainer struct {
	store  state.Reader
	reg    *registry.Registry
	cfg    Config
	tracer trace.Tracer
	logger *slog.Logger
	now    func() time.Time
	mu     sync.Mutex // one training at a time
}

// New returns a trainer reading store and writing to reg.
func New(store state.Reader, reg *registry.Registry, cfg Config, logger *slog.Logger) *Trainer {
	tracer := cfg.Tracer
	if tracer == nil {
		tracer = tracing.Tracer(nil)
	}
	return &Trainer{store: store, reg: reg, cfg: cfg, tracer: tracer, logger: logger, now: time.Now}
}

// ErrNoData means there is nothing to learn from yet.
var ErrNoData = errors.New("no reading interactions to train on yet")

// Run trains every interval until ctx ends; a failed round is logged and retried next time.
func (t *Trainer) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v, err := t.TrainOnce(ctx)
		switch {
		case errors.Is(err, ErrNoData):
		case err != nil:
			t.logger.Error("training round failed", "err", err)
		default:
			t.logger.Info("trained model", "version", v.Version, "promoted", v.Metrics.Promoted, "reason", v.Metrics.Reason,
				"recall_at_20", v.Metrics.Candidate.Recall)
		}
	}
}

// TrainOnce runs one round: collect interactions, hold out each reader's latest, train, evaluate
// candidate and serving model on the held-out interactions, save, and promote if not worse.
func (t *Trainer) TrainOnce(ctx context.Context) (registry.Version, error) {
	return t.train(ctx, false)
}

// TrainAfterErasure trains a model without the erased data and promotes it whatever the gate
// says, when a model is serving: an erased reader's influence must leave the serving model even
// if the new one scores lower.
func (t *Trainer) TrainAfterErasure(ctx context.Context) (registry.Version, error) {
	if m, _ := t.reg.Serving(); m == nil {
		return registry.Version{}, ErrNoData
	}
	return t.train(ctx, true)
}

func (t *Trainer) train(ctx context.Context, force bool) (v registry.Version, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ctx, span := t.tracer.Start(ctx, "dogear.train")
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attribute.Int("dogear.model.version", v.Version), attribute.String("dogear.model.kind", v.Params.Kind),
				attribute.Bool("dogear.model.promoted", v.Metrics.Promoted), attribute.Float64("dogear.model.recall_at_20", v.Metrics.Candidate.Recall))
		}
		span.End()
	}()
	asOf := t.now()
	byReader, err := Interactions(ctx, t.store, asOf)
	if err != nil {
		return registry.Version{}, err
	}
	train, holdout := recommend.SplitLatest(byReader)
	holdout, rest := recommend.SampleHoldout(holdout, recommend.HoldoutReaders, 1)
	train = append(train, rest...)
	if len(train) == 0 {
		return registry.Version{}, ErrNoData
	}
	start := time.Now()
	serving, servingVer := t.reg.Serving()
	var all []recommend.Interaction
	for _, list := range byReader {
		all = append(all, list...)
	}
	m := registry.Metrics{HeldOut: len(holdout)}
	sel := recommend.Selection{Best: recommend.Trial{Params: t.cfg.Params}}
	if t.cfg.SearchBudget > 0 && len(holdout) > 0 {
		// Start where the serving model's neighbours are (the catalogue changes slowly); EASE
		// and the additions to a neighbour model the search tries by itself.
		from := t.cfg.Params
		if serving != nil && (serving.Params.Kind == "rp3beta" || serving.Params.Kind == "cosine") {
			from = recommend.ModelParams{Kind: serving.Params.Kind, K: serving.Params.K, Shrink: serving.Params.Shrink,
				Alpha: serving.Params.Alpha, Beta: serving.Params.Beta}
		}
		sel = recommend.Select(train, byReader, holdout, recommend.SelectOptions{Budget: t.cfg.SearchBudget, Start: from})
		m.Candidate, m.Selection = sel.Best.Metrics, &sel
	} else {
		m.Candidate = recommend.HoldoutMetrics(recommend.TrainArtifact(train, sel.Best.Params), byReader, holdout)
	}
	// What was evaluated is served: the same model, refit on everything.
	cand := sel.Refit(all)
	m.TrainSeconds = time.Since(start).Seconds()
	switch {
	case serving == nil:
		m.Promoted, m.Reason = true, "first model"
	case len(holdout) == 0:
		s := recommend.HoldoutMetrics(serving, byReader, holdout)
		m.Serving, m.Reason = &s, "no held-out interactions to compare on; keeping the serving model"
	default:
		s := recommend.HoldoutMetrics(serving, byReader, holdout)
		m.Serving = &s
		m.Promoted = m.Candidate.Recall >= s.Recall
		verdict := "worse than"
		if m.Promoted {
			verdict = "not worse than"
		}
		m.Reason = fmt.Sprintf("Recall@20 %.4f on %d held-out interactions, %s serving version %d (%.4f)",
			m.Candidate.Recall, len(holdout), verdict, servingVer, s.Recall)
	}
	if force && !m.Promoted {
		m.Promoted, m.Reason = true, "promoted after a reader's erasure regardless of the gate: "+m.Reason
	}
	m.AfterErasure = force
	saved, err := t.reg.Save(cand, m)
	if err != nil {
		return registry.Version{}, err
	}
	if m.Promoted {
		if err := t.reg.Promote(saved); err != nil {
			return registry.Version{}, err
		}
	}
	return registry.Version{Version: saved, Created: cand.Created, Params: cand.Params, Books: len(cand.Books), Readers: cand.Readers, Metrics: m, Serving: m.Promoted}, nil
}

// Interactions reads every reader's interactions from state, as of asOf.
func Interactions(ctx context.Context, store state.Reader, asOf time.Time) (map[string][]recommend.Interaction, error) {
	byReader := map[string][]recommend.Interaction{}
	err := insights.AllReaderBooks(store, func(rb *insights.ReaderBook) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		byReader[rb.Reader] = append(byReader[rb.Reader], Interaction(rb, asOf))
		return nil
	})
	return byReader, err
}

// Interaction turns a reader–book record into the recommender's signal.
func Interaction(rb *insights.ReaderBook, asOf time.Time) recommend.Interaction {
	at := max(rb.Last, rb.Finished, rb.Purchased, rb.Shelved, rb.Sampled, rb.RatedAt)
	return recommend.Interaction{Reader: rb.Reader, Book: rb.Book, Weight: insights.ImplicitFeedback(rb, asOf), At: at}
}
