package orchestrator

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
)

// ModelWatch follows a newly promoted model against the version it replaced, on what readers
// read after the promotion: for each reader whose newest book came after Since, would each
// model's list, made from their history before that book, have held it? An interval fails when
// the old model found significantly more of those books than the new one (McNemar's test on the
// readers one model found and the other missed, one-sided at Alpha) and the new model's hit rate
// is more than Margin (relative) below the old one's. MaxFailures failed intervals in a row
// promote the old version back.
type ModelWatch struct {
	Registry    *registry.Registry
	New, Old    int
	Since       int64 // Unix ms of the promotion
	N           int   // list length (20)
	Alpha       float64
	Margin      float64
	MaxFailures int
	// MinDiscordant is the fewest readers that one model found and the other missed for an
	// interval to count either way; with fewer the test cannot tell, and the interval is skipped.
	MinDiscordant int
	Evidence      []string
	failures      int
}

// NewModelWatch watches version newV, which replaced oldV at since (Unix ms): lists of 20, 1%
// level, a 5% relative drop, three intervals.
func NewModelWatch(reg *registry.Registry, newV, oldV int, since int64) *ModelWatch {
	return &ModelWatch{Registry: reg, New: newV, Old: oldV, Since: since, N: 20, Alpha: 0.01, Margin: 0.05, MaxFailures: 3, MinDiscordant: 10}
}

// Interval scores both models on the readers of byReader (every reader's interactions) whose
// newest read came after the last interval's, and rolls the new one back when it has failed
// MaxFailures intervals in a row. It reports whether it rolled back.
func (w *ModelWatch) Interval(byReader map[string][]recommend.Interaction) (bool, error) {
	newM, err := w.Registry.Load(w.New)
	if err != nil {
		return false, err
	}
	oldM, err := w.Registry.Load(w.Old)
	if err != nil {
		return false, err
	}
	var readers, newHits, oldHits, onlyOld, onlyNew int
	var until int64 // the newest read scored: the next interval starts after it
	for _, list := range byReader {
		latest := slices.MaxFunc(list, func(a, b recommend.Interaction) int { return cmp.Compare(a.At, b.At) })
		if latest.At <= w.Since {
			continue
		}
		until = max(until, latest.At)
		var history []recommend.Interaction
		var read []string
		for _, it := range list {
			if it.At < latest.At {
				history = append(history, it)
				read = append(read, it.Book)
			}
		}
		if len(history) == 0 {
			continue
		}
		hit := func(m *recommend.Artifact) bool {
			return slices.ContainsFunc(m.Recommend(history, read, w.N), func(r recommend.Rec) bool { return r.Book == latest.Book })
		}
		n, o := hit(newM), hit(oldM)
		readers++
		switch {
		case n && o:
			newHits, oldHits = newHits+1, oldHits+1
		case n:
			newHits, onlyNew = newHits+1, onlyNew+1
		case o:
			oldHits, onlyOld = oldHits+1, onlyOld+1
		}
	}
	w.Since = max(w.Since, until)
	d := onlyOld + onlyNew
	if d < w.MinDiscordant {
		w.Evidence = append(w.Evidence, fmt.Sprintf("interval %d inconclusive: %d readers, %d found by one model only", len(w.Evidence)+1, readers, d))
		return false, nil
	}
	p := 1 - distuv.Binomial{N: float64(d), P: 0.5}.CDF(float64(onlyOld-1))
	newRate, oldRate := rate(newHits, readers), rate(oldHits, readers)
	failed := p < w.Alpha && newRate < oldRate*(1-w.Margin)
	verdict := "passed"
	if failed {
		verdict = "failed"
		w.failures++
	} else {
		w.failures = 0
	}
	w.Evidence = append(w.Evidence, fmt.Sprintf("interval %d %s: %d readers, hit rate %.3f (version %d) vs %.3f (version %d), McNemar p=%.2g",
		len(w.Evidence)+1, verdict, readers, newRate, w.New, oldRate, w.Old, p))
	if w.failures < w.MaxFailures {
		return false, nil
	}
	return true, w.Registry.Promote(w.Old)
}

// Summary is the evidence, one line per interval.
func (w *ModelWatch) Summary() string { return strings.Join(w.Evidence, "\n") }
