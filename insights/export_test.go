package insights

import (
	"time"

	"github.com/dogear-dev/dogear/state"
)

// BookFromReaders is Book computed from every reader's record, as state from before the book
// aggregates is answered: the tests hold the aggregates to it.
func BookFromReaders(src state.Reader, book string, asOf time.Time) (*BookStats, error) {
	out := newBookStats(book, asOf)
	if found, err := bookFromReaders(src, book, asOf, out); err != nil || !found {
		return nil, err
	}
	var err error
	out.TopPassages, err = topPassages(src, book, topPassagesShown)
	return out, err
}

// ReadEveryRecord makes Trending read every start and Platform every active reader's key, as
// they do on state folded before the aggregates, until restore is called.
func ReadEveryRecord() (restore func()) {
	starts, readers := laterStartsTakenAway, laterReadersLookedUp
	laterStartsTakenAway, laterReadersLookedUp = -1, -1
	return func() { laterStartsTakenAway, laterReadersLookedUp = starts, readers }
}
