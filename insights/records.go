// Package insights folds reading events into per-reader, per-book and platform state, and answers
// the insight queries (reading time, streaks, speed, completion, abandonment, trending) from it.
package insights

import (
	"cmp"
	"encoding/binary"
	"slices"
	"time"
)

// Every record merges events with commutative operations only (min, max, sums, set union, and
// "latest by (event time, event id)"), so the state after a set of events is the same whatever
// order they arrive in. That is what makes late and out-of-order events harmless and lets
// `dogear rebuild` reproduce live state exactly.

// ReaderBook is what dogear knows about one reader and one book. Times are Unix milliseconds.
type ReaderBook struct {
	Reader string
	Book   string
	// First and Last are the earliest and latest reading events (0: never read, only bought,
	// sampled, shelved or rated).
	First int64
	Last  int64
	// Pos is the position of the latest event that carried one, ordered by (PosAt, PosID).
	Pos    float64
	PosAt  int64
	PosID  string
	MaxPos float64
	// Pages is the longest book length in pages that a device reported.
	Pages      int
	Finished   int64 // earliest finish
	ReadMS     int64
	PageViews  int64
	PageMS     int64 // reading time of page events, for pages per hour
	Rating     int
	RatedAt    int64
	RatingID   string
	Highlights int64
	Shelved    int64
	Purchased  int64
	Sampled    int64
	// PagesRead is the number of distinct pages seen in page events.
	PagesRead int64
	// NextPage is one more than the highest page recorded as read, so that a page from it up is
	// known to be new without looking for its key: readers mostly read forward, and a key that is
	// not there is the dearest read of a fold. unknownCeiling on records from builds before it.
	NextPage int64
	// pages are the pages read, so that each counts once in PagesRead with no key per page;
	// pageKeys instead on records from builds that kept a key per page read, which go on
	// looking those up until a rebuild.
	pages    pageRuns
	pageKeys bool
}

// pageRuns is a set of pages as sorted runs, apart by at least one page: a reader who reads
// through a book holds one run.
type pageRuns []pageRun

// pageRun is the pages from to to, both included.
type pageRun struct{ from, to int64 }

// add puts page in the set and reports whether it was not there.
func (s *pageRuns) add(page int64) bool {
	runs := *s
	// The first run that ends at or after the page; the page is after every run before it.
	i, _ := slices.BinarySearchFunc(runs, page, func(r pageRun, p int64) int { return cmp.Compare(r.to, p) })
	if i < len(runs) && runs[i].from <= page {
		return false
	}
	left := i > 0 && runs[i-1].to == page-1
	right := i < len(runs) && runs[i].from == page+1
	switch {
	case left && right:
		runs[i-1].to = runs[i].to
		runs = slices.Delete(runs, i, i+1)
	case left:
		runs[i-1].to = page
	case right:
		runs[i].from = page
	default:
		runs = slices.Insert(runs, i, pageRun{page, page})
	}
	*s = runs
	return true
}

// Started reports whether the reader has read any of the book.
func (rb *ReaderBook) Started() bool { return rb.First != 0 }

// ReaderMeta is per-reader bookkeeping: time zone (latest by event time) and event counts.
type ReaderMeta struct {
	TZ     string
	TZAt   int64
	TZID   string
	Events int64
	First  int64
	Last   int64
	// LastActive is the UTC day (days since 1970, plus one; 0 = never) of the reader's latest
	// reading event: the reader counts in that day's "last active" aggregate.
	LastActive int64
	// NextSlot is one more than the reader's highest time slot with reading recorded, so that a
	// later slot is known to be new without looking for its key. unknownCeiling on records from
	// builds before it.
	NextSlot int64
	// ActiveDays has bit i set when the reader read on day LastActive−1−i, for the activeDays days
	// up to their latest, so that a day among those, or after, is known read or not without
	// looking for its active key: events of days before the latest arrive from devices syncing
	// late and from imports. unknownDays on records from builds before it.
	ActiveDays int64
}

// activeDays is how many days back from a reader's latest ActiveDays covers: every bit of an
// int64 but the sign, which marks unknownDays.
const activeDays = 63

// unknownDays marks an ActiveDays that a record written before the field existed cannot know.
const unknownDays = -1

// activeOn reports whether the reader read on day (days since 1970), when the record knows it
// without looking for the day's active key.
func (m *ReaderMeta) activeOn(day int64) (active, known bool) {
	if m.ActiveDays == unknownDays {
		return false, false
	}
	switch back := m.LastActive - 1 - day; {
	case back < 0:
		return false, true // after their latest day
	case back < activeDays:
		return m.ActiveDays>>back&1 == 1, true
	}
	return false, false
}

// addActiveDay records day in ActiveDays, before LastActive moves to it when it is later.
func (m *ReaderMeta) addActiveDay(day int64) {
	if m.ActiveDays == unknownDays {
		return
	}
	if back := m.LastActive - 1 - day; back >= 0 {
		if back < activeDays {
			m.ActiveDays |= 1 << back
		}
		return
	}
	const all = 1<<activeDays - 1
	if ahead := day + 1 - m.LastActive; ahead < activeDays {
		m.ActiveDays = m.ActiveDays << ahead & all
	} else {
		m.ActiveDays = 0
	}
	m.ActiveDays |= 1
}

// unknownCeiling marks a NextPage or NextSlot that a record written before the field existed
// cannot know; such a record looks every page and slot up, as before, until a rebuild.
const unknownCeiling = -1

// isNew reports whether n is known to be above everything recorded under ceiling.
func isNew(n, ceiling int64) bool { return ceiling != unknownCeiling && n >= ceiling }

// raise moves a ceiling above n, unless it is unknown.
func raise(ceiling, n int64) int64 {
	if ceiling == unknownCeiling {
		return ceiling
	}
	return max(ceiling, n+1)
}

// Slot is a reader's reading activity in one 15-minute slot of UTC time. Every time zone's
// offset is a multiple of 15 minutes, so slots fall into local days exactly whatever the zone.
type Slot struct {
	MS     int64
	Events int64
}

const (
	slotSeconds = 15 * 60
	slotsPerDay = 86400 / slotSeconds
)

// daySlots is a reader's reading in one UTC day, by the time slots of the day that have any, in
// order: one record, read and written once for a day's reading instead of once per slot.
type daySlots struct{ slots []daySlot }

type daySlot struct {
	slot int64 // of the day
	Slot
}

func (d *daySlots) add(slot, ms int64) {
	i, found := slices.BinarySearchFunc(d.slots, slot, func(s daySlot, slot int64) int { return cmp.Compare(s.slot, slot) })
	if !found {
		d.slots = slices.Insert(d.slots, i, daySlot{slot: slot})
	}
	d.slots[i].MS += ms
	d.slots[i].Events++
}

func (d *daySlots) encode(e *encoder) {
	e.int(int64(len(d.slots)))
	for _, s := range d.slots {
		e.int(s.slot)
		s.Slot.encode(e)
	}
}

func (d *daySlots) decode(dec *decoder) {
	d.slots = decodeList(dec, slotsPerDay, func(dec *decoder, s *daySlot) {
		s.slot = dec.int()
		s.Slot.decode(dec)
	})
}

// PartitionCounts are per-partition totals; summed over partitions they are platform totals
// (served as the totals of GET /v1/stats, hence the JSON names).
type PartitionCounts struct {
	Events        int64 `json:"events"`
	ReadingEvents int64 `json:"reading_events"`
	Readers       int64 `json:"readers"`
	ReaderBooks   int64 `json:"reader_books"`
	// Aggregates says which aggregates the partition kept from its first event, so that queries
	// may use them: none (state folded before any existed, until a rebuild), the daily active
	// counts (aggregatesDaily), and the trending weights (aggregatesTrending), and the book
	// statistics (aggregatesBooks), with their hour counts in day records
	// (aggregatesHoursInDays). From aggregatesSlotsInDays on, the reader's time slots are kept
	// in a record per day too.
	Aggregates int64 `json:"-"`
}

const (
	aggregatesDaily    = 1
	aggregatesTrending = 2
	aggregatesBooks    = 3
	// the same aggregates in fewer keys: hours and slots in records per day
	aggregatesHoursInDays = 4
	aggregatesSlotsInDays = 5
)

// Key layout. Ids cannot contain control characters, so \x00 separates components without
// ambiguity and every prefix scan is exact. Each key is owned by the partition of the reader in
// it, so processors of different partitions never write the same key.
const sep = "\x00"

func readerPrefix(reader string) []byte { return []byte("r" + sep + reader + sep) }

// The keys a fold builds for every event are appended to dst, which a Folder reuses.
func metaKey(dst []byte, reader string) []byte {
	return append(append(append(dst, "r"+sep...), reader...), sep+"m"...)
}
func readerBookKey(dst []byte, reader, book string) []byte {
	return append(append(append(append(dst, "r"+sep...), reader...), sep+"b"+sep...), book...)
}
func readerBooksPrefix(reader string) []byte { return []byte("r" + sep + reader + sep + "b" + sep) }
func bookReaderKey(book, reader string) []byte {
	return []byte("b" + sep + book + sep + "r" + sep + reader)
}
func bookReadersPrefix(book string) []byte { return []byte("b" + sep + book + sep + "r" + sep) }
func seenKey(dst []byte, reader, id string) []byte {
	return append(append(append(append(dst, "r"+sep...), reader...), sep+"e"+sep...), id...)
}
func slotsPrefix(reader string) []byte { return []byte("r" + sep + reader + sep + "t" + sep) }
func slotKey(dst []byte, reader string, slot int64) []byte {
	k := append(append(append(dst, "r"+sep...), reader...), sep+"t"+sep...)
	return binary.BigEndian.AppendUint64(k, uint64(slot))
}
func daySlotsPrefix(reader string) []byte { return []byte("r" + sep + reader + sep + "d" + sep) }
func daySlotsKey(dst []byte, reader string, day int64) []byte {
	k := append(append(append(dst, "r"+sep...), reader...), sep+"d"+sep...)
	return binary.BigEndian.AppendUint64(k, uint64(day))
}
func pageKey(reader, book string, page int) []byte {
	k := append(make([]byte, 0, len(reader)+len(book)+10), "r"+sep+reader+sep+"p"+sep+book+sep...)
	return binary.BigEndian.AppendUint32(k, uint32(page))
}
func highlightsPrefix(book string) []byte { return []byte("b" + sep + book + sep + "h" + sep) }
func highlightKey(book, hash, reader string) []byte {
	return []byte("b" + sep + book + sep + "h" + sep + hash + sep + reader)
}

// Platform keys: active readers by UTC day, and book starts by UTC hour.
func activePrefix(day string) []byte { return []byte("p" + sep + "a" + sep + day + sep) }
func activeKey(day, reader string) []byte {
	return append(activePrefix(day), reader...)
}

var startsPrefix = []byte("p" + sep + "s" + sep)

func startKey(hour int64, book, reader string) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte(nil), startsPrefix...), uint64(hour))
	return append(k, sep+book+sep+reader...)
}

var countsPrefix = []byte("p" + sep + "c" + sep)

func countsKey(dst []byte, partition int) []byte {
	return binary.BigEndian.AppendUint16(append(dst, countsPrefix...), uint16(partition))
}

// Daily aggregates, per partition, so that platform queries read a few keys per day instead of
// every active reader: how many readers were active on a UTC day, and how many readers' latest
// reading day it is. The day is big-endian, so a window of days is one range scan.
const (
	dailyActive = 'n'
	dailyLast   = 'l'
	// hourlyStarts counts a partition's starts by UTC hour (the "day" of its key is an hour), so
	// that trending knows whether any start came after as_of's hour.
	hourlyStarts = 'h'
)

func dailyPrefix(kind byte) []byte { return []byte{'p', 0, kind, 0} }
func dailyKey(dst []byte, kind byte, day int64, partition int) []byte {
	dst = append(dst, 'p', 0, kind, 0)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(dst, uint64(day)), uint16(partition))
}

// dayNumber is the UTC day of a moment, in days since 1970.
func dayNumber(ms int64) int64 { return time.UnixMilli(ms).UTC().Unix() / 86400 }

func dayString(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02") }
