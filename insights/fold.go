package insights

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"

	"github.com/dogear-dev/dogear/event"
)

// Tx is the read-your-writes view a processor gives Apply: the store plus its pending writes.
type Tx interface {
	Get(key []byte) ([]byte, bool, error)
	Put(key, value []byte)
	Delete(key []byte)
}

// Folder folds a batch of one partition's events into a Tx. The records nearly every event reads
// and rewrites (the partition's counts, the reader's record, the reader-book record and the
// reader's time slot) stay decoded in it until Flush encodes each changed one into the Tx once.
// A reader's session arrives as a run of events, and each event used to decode and encode the
// same records again. Nothing else may read those records from the Tx before Flush.
type Folder struct {
	tx        Tx
	partition int
	counts    *PartitionCounts
	metas     map[string]*ReaderMeta
	books     map[string]*ReaderBook // by reader, separator, book
	readers   []string               // the metas' keys, in first-use order
	pairs     []*ReaderBook          // the books' values, in first-use order
	slots     map[slotRef]*Slot      // a session's events mostly fall in one slot
}

// slotRef names a reader's time slot.
type slotRef struct {
	reader string
	n      int64
}

// NewFolder starts a batch of partition's events over tx.
func NewFolder(tx Tx, partition int) *Folder {
	return &Folder{tx: tx, partition: partition, metas: map[string]*ReaderMeta{}, books: map[string]*ReaderBook{}, slots: map[slotRef]*Slot{}}
}

// Apply folds one event into state. It returns false, changing nothing, when the event's id was
// applied before: mirrored copies and redeliveries count once.
func (f *Folder) Apply(e *event.Event) (bool, error) {
	if _, seen, err := f.tx.Get(seenKey(e.Reader, e.ID)); err != nil || seen {
		return false, err
	}
	if err := f.ApplyUnique(e); err != nil {
		return false, err
	}
	return true, nil
}

// Flush writes the records the batch changed to the Tx, and starts over.
func (f *Folder) Flush() {
	if f.counts != nil {
		f.tx.Put(countsKey(f.partition), encodeRecord(f.counts))
	}
	for _, r := range f.readers {
		f.tx.Put(metaKey(r), encodeRecord(f.metas[r]))
	}
	for _, rb := range f.pairs {
		v := encodeRecord(rb)
		f.tx.Put(readerBookKey(rb.Reader, rb.Book), v)
		f.tx.Put(bookReaderKey(rb.Book, rb.Reader), v)
	}
	for ref, slot := range f.slots {
		f.tx.Put(slotKey(ref.reader, ref.n), encodeRecord(slot))
	}
	f.counts = nil
	clear(f.metas)
	clear(f.books)
	clear(f.slots)
	f.readers, f.pairs = f.readers[:0], f.pairs[:0]
}

func (f *Folder) partitionCounts() (*PartitionCounts, error) {
	if f.counts == nil {
		f.counts = new(PartitionCounts)
		if found, err := loadFound(f.tx, countsKey(f.partition), f.counts); err != nil {
			f.counts = nil
			return nil, err
		} else if !found {
			f.counts.Aggregates = aggregatesBooks // the partition's first event: all its aggregates start complete
		}
	}
	return f.counts, nil
}

// readerMeta is the reader's record, and whether it existed before this event.
func (f *Folder) readerMeta(reader string) (*ReaderMeta, bool, error) {
	if m, ok := f.metas[reader]; ok {
		return m, true, nil
	}
	m := new(ReaderMeta)
	found, err := loadFound(f.tx, metaKey(reader), m)
	if err != nil {
		return nil, false, err
	}
	f.metas[reader] = m
	f.readers = append(f.readers, reader)
	return m, found, nil
}

// slot is the reader's record of time slot n, known to be new when at or above ceiling.
func (f *Folder) slot(reader string, n, ceiling int64) (*Slot, error) {
	ref := slotRef{reader, n}
	if s, ok := f.slots[ref]; ok {
		return s, nil
	}
	s := new(Slot)
	if !isNew(n, ceiling) {
		if err := load(f.tx, slotKey(reader, n), s); err != nil {
			return nil, err
		}
	}
	f.slots[ref] = s
	return s, nil
}

// readerBook is the reader-book record, and whether it existed before this event.
func (f *Folder) readerBook(reader, book string) (*ReaderBook, bool, error) {
	k := reader + sep + book
	if rb, ok := f.books[k]; ok {
		return rb, true, nil
	}
	rb := new(ReaderBook)
	found, err := loadFound(f.tx, readerBookKey(reader, book), rb)
	if err != nil {
		return nil, false, err
	}
	f.books[k] = rb
	f.pairs = append(f.pairs, rb)
	return rb, found, nil
}

// ApplyUnique folds one event into state, like Apply, for a caller that knows its id was never
// applied before, and so skips looking it up; it still records the id, so that state is the same
// whichever way it was built and a later source with duplicates is deduplicated against it. A
// processor whose one source is a log that refuses ids it holds (eventlog.Pebble) knows that,
// since each record of such a log is folded once (state and offset commit together).
func (f *Folder) ApplyUnique(e *event.Event) error {
	tx, partition := f.tx, f.partition
	tx.Put(seenKey(e.Reader, e.ID), nil)

	counts, err := f.partitionCounts()
	if err != nil {
		return err
	}
	counts.Events++
	at := e.Time.UnixMilli()
	reading := e.Type.IsReading()

	meta, found, err := f.readerMeta(e.Reader)
	if err != nil {
		return err
	}
	if !found {
		counts.Readers++
		meta.First, meta.Last = at, at
	}
	meta.Events++
	meta.First, meta.Last = min(meta.First, at), max(meta.Last, at)
	if e.TZ != "" && later(at, e.ID, meta.TZAt, meta.TZID) {
		meta.TZ, meta.TZAt, meta.TZID = e.TZ, at, e.ID
	}
	if e.Type == event.Track {
		return nil // tracking calls count as events and may carry the reader's time zone; nothing else
	}

	rb, found, err := f.readerBook(e.Reader, e.Book)
	if err != nil {
		return err
	}
	var before *ReaderBook // the record as it was, for the book's aggregates; nil when new
	if found {
		was := *rb
		before = &was
	} else {
		counts.ReaderBooks++
		rb.Reader, rb.Book = e.Reader, e.Book
	}
	if reading {
		counts.ReadingEvents++
		if err := f.applyReading(rb, meta, e, at); err != nil {
			return err
		}
		if err := markActive(tx, partition, meta, e.Reader, at); err != nil {
			return err
		}
	}
	switch e.Type {
	case event.Rating:
		if later(at, e.ID, rb.RatedAt, rb.RatingID) {
			rb.Rating, rb.RatedAt, rb.RatingID = e.Rating, at, e.ID
		}
	case event.Shelve:
		rb.Shelved = minNonZero(rb.Shelved, at)
	case event.Purchase:
		rb.Purchased = minNonZero(rb.Purchased, at)
	case event.Sample:
		rb.Sampled = minNonZero(rb.Sampled, at)
	}
	return moveBookShare(tx, partition, e.Reader, before, rb)
}

func (f *Folder) applyReading(rb *ReaderBook, meta *ReaderMeta, e *event.Event, at int64) error {
	tx, partition := f.tx, f.partition
	oldFirst := rb.First
	rb.First = minNonZero(rb.First, at)
	rb.Last = max(rb.Last, at)
	if rb.First != oldFirst {
		// The book's start moved (first read, or a late event from before): move its trending entry.
		if oldFirst != 0 {
			tx.Delete(startKey(oldFirst/3_600_000, rb.Book, rb.Reader))
			if err := addStart(tx, partition, rb.Book, oldFirst/3_600_000, -1); err != nil {
				return err
			}
		}
		tx.Put(startKey(rb.First/3_600_000, rb.Book, rb.Reader), nil)
		if err := addStart(tx, partition, rb.Book, rb.First/3_600_000, 1); err != nil {
			return err
		}
	}

	pos, hasPos := position(e)
	if hasPos {
		if later(at, e.ID, rb.PosAt, rb.PosID) {
			rb.Pos, rb.PosAt, rb.PosID = pos, at, e.ID
		}
		rb.MaxPos = max(rb.MaxPos, pos)
	}
	rb.Pages = max(rb.Pages, e.Pages)
	var ms int64
	switch e.Type {
	case event.Session:
		ms = e.DurationMS
	case event.Page:
		rb.PageViews++
		first, err := readPage(tx, rb, e)
		if err != nil {
			return err
		}
		if first {
			rb.PagesRead++
			rb.NextPage = raise(rb.NextPage, int64(e.Page))
		}
		// A page that belongs to a reported session is already counted in that session's time.
		if e.Session == "" {
			ms = e.DurationMS
			rb.PageMS += ms
		}
	case event.Finish:
		rb.Finished = minNonZero(rb.Finished, at)
	case event.Highlight:
		rb.Highlights++
		if strings.TrimSpace(e.Text) != "" { // exports such as Kindle's carry no text
			if err := addHighlight(tx, partition, e); err != nil {
				return err
			}
		}
	}
	rb.ReadMS += ms

	n := e.Time.Unix() / slotSeconds
	slot, err := f.slot(e.Reader, n, meta.NextSlot)
	if err != nil {
		return err
	}
	meta.NextSlot = raise(meta.NextSlot, n)
	slot.MS += ms
	slot.Events++
	return nil
}

// readPage records that the reader read e's page of the book, and reports whether for the first
// time: in the record's pages, or, on a record from a build that kept them so, in a key per page.
func readPage(tx Tx, rb *ReaderBook, e *event.Event) (bool, error) {
	if !rb.pageKeys {
		return rb.pages.add(int64(e.Page)), nil
	}
	pk := pageKey(e.Reader, e.Book, e.Page)
	if !isNew(int64(e.Page), rb.NextPage) {
		if _, seen, err := tx.Get(pk); err != nil || seen {
			return false, err
		}
	}
	tx.Put(pk, nil)
	return true, nil
}

// position is where in the book an event puts the reader: its position, else page/pages, and the
// end for a finish.
func position(e *event.Event) (float64, bool) {
	switch {
	case e.Position != nil:
		return *e.Position, true
	case e.Page > 0 && e.Pages > 0:
		return float64(e.Page) / float64(e.Pages), true
	case e.Type == event.Finish:
		return 1, true
	}
	return 0, false
}

// addHighlight records that the reader highlighted a passage. Passages are grouped by their text
// with case and white space folded; the stored text is the smallest of the variants seen, so it
// does not depend on arrival order.
func addHighlight(tx Tx, partition int, e *event.Event) error {
	norm := strings.Join(strings.FieldsFunc(strings.ToLower(e.Text), unicode.IsSpace), " ")
	sum := sha256.Sum256([]byte(norm))
	hash := hex.EncodeToString(sum[:8])
	k := highlightKey(e.Book, hash, e.Reader)
	old, ok, err := tx.Get(k)
	if err != nil {
		return err
	}
	text := strings.TrimSpace(e.Text)
	if ok && text >= string(old) {
		return nil
	}
	tx.Put(k, []byte(text))
	return movePassage(tx, partition, e.Book, hash, string(old), text)
}

// later reports whether (at, id) comes after (prevAt, prevID): event time first, id to break ties,
// so "latest" is the same whatever order events arrive in.
func later(at int64, id string, prevAt int64, prevID string) bool {
	return at > prevAt || (at == prevAt && id > prevID)
}

func minNonZero(a, b int64) int64 {
	if a == 0 || b < a {
		return b
	}
	return a
}

// markActive records that the reader read on at's UTC day: the day's active key, and, the first
// time, the day's count of active readers; and, when it is their latest reading day so far,
// moves them into that day's count of readers last active then.
func markActive(tx Tx, partition int, meta *ReaderMeta, reader string, at int64) error {
	day := dayNumber(at)
	if day+1 == meta.LastActive {
		return nil // active that day already: the common case
	}
	seen, known := meta.activeOn(day)
	ak := activeKey(dayString(at), reader)
	if !known {
		var err error
		if _, seen, err = tx.Get(ak); err != nil {
			return err
		}
	}
	if !seen {
		tx.Put(ak, nil)
		meta.addActiveDay(day)
		if err := addDaily(tx, dailyActive, day, partition, 1); err != nil {
			return err
		}
	}
	if day+1 <= meta.LastActive {
		return nil
	}
	if meta.LastActive > 0 {
		if err := addDaily(tx, dailyLast, meta.LastActive-1, partition, -1); err != nil {
			return err
		}
	}
	meta.LastActive = day + 1
	return addDaily(tx, dailyLast, day, partition, 1)
}

// addDaily adds n to a partition's daily aggregate, deleting it at zero so that an erased
// reader's days leave nothing behind.
func addDaily(tx Tx, kind byte, day int64, partition int, n int64) error {
	k := dailyKey(kind, day, partition)
	v, _, err := tx.Get(k)
	if err != nil {
		return err
	}
	var c int64
	if len(v) > 0 {
		var read int
		if c, read = binary.Varint(v); read <= 0 {
			return fmt.Errorf("insights: corrupt daily count %q", k)
		}
	}
	if c += n; c == 0 {
		tx.Delete(k)
	} else {
		tx.Put(k, binary.AppendVarint(nil, c))
	}
	return nil
}

func load(tx Tx, key []byte, v record) error {
	_, err := loadFound(tx, key, v)
	return err
}

// loadFound reads and decodes a record, from a Tx or a state.Reader.
func loadFound(src interface {
	Get([]byte) ([]byte, bool, error)
}, key []byte, v record) (bool, error) {
	b, ok, err := src.Get(key)
	if err != nil || !ok {
		return false, err
	}
	if err := decodeRecord(b, v); err != nil {
		return false, fmt.Errorf("insights: corrupt record %q: %w", key, err)
	}
	return true, nil
}
