package insights

import (
	"encoding/binary"
	"fmt"
)

// A Folder holds the records it folds into decoded, from batch to batch: the partition's
// counts, its readers' records and time slots, and its share of each book's aggregates and of
// the daily counts. Only the processor of a partition writes that partition's records, so what
// the Folder holds stays what the store holds, until something else writes them: an erasure,
// or a batch whose commit failed. Forget drops everything then.
//
// What it holds is bounded by count, in two generations of heldPerGeneration records each: a
// record used again moves from the older generation into the current one, and when the current
// one is full, at the end of a batch, it becomes the older and the older is dropped. A record
// takes 300–400 bytes (BenchmarkHeldRecordBytes; its ids may keep their stored event alive), so
// a partition holds 5–7 MB at most, and the 16 partitions of an embedded log about 100 MB.
const heldPerGeneration = 8192

// held is a record the Folder holds decoded (a record, or a *dailyCount), and whether the batch
// changed it.
type held struct {
	key     string
	rec     any
	changed bool
}

// emptyRecord is an aggregate whose key is deleted, not written, when it sums to nothing, so
// that an erased reader's shares leave no key behind.
type emptyRecord interface{ empty() bool }

func (s *bookSummary) empty() bool { return s.Readers == 0 }
func (f *finishSlots) empty() bool { return len(f.slots) == 0 }
func (d *lastCounts) empty() bool  { return *d == lastCounts{} }
func (d *dayCounts) empty() bool   { return d.day == lastCounts{} && len(d.hours) == 0 }
func (t *BookTrend) empty() bool   { return t.Starts == 0 }
func (c *dailyCount) empty() bool  { return *c == 0 }

// dailyCount is a partition's count of one day (or hour) of a daily aggregate, stored as a bare
// varint.
type dailyCount int64

// hold returns the record under key, decoded into a record fresh makes when the Folder does not
// hold it yet, and whether it existed before: held, or in the store. The caller that changes it
// calls change.
func (f *Folder) hold(key []byte, fresh func() any) (*held, bool, error) {
	if h, ok := f.current[string(key)]; ok {
		return h, true, nil
	}
	if h, ok := f.older[string(key)]; ok {
		delete(f.older, h.key)
		f.current[h.key] = h
		return h, true, nil
	}
	h := &held{key: string(key), rec: fresh()}
	b, found, err := f.tx.Get(key)
	if err != nil {
		return nil, false, err
	}
	if found {
		switch r := h.rec.(type) {
		case *dailyCount:
			n, read := binary.Varint(b)
			if read <= 0 {
				return nil, false, fmt.Errorf("insights: corrupt daily count %q", key)
			}
			*r = dailyCount(n)
		case record:
			if err := decodeRecord(b, r); err != nil {
				return nil, false, fmt.Errorf("insights: corrupt record %q: %w", key, err)
			}
		}
	}
	f.current[h.key] = h
	return h, found, nil
}

// change marks a held record to be written at Flush.
func (f *Folder) change(h *held) {
	if !h.changed {
		h.changed = true
		f.changed = append(f.changed, h)
	}
}

// Flush writes the records the batch changed to the Tx. The Folder goes on holding them.
func (f *Folder) Flush() {
	for _, h := range f.changed {
		key := []byte(h.key)
		if e, ok := h.rec.(emptyRecord); ok && e.empty() {
			f.tx.Delete(key)
		} else {
			switch r := h.rec.(type) {
			case *dailyCount:
				f.tx.Put(key, binary.AppendVarint(nil, int64(*r)))
			case *ReaderBook:
				v := encodeRecord(r)
				f.tx.Put(key, v)
				f.tx.Put(bookReaderKey(r.Book, r.Reader), v) // its copy under the book, for book queries
			case record:
				f.tx.Put(key, encodeRecord(r))
			}
		}
		h.changed = false
	}
	f.changed = f.changed[:0]
	if len(f.current) >= heldPerGeneration {
		f.older, f.current = f.current, make(map[string]*held, heldPerGeneration)
	}
}

// Forget drops every record the Folder holds, so that it reads them from the store again: after
// something else wrote them (an erasure), or after a batch whose writes were not committed.
func (f *Folder) Forget() {
	clear(f.current)
	clear(f.older)
	f.changed = f.changed[:0]
}
