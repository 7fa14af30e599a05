package insights

import (
	"bytes"
	"time"

	"github.com/dogear-dev/dogear/state"
)

// ImplicitFeedback turns what a reader did with a book into one weight for the recommender
// (docs/recommendations.md): finishing counts most, how far they got and how long they read
// count, highlights add, shelving, buying and sampling are weak interest, a good rating adds and a
// bad one takes away, and abandoning early is a weak dislike (negative).
func ImplicitFeedback(rb *ReaderBook, asOf time.Time) float32 {
	var w float64
	switch {
	case rb.Finished != 0:
		w = 1
	case rb.Started():
		w = 0.3 + 0.7*rb.MaxPos
		if rb.Last < asOf.Add(-AbandonAfter).UnixMilli() && rb.MaxPos < 0.2 {
			return -0.2 // abandoned early
		}
	case rb.Purchased != 0:
		w = 0.4
	case rb.Shelved != 0:
		w = 0.3
	case rb.Sampled != 0:
		w = 0.2
	}
	if rb.ReadMS > 3_600_000 {
		w += 0.1 // more than an hour in the book
	}
	w += min(0.3, 0.1*float64(rb.Highlights))
	switch {
	case rb.Rating >= 4:
		w += 0.5
	case rb.Rating == 3:
		w += 0.1
	case rb.Rating > 0: // 1 or 2 stars
		w = min(w, 0.2) - 0.4
	}
	return float32(w)
}

// ReaderBooks calls fn for each book the reader has any record of, in book id order.
func ReaderBooks(src state.Reader, reader string, fn func(*ReaderBook) error) error {
	return state.ScanPrefix(src, readerBooksPrefix(reader), func(_, v []byte) error {
		var rb ReaderBook
		if err := decodeRecord(v, &rb); err != nil {
			return err
		}
		return fn(&rb)
	})
}

// AllReaderBooks calls fn for every reader–book record, grouped by book.
func AllReaderBooks(src state.Reader, fn func(*ReaderBook) error) error {
	prefix := []byte("b" + sep)
	return state.ScanPrefix(src, prefix, func(k, v []byte) error {
		// Keys are b \0 book \0 r \0 reader; highlights (b \0 book \0 h ...) are skipped.
		rest := k[len(prefix):]
		i := bytes.IndexByte(rest, 0)
		if i < 0 || i+2 >= len(rest) || rest[i+1] != 'r' {
			return nil
		}
		var rb ReaderBook
		if err := decodeRecord(v, &rb); err != nil {
			return err
		}
		return fn(&rb)
	})
}
