// Package trainer is the training pipeline with an evaluation gate: it periodically retrains the
// recommender from reading state, evaluates it against the serving model on recently held-out
// interactions, and promotes it only if it is not worse.
package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/state"
)

// DefaultParams are RP3beta settings chosen by `dogear eval` on the Amazon-book validation split
// (docs/recommendations.md).
var DefaultParams = recommend.NeighborParams{Kind: "rp3beta", K: 100, Alpha: 0.45, Beta: 0.2}

// Trainer trains, gates and promotes models.
type Trainer struct {
	store  state.Reader
	reg    *registry.Registry
	params recommend.NeighborParams
	logger *slog.Logger
	now    func() time.Time
	mu     sync.Mutex // one training at a time
}

// New returns a trainer reading store and writing to reg.
func New(store state.Reader, reg *registry.Registry, params recommend.NeighborParams, logger *slog.Logger) *Trainer {
	return &Trainer{store: store, reg: reg, params: params, logger: logger, now: time.Now}
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

func (t *Trainer) train(ctx context.Context, force bool) (registry.Version, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	asOf := t.now()
	byReader := map[string][]recommend.Interaction{}
	err := insights.AllReaderBooks(t.store, func(rb *insights.ReaderBook) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		byReader[rb.Reader] = append(byReader[rb.Reader], Interaction(rb, asOf))
		return nil
	})
	if err != nil {
		return registry.Version{}, err
	}
	train, holdout := splitLatest(byReader)
	if len(train) == 0 {
		return registry.Version{}, ErrNoData
	}
	start := time.Now()
	cand := recommend.TrainArtifact(train, t.params)
	m := registry.Metrics{TrainSeconds: time.Since(start).Seconds(), HeldOut: len(holdout)}
	m.Candidate = gateMetrics(cand, byReader, holdout)
	serving, servingVer := t.reg.Serving()
	switch {
	case serving == nil:
		m.Promoted, m.Reason = true, "first model"
	case len(holdout) == 0:
		s := gateMetrics(serving, byReader, holdout)
		m.Serving, m.Reason = &s, "no held-out interactions to compare on; keeping the serving model"
	default:
		s := gateMetrics(serving, byReader, holdout)
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
	v, err := t.reg.Save(cand, m)
	if err != nil {
		return registry.Version{}, err
	}
	if m.Promoted {
		if err := t.reg.Promote(v); err != nil {
			return registry.Version{}, err
		}
	}
	return registry.Version{Version: v, Created: cand.Created, Params: cand.Params, Books: len(cand.Books), Readers: cand.Readers, Metrics: m, Serving: m.Promoted}, nil
}

// Interaction turns a reader–book record into the recommender's signal.
func Interaction(rb *insights.ReaderBook, asOf time.Time) recommend.Interaction {
	at := max(rb.Last, rb.Finished, rb.Purchased, rb.Shelved, rb.Sampled, rb.RatedAt)
	return recommend.Interaction{Reader: rb.Reader, Book: rb.Book, Weight: insights.ImplicitFeedback(rb, asOf), At: at}
}

// splitLatest holds out, for every reader with at least three liked books, the most recent one.
func splitLatest(byReader map[string][]recommend.Interaction) (train []recommend.Interaction, holdout []recommend.Interaction) {
	for _, list := range byReader {
		latest, positives := -1, 0
		for i, it := range list {
			if it.Weight > 0 {
				positives++
				if latest < 0 || it.At > list[latest].At || (it.At == list[latest].At && it.Book > list[latest].Book) {
					latest = i
				}
			}
		}
		for i, it := range list {
			if i == latest && positives >= 3 {
				holdout = append(holdout, it)
				continue
			}
			train = append(train, it)
		}
	}
	return train, holdout
}

// gateMetrics ranks 20 books for each held-out reader from the rest of their history and measures
// whether the held-out book is among them (Recall@20) and how high (NDCG@20).
func gateMetrics(a *recommend.Artifact, byReader map[string][]recommend.Interaction, holdout []recommend.Interaction) recommend.Metrics {
	var recall, ndcg float64
	for _, h := range holdout {
		var hist []recommend.Interaction
		seen := map[string]bool{}
		for _, it := range byReader[h.Reader] {
			if it.Book != h.Book {
				hist = append(hist, it)
				seen[it.Book] = true
			}
		}
		recs := a.Recommend(hist, func(b string) bool { return seen[b] }, 20)
		for rank, r := range recs {
			if r.Book == h.Book {
				recall++
				ndcg += 1 / math.Log2(float64(rank)+2)
				break
			}
		}
	}
	if len(holdout) == 0 {
		return recommend.Metrics{}
	}
	n := float64(len(holdout))
	return recommend.Metrics{Recall: recall / n, NDCG: ndcg / n, Users: len(holdout)}
}
