package insights

import (
	"encoding/binary"
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

// KeepKeysPerHourAndSlot makes partitions that start until restore is called keep a key per
// hour of unfinished starters and per time slot of each reader, as builds did before day records
// held them.
func KeepKeysPerHourAndSlot() (restore func()) {
	firstAggregates = aggregatesBooks
	return func() { firstAggregates = aggregatesSlotsInDays }
}

// HourKeysOf lists the partitions with a key per hour of unfinished starters.
func HourKeysOf(src state.Reader, books []string) (map[int]bool, error) {
	parts := map[int]bool{}
	for _, b := range books {
		prefix := bookAggPrefix(b, aggHours)
		err := state.ScanPrefix(src, prefix, func(k, _ []byte) error {
			parts[int(binary.BigEndian.Uint16(k[len(k)-2:]))] = true
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// HasSlotKeys reports whether the reader's time slots are kept under a key each.
func HasSlotKeys(src state.Reader, reader string) (bool, error) {
	found := false
	err := state.ScanPrefix(src, slotsPrefix(reader), func(_, _ []byte) error {
		found = true
		return state.ErrStop
	})
	return found, err
}

// AsBeforeCeilings gives the writes that turn the records of readers and their books into what a
// build before NextPage, NextSlot and ActiveDays wrote: the same records without those last
// fields, and a key for each page read instead of the pages in the record.
func AsBeforeCeilings(s state.Reader, readers, books []string) (*state.Writes, error) {
	w := new(state.Writes)
	cut := func(key []byte, r record, last func() []int64) error {
		found, err := loadFound(s, key, r)
		if err != nil || !found {
			return err
		}
		if rb, ok := r.(*ReaderBook); ok {
			for _, run := range rb.pages {
				for p := run.from; p <= run.to; p++ {
					w.Put(pageKey(rb.Reader, rb.Book, int(p)), nil)
				}
			}
			rb.pages, rb.pageKeys = nil, true
		}
		b := encodeRecord(r)
		for _, v := range last() {
			b = b[:len(b)-len(binary.AppendVarint(nil, v))]
		}
		w.Put(key, b)
		return nil
	}
	for _, reader := range readers {
		var m ReaderMeta
		if err := cut(metaKey(nil, reader), &m, func() []int64 { return []int64{m.NextSlot, m.ActiveDays} }); err != nil {
			return nil, err
		}
		for _, book := range books {
			for _, k := range [][]byte{readerBookKey(nil, reader, book), bookReaderKey(book, reader)} {
				var rb ReaderBook
				if err := cut(k, &rb, func() []int64 { return []int64{rb.NextPage} }); err != nil {
					return nil, err
				}
			}
		}
	}
	return w, nil
}
