package insights

import (
	"crypto/sha256"
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

// Folder folds one partition's events into a Tx, batch after batch. The records nearly every
// event reads and rewrites stay decoded in it (held.go), and Flush encodes each one a batch
// changed into the Tx once: a reader's session arrives as a run of events, and each event used
// to decode and encode the same records again. Nothing else may write those records while the
// Folder holds them, unless Forget is called after.
type Folder struct {
	tx        Tx
	partition int
	current   map[string]*held // by state key
	older     map[string]*held
	changed   []*held // in first-change order
	key       []byte  // the last key built, reused: a fold builds several for each event
}

// NewFolder starts folding partition's events over tx.
func NewFolder(tx Tx, partition int) *Folder {
	return &Folder{tx: tx, partition: partition, current: map[string]*held{}, older: map[string]*held{}}
}

// Apply folds one event into state. It returns false, changing nothing, when the event's id was
// applied before: mirrored copies and redeliveries count once.
func (f *Folder) Apply(e *event.Event) (bool, error) {
	f.key = seenKey(f.key[:0], e.Reader, e.ID)
	if _, seen, err := f.tx.Get(f.key); err != nil || seen {
		return false, err
	}
	f.tx.Put(f.key, nil)
	if err := f.ApplyUnique(e); err != nil {
		return false, err
	}
	return true, nil
}

// firstAggregates is the level of aggregates a partition keeps from its first event; tests lower
// it to make the state of earlier builds.
var firstAggregates int64 = aggregatesSlotsInDays

func (f *Folder) partitionCounts() (*PartitionCounts, error) {
	f.key = countsKey(f.key[:0], f.partition)
	h, found, err := f.hold(f.key, func() any { return new(PartitionCounts) })
	if err != nil {
		return nil, err
	}
	c := h.rec.(*PartitionCounts)
	if !found {
		c.Aggregates = firstAggregates // the partition's first event: all its aggregates start complete
	}
	f.change(h)
	return c, nil
}

// keeps reports whether the partition keeps the aggregates of a level: it does when its first
// event was folded by a build that did. A partition from before goes on as it began, so that no
// count is split between two layouts.
func (f *Folder) keeps(level int64) (bool, error) {
	c, err := f.partitionCounts()
	return err == nil && c.Aggregates >= level, err
}

// readerMeta is the reader's record, and whether it existed before this event.
func (f *Folder) readerMeta(reader string) (*ReaderMeta, bool, error) {
	f.key = metaKey(f.key[:0], reader)
	h, found, err := f.hold(f.key, func() any { return new(ReaderMeta) })
	if err != nil {
		return nil, false, err
	}
	f.change(h)
	return h.rec.(*ReaderMeta), found, nil
}

// holdKnown is hold for a record known not to exist when absent: then neither the Folder nor the
// store holds it, and it is not looked for.
func (f *Folder) holdKnown(key []byte, absent bool, fresh func() any) (*held, error) {
	if !absent {
		h, _, err := f.hold(key, fresh)
		return h, err
	}
	h := &held{key: string(key), rec: fresh()}
	f.current[h.key] = h
	return h, nil
}

// addSlot adds an event and ms of reading to the reader's time slot n, which lies on day: in
// the day's record, or, in partitions that began before those, under the slot's own key. A
// record is known to be new above the reader's highest slot, and on a day they are known not to
// have read (ActiveDays): every reading event marks its day, and a slot lies within one UTC day.
func (f *Folder) addSlot(meta *ReaderMeta, reader string, n, day, ms int64) error {
	slotsInDays, err := f.keeps(aggregatesSlotsInDays)
	if err != nil {
		return err
	}
	active, known := meta.activeOn(day)
	if !slotsInDays {
		f.key = slotKey(f.key[:0], reader, n)
		h, err := f.holdKnown(f.key, isNew(n, meta.NextSlot) || known && !active, func() any { return new(Slot) })
		if err != nil {
			return err
		}
		f.change(h)
		s := h.rec.(*Slot)
		s.MS += ms
		s.Events++
		return nil
	}
	f.key = daySlotsKey(f.key[:0], reader, day)
	h, err := f.holdKnown(f.key, isNew(day*slotsPerDay, meta.NextSlot) || known && !active, func() any { return new(daySlots) })
	if err != nil {
		return err
	}
	f.change(h)
	h.rec.(*daySlots).add(n-day*slotsPerDay, ms)
	return nil
}

// readerBook is the reader-book record, and whether it existed before this event.
func (f *Folder) readerBook(reader, book string) (*ReaderBook, bool, error) {
	f.key = readerBookKey(f.key[:0], reader, book)
	h, found, err := f.hold(f.key, func() any { return new(ReaderBook) })
	if err != nil {
		return nil, false, err
	}
	f.change(h)
	return h.rec.(*ReaderBook), found, nil
}

// ApplyUnique folds one event into state, like Apply, for a caller that knows no event with its
// id was applied before or ever will be, and so neither looks the id up nor records it. A
// processor whose one source is a log that refuses ids it holds (eventlog.Pebble) knows that:
// each record of such a log is folded once (state and offset commit together), and the embedded
// state is folded from the embedded log alone (server refuses mirrors and shared state beside
// it). Not recording ids is most of what ApplyUnique saves: a key per event made the state's
// memtable and its compactions grow with the event count, and a fold cost half as much again
// with it (docs/benchmarks.md). A store that mixes both ways must use Apply throughout.
func (f *Folder) ApplyUnique(e *event.Event) error {
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
		if err := f.markActive(meta, e.Reader, at); err != nil {
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
	return f.moveBookShare(e.Reader, before, rb)
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
			if err := f.addStart(rb.Book, oldFirst/3_600_000, -1); err != nil {
				return err
			}
		}
		tx.Put(startKey(rb.First/3_600_000, rb.Book, rb.Reader), nil)
		if err := f.addStart(rb.Book, rb.First/3_600_000, 1); err != nil {
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
	if err := f.addSlot(meta, e.Reader, n, dayNumber(at), ms); err != nil {
		return err
	}
	meta.NextSlot = raise(meta.NextSlot, n)
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
func (f *Folder) markActive(meta *ReaderMeta, reader string, at int64) error {
	day := dayNumber(at)
	if day+1 == meta.LastActive {
		return nil // active that day already: the common case
	}
	seen, known := meta.activeOn(day)
	ak := activeKey(dayString(at), reader)
	if !known {
		var err error
		if _, seen, err = f.tx.Get(ak); err != nil {
			return err
		}
	}
	if !seen {
		f.tx.Put(ak, nil)
		meta.addActiveDay(day)
		if err := f.addDaily(dailyActive, day, 1); err != nil {
			return err
		}
	}
	if day+1 <= meta.LastActive {
		return nil
	}
	if meta.LastActive > 0 {
		if err := f.addDaily(dailyLast, meta.LastActive-1, -1); err != nil {
			return err
		}
	}
	meta.LastActive = day + 1
	return f.addDaily(dailyLast, day, 1)
}

// addDaily adds n to the partition's count of a day (or hour) of a daily aggregate.
func (f *Folder) addDaily(kind byte, day int64, n int64) error {
	f.key = dailyKey(f.key[:0], kind, day, f.partition)
	h, _, err := f.hold(f.key, func() any { return new(dailyCount) })
	if err != nil {
		return err
	}
	*h.rec.(*dailyCount) += dailyCount(n)
	f.change(h)
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
