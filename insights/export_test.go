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

// ReadEveryStart makes Trending read every start, as it does on state folded before the trending
// aggregates, until restore is called.
func ReadEveryStart() (restore func()) {
	old := laterStartsTakenAway
	laterStartsTakenAway = -1
	return func() { laterStartsTakenAway = old }
}
