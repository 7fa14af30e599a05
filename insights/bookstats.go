package insights

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/dogear-dev/dogear/state"
)

// A book's statistics are kept as aggregates folded with the events, so that a popular book's
// stats read a few hundred small keys at most, however many readers it has. Each partition keeps, per book:
//
//   - a summary: readers, starts, finishes, ratings, highlights, reading time, and the readers
//     who started and have not finished by abandonment bucket;
//   - the finishers' hours to finish, in logarithmic buckets (for the median);
//   - the unfinished starters by the UTC day and by the UTC hour of their latest reading event,
//     by bucket, and an index of who they are by hour. Abandonment depends on as_of (no reading
//     for 30 days), so the query takes the unfinished starters and removes those who read since
//     the cut-off: whole days after it from the day counts, the rest of the cut-off's day from
//     the hour counts, and the readers of the cut-off's own hour one by one. A day's record holds
//     its hours' counts too (dayCounts), so that a reader whose latest hour moves within a day
//     changes a record the fold already holds, instead of looking up an hour's key that mostly
//     does not exist. Partitions that began before that (aggregatesBooks) keep a key per hour.
//
// Every record is a sum of each reader's share, so a reader's new event moves their share from
// what their record was to what it is, and an erasure takes it out.

// bookShare is one reader's part in a book's aggregates.
type bookShare struct {
	summary     bookSummary
	finishSlot  int32 // the bucket of their hours to finish, when finished
	unfinished  bool  // started and not finished: they count in the day and hour counts
	bucket      int   // their abandonment bucket, when unfinished
	lastDay     int64 // the UTC day of their latest reading event, when unfinished
	lastHour    int64 // and its UTC hour
	hasFinished bool
}

// noPosition is the abandonment bucket of readers whose events never carried a position.
const noPosition = 10

// bookSummary is the part of a book's aggregates that does not depend on as_of.
type bookSummary struct {
	Readers, Started, Finished int64
	Unfinished                 [noPosition + 1]int64 // by abandonment bucket
	Ratings                    [5]int64
	Highlights, ReadMS         int64
}

func (s *bookSummary) add(o *bookSummary, sign int64) {
	mine, theirs := s.counts(), o.counts()
	for i := range mine {
		*mine[i] += sign * *theirs[i]
	}
}

func (s *bookSummary) encode(e *encoder) {
	for _, v := range s.counts() {
		e.int(*v)
	}
}

func (s *bookSummary) decode(d *decoder) {
	for _, v := range s.counts() {
		*v = d.int()
	}
}

// counts are the summary's fields in their stored order. An array, not a slice, so that folding
// an event, which moves a reader's share of the summary, allocates nothing for it.
func (s *bookSummary) counts() (out [5 + noPosition + 1 + 5]*int64) {
	out[0], out[1], out[2], out[3], out[4] = &s.Readers, &s.Started, &s.Finished, &s.Highlights, &s.ReadMS
	for i := range s.Unfinished {
		out[5+i] = &s.Unfinished[i]
	}
	for i := range s.Ratings {
		out[5+len(s.Unfinished)+i] = &s.Ratings[i]
	}
	return out
}

func shareOf(rb *ReaderBook) bookShare {
	sh := bookShare{summary: bookSummary{Readers: 1, Highlights: rb.Highlights, ReadMS: rb.ReadMS}}
	if rb.Rating > 0 {
		sh.summary.Ratings[rb.Rating-1] = 1
	}
	switch {
	case !rb.Started():
	case rb.Finished != 0:
		sh.summary.Started, sh.summary.Finished = 1, 1
		sh.hasFinished = true
		sh.finishSlot = finishSlot(hours(max(0, rb.Finished-rb.First)))
	default:
		sh.summary.Started = 1
		sh.unfinished = true
		sh.bucket = abandonmentBucket(rb)
		sh.lastDay, sh.lastHour = dayNumber(rb.Last), rb.Last/3_600_000
		sh.summary.Unfinished[sh.bucket] = 1
	}
	return sh
}

func abandonmentBucket(rb *ReaderBook) int {
	if rb.PosAt == 0 {
		return noPosition
	}
	return min(9, int(rb.Pos*10))
}

// Hours to finish are kept in logarithmic buckets, each 0.2% wider than the one before, and a
// bucket stands for the value 2γ^i/(γ+1): within 0.1% of every value in it (DDSketch's mapping;
// its Go library's stores cannot take a value out, which an erasure needs). The median is read
// from the buckets in both query paths, so both give the same answer.
var logGamma = math.Log(1.002)

const zeroSlot = math.MinInt32 // finished the moment they started

func finishSlot(h float64) int32 {
	if h <= 0 {
		return zeroSlot
	}
	return int32(math.Ceil(math.Log(h) / logGamma))
}

func slotValue(i int32) float64 {
	if i == zeroSlot {
		return 0
	}
	return 2 * math.Exp(float64(i)*logGamma) / (1 + math.Exp(logGamma))
}

// medianOfSlots is the median of the values the buckets stand for: the middle one, or the mean
// of the two middle ones for an even count.
func medianOfSlots(slots map[int32]int64) (float64, bool) {
	var n int64
	keys := make([]int32, 0, len(slots))
	for k, c := range slots {
		n += c
		keys = append(keys, k)
	}
	if n == 0 {
		return 0, false
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	nth := func(r int64) float64 { // the value of rank r, from 0
		for _, k := range keys {
			if r < slots[k] {
				return slotValue(k)
			}
			r -= slots[k]
		}
		return math.NaN()
	}
	if n%2 == 1 {
		return nth(n / 2), true
	}
	return (nth(n/2-1) + nth(n/2)) / 2, true
}

// Keys, each owned by the partition in it or of the reader in it.
func bookAggPrefix(book string, kind byte) []byte { return appendBookAggPrefix(nil, book, kind) }

func appendBookAggPrefix(dst []byte, book string, kind byte) []byte {
	return append(append(append(dst, "b"+sep...), book...), sep[0], kind, sep[0])
}

const (
	aggSummary   = 's'
	aggFinishes  = 'f'
	aggDays      = 'd' // + day + partition: unfinished starters by the day of their latest reading (dayCounts)
	aggHours     = 'u' // + hour + partition: and by its hour, in partitions from before dayCounts held hours
	aggHourIndex = 'l' // + hour + reader: who they are
)

func partitionKey(prefix []byte, partition int) []byte {
	return binary.BigEndian.AppendUint16(prefix, uint16(partition))
}

// lastCountsKey holds the counts of one day (kind aggDays) or hour (aggHours).
func lastCountsKey(dst []byte, book string, kind byte, t int64, partition int) []byte {
	return partitionKey(binary.BigEndian.AppendUint64(appendBookAggPrefix(dst, book, kind), uint64(t)), partition)
}

// bookAggKey holds a partition's aggregate of one kind of a book (aggSummary, aggFinishes).
func bookAggKey(dst []byte, book string, kind byte, partition int) []byte {
	return partitionKey(appendBookAggPrefix(dst, book, kind), partition)
}

func hourIndexKey(book string, hour int64, reader string) []byte {
	return append(binary.BigEndian.AppendUint64(bookAggPrefix(book, aggHourIndex), uint64(hour)), reader...)
}

// moveBookShare moves a reader's share of a book's aggregates from what their record was (old;
// nil when new) to what it is (cur; nil when erased).
func (f *Folder) moveBookShare(reader string, old, cur *ReaderBook) error {
	var o, c bookShare
	book := ""
	if old != nil {
		o, book = shareOf(old), old.Book
	}
	if cur != nil {
		c, book = shareOf(cur), cur.Book
	}
	if o.summary != c.summary {
		f.key = bookAggKey(f.key[:0], book, aggSummary, f.partition)
		h, _, err := f.hold(f.key, func() any { return new(bookSummary) })
		if err != nil {
			return err
		}
		f.change(h)
		s := h.rec.(*bookSummary)
		s.add(&o.summary, -1)
		s.add(&c.summary, 1)
	}
	if o.hasFinished != c.hasFinished || o.finishSlot != c.finishSlot {
		f.key = bookAggKey(f.key[:0], book, aggFinishes, f.partition)
		h, _, err := f.hold(f.key, func() any { return new(finishSlots) })
		if err != nil {
			return err
		}
		f.change(h)
		fs := h.rec.(*finishSlots)
		if fs.slots == nil {
			fs.slots = map[int32]int64{}
		}
		if o.hasFinished {
			fs.add(o.finishSlot, -1)
		}
		if c.hasFinished {
			fs.add(c.finishSlot, 1)
		}
	}
	moved := o.unfinished != c.unfinished || o.bucket != c.bucket // between buckets, or in or out
	if !moved && o.lastHour == c.lastHour {
		return nil
	}
	if o.unfinished {
		if err := f.addLast(book, o.lastDay, o.lastHour, o.bucket, moved || o.lastDay != c.lastDay, -1); err != nil {
			return err
		}
		if !c.unfinished || c.lastHour != o.lastHour {
			f.tx.Delete(hourIndexKey(book, o.lastHour, reader))
		}
	}
	if c.unfinished {
		if err := f.addLast(book, c.lastDay, c.lastHour, c.bucket, moved || o.lastDay != c.lastDay, 1); err != nil {
			return err
		}
		f.tx.Put(hourIndexKey(book, c.lastHour, reader), nil)
	}
	return nil
}

// addLast adds n unfinished starters of a bucket whose latest reading fell on day and hour to
// the hour's count, and to the day's when inDay.
func (f *Folder) addLast(book string, day, hour int64, bucket int, inDay bool, n int64) error {
	hoursInDays, err := f.keeps(aggregatesHoursInDays)
	if err != nil {
		return err
	}
	if !hoursInDays {
		if inDay {
			if err := f.dayCounts(book, day, func(d *dayCounts) { d.day[bucket] += n }); err != nil {
				return err
			}
		}
		f.key = lastCountsKey(f.key[:0], book, aggHours, hour, f.partition)
		h, _, err := f.hold(f.key, func() any { return new(lastCounts) })
		if err != nil {
			return err
		}
		f.change(h)
		h.rec.(*lastCounts)[bucket] += n
		return nil
	}
	return f.dayCounts(book, day, func(d *dayCounts) {
		if inDay {
			d.day[bucket] += n
		}
		d.addHour(hour-day*24, bucket, n)
	})
}

// dayCounts changes the record of a book's unfinished starters by their latest day.
func (f *Folder) dayCounts(book string, day int64, change func(*dayCounts)) error {
	f.key = lastCountsKey(f.key[:0], book, aggDays, day, f.partition)
	h, _, err := f.hold(f.key, func() any { return new(dayCounts) })
	if err != nil {
		return err
	}
	f.change(h)
	change(h.rec.(*dayCounts))
	return nil
}

// lastCounts are the unfinished starters of a book whose latest reading fell on one day or hour,
// by abandonment bucket.
type lastCounts [noPosition + 1]int64

func (d *lastCounts) encode(e *encoder) {
	for _, v := range d {
		e.int(v)
	}
}

func (d *lastCounts) decode(dec *decoder) {
	for i := range d {
		d[i] = dec.int()
	}
}

// dayCounts are the unfinished starters of a book whose latest reading fell on one day, by
// bucket, and by the hour of that day (hours with none are left out). Records written before
// hours were kept in them end after the day's counts.
type dayCounts struct {
	day   lastCounts
	hours []hourCounts // by hour
}

type hourCounts struct {
	hour   int64 // of the day, 0–23
	counts lastCounts
}

func (d *dayCounts) addHour(hour int64, bucket int, n int64) {
	i, found := slices.BinarySearchFunc(d.hours, hour, func(h hourCounts, hour int64) int { return cmp.Compare(h.hour, hour) })
	if !found {
		d.hours = slices.Insert(d.hours, i, hourCounts{hour: hour})
	}
	if d.hours[i].counts[bucket] += n; d.hours[i].counts == (lastCounts{}) {
		d.hours = slices.Delete(d.hours, i, i+1)
	}
}

func (d *dayCounts) encode(e *encoder) {
	d.day.encode(e)
	if len(d.hours) == 0 {
		return // as records from before hours were kept here
	}
	e.int(int64(len(d.hours)))
	for _, h := range d.hours {
		e.int(h.hour)
		h.counts.encode(e)
	}
}

func (d *dayCounts) decode(dec *decoder) {
	d.day.decode(dec)
	d.hours = nil
	if dec.err != nil || len(dec.b) == 0 {
		return
	}
	d.hours = decodeList(dec, 24, func(dec *decoder, h *hourCounts) {
		h.hour = dec.int()
		h.counts.decode(dec)
	})
}

// finishSlots counts finishers by the bucket of their hours to finish.
type finishSlots struct{ slots map[int32]int64 }

func (f *finishSlots) add(slot int32, n int64) {
	if f.slots[slot] += n; f.slots[slot] == 0 {
		delete(f.slots, slot)
	}
}

func (f *finishSlots) encode(e *encoder) {
	encodeCounts(e, f.slots, func(e *encoder, k int32) { e.int(int64(k)) })
}

func (f *finishSlots) decode(d *decoder) {
	f.slots = decodeCounts(d, func(d *decoder) int32 { return int32(d.int()) })
}

// bookFromAggregates answers Book from the book's aggregates.
func bookFromAggregates(src state.Reader, book string, asOf time.Time, out *BookStats) (bool, error) {
	var sum bookSummary
	err := state.ScanPrefix(src, bookAggPrefix(book, aggSummary), func(_, v []byte) error {
		var s bookSummary
		if err := decodeRecord(v, &s); err != nil {
			return err
		}
		sum.add(&s, 1)
		return nil
	})
	if err != nil || sum.Readers == 0 {
		return false, err
	}
	finishes := map[int32]int64{}
	err = state.ScanPrefix(src, bookAggPrefix(book, aggFinishes), func(_, v []byte) error {
		var f finishSlots
		if err := decodeRecord(v, &f); err != nil {
			return err
		}
		for k, n := range f.slots {
			finishes[k] += n
		}
		return nil
	})
	if err != nil {
		return false, err
	}

	// Abandoned: the unfinished starters, less those who read after the cut-off's day (day
	// counts), after its hour within that day (hour counts), and in that hour after the cut-off
	// itself (one by one).
	cutoff := asOf.Add(-AbandonAfter).UnixMilli()
	cutoffHour, nextDay := max(0, cutoff/3_600_000), dayNumber(cutoff)+1
	abandoned := sum.Unfinished
	take := func(d *lastCounts) {
		for i, n := range d {
			abandoned[i] -= n
		}
	}
	scan := func(kind byte, from, to int64, fn func(v []byte) error) error {
		prefix := bookAggPrefix(book, kind)
		lower := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(from))
		upper := state.PrefixEnd(prefix)
		if to >= 0 {
			upper = binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(to))
		}
		return src.Scan(lower, upper, func(_, v []byte) error { return fn(v) })
	}
	err = scan(aggDays, nextDay, -1, func(v []byte) error {
		var d dayCounts
		err := decodeRecord(v, &d)
		take(&d.day)
		return err
	})
	if err != nil {
		return false, err
	}
	// The rest of the cut-off's day, by hour: in its day records, and under hour keys in
	// partitions from before day records held hours.
	cutoffDay := nextDay - 1
	err = scan(aggDays, cutoffDay, nextDay, func(v []byte) error {
		var d dayCounts
		err := decodeRecord(v, &d)
		for _, h := range d.hours {
			if cutoffDay*24+h.hour >= cutoffHour {
				take(&h.counts)
			}
		}
		return err
	})
	if err != nil {
		return false, err
	}
	err = scan(aggHours, cutoffHour, nextDay*24, func(v []byte) error {
		var d lastCounts
		err := decodeRecord(v, &d)
		take(&d)
		return err
	})
	if err != nil {
		return false, err
	}
	indexPrefix := binary.BigEndian.AppendUint64(bookAggPrefix(book, aggHourIndex), uint64(cutoffHour))
	var boundary []string
	err = state.ScanPrefix(src, indexPrefix, func(k, _ []byte) error {
		boundary = append(boundary, string(k[len(indexPrefix):]))
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, reader := range boundary {
		var rb ReaderBook
		if _, err := loadFound(src, bookReaderKey(book, reader), &rb); err != nil {
			return false, err
		}
		if rb.Last < cutoff {
			abandoned[abandonmentBucket(&rb)]++
		}
	}

	out.ReadersStarted, out.ReadersFinished = int(sum.Started), int(sum.Finished)
	for i, n := range abandoned {
		out.ReadersAbandoned += int(n)
		if i == noPosition {
			out.AbandonedNoPosition = int(n)
		} else {
			out.Abandonment[i].Readers = int(n)
		}
	}
	var ratingSum int64
	for i, n := range sum.Ratings {
		out.Ratings += int(n)
		out.RatingHistogram[i] = int(n)
		ratingSum += int64(i+1) * n
	}
	out.Highlights = sum.Highlights
	finishStats(out, ratingSum, sum.ReadMS, finishes)
	return true, nil
}

// finishStats fills in what both query paths derive the same way from their sums.
func finishStats(out *BookStats, ratingSum, readMS int64, finishes map[int32]int64) {
	out.ReadingHours = round2(hours(readMS))
	if out.ReadersStarted > 0 {
		v := round4(float64(out.ReadersFinished) / float64(out.ReadersStarted))
		out.CompletionRate = &v
	}
	if m, ok := medianOfSlots(finishes); ok {
		m = round2(m)
		out.MedianHoursToFinish = &m
	}
	if out.Ratings > 0 {
		v := round2(float64(ratingSum) / float64(out.Ratings))
		out.AverageRating = &v
	}
}
