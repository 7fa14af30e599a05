package insights

import (
	"cmp"
	"encoding/binary"
	"errors"
	"maps"
	"math"
	"slices"
)

// Records are stored in a compact binary form: processors decode and re-encode several records
// per event, and JSON reflection was the largest cost of processing (docs/benchmarks.md).
// The first byte is a format version so that the layout can evolve.

const codecVersion = 1

var errCorrupt = errors.New("corrupt record")

type encoder struct{ b []byte }

// newEncoder starts a record with room for most records, so that encoding one grows no buffer.
func newEncoder() *encoder         { return &encoder{b: append(make([]byte, 0, 96), codecVersion)} }
func (e *encoder) int(v int64)     { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) float(v float64) { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

type decoder struct {
	b   []byte
	err error
}

func newDecoder(b []byte) *decoder {
	if len(b) == 0 || b[0] != codecVersion {
		return &decoder{err: errCorrupt}
	}
	return &decoder{b: b[1:]}
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// optInt reads a field added after records were first written: a record that ends before it
// holds 0 there.
func (d *decoder) optInt() int64 { return d.optIntOr(0) }

// optIntOr reads a field added after records were first written, which a record that ends before
// it holds as old.
func (d *decoder) optIntOr(old int64) int64 {
	if d.err == nil && len(d.b) == 0 {
		return old
	}
	return d.int()
}

func (d *decoder) float() float64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errCorrupt
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) str() string {
	if d.err != nil {
		return ""
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		return errCorrupt
	}
	return d.err
}

// record is implemented by every stored record type.
type record interface {
	encode(*encoder)
	decode(*decoder)
}

func encodeRecord(r record) []byte {
	e := newEncoder()
	r.encode(e)
	return e.b
}

func decodeRecord(b []byte, r record) error {
	d := newDecoder(b)
	r.decode(d)
	return d.done()
}

func (rb *ReaderBook) encode(e *encoder) {
	e.str(rb.Reader)
	e.str(rb.Book)
	e.int(rb.First)
	e.int(rb.Last)
	e.float(rb.Pos)
	e.int(rb.PosAt)
	e.str(rb.PosID)
	e.float(rb.MaxPos)
	e.int(int64(rb.Pages))
	e.int(rb.Finished)
	e.int(rb.ReadMS)
	e.int(rb.PageViews)
	e.int(rb.PageMS)
	e.int(int64(rb.Rating))
	e.int(rb.RatedAt)
	e.str(rb.RatingID)
	e.int(rb.Highlights)
	e.int(rb.Shelved)
	e.int(rb.Purchased)
	e.int(rb.Sampled)
	e.int(rb.PagesRead)
	e.int(rb.NextPage)
	if !rb.pageKeys { // a record that keeps a key per page ends here, as its build wrote it
		e.int(int64(len(rb.pages)))
		prev := int64(0)
		for _, r := range rb.pages {
			e.int(r.from - prev)
			e.int(r.to - r.from)
			prev = r.to
		}
	}
}

func (rb *ReaderBook) decode(d *decoder) {
	rb.Reader = d.str()
	rb.Book = d.str()
	rb.First = d.int()
	rb.Last = d.int()
	rb.Pos = d.float()
	rb.PosAt = d.int()
	rb.PosID = d.str()
	rb.MaxPos = d.float()
	rb.Pages = int(d.int())
	rb.Finished = d.int()
	rb.ReadMS = d.int()
	rb.PageViews = d.int()
	rb.PageMS = d.int()
	rb.Rating = int(d.int())
	rb.RatedAt = d.int()
	rb.RatingID = d.str()
	rb.Highlights = d.int()
	rb.Shelved = d.int()
	rb.Purchased = d.int()
	rb.Sampled = d.int()
	rb.PagesRead = d.int()
	rb.NextPage = d.optIntOr(unknownCeiling)
	rb.pages, rb.pageKeys = nil, d.err == nil && len(d.b) == 0
	if rb.pageKeys {
		return
	}
	n := d.int()
	if n < 0 || n > int64(len(d.b)/2) { // a run takes two bytes at least
		d.err = errCorrupt
		return
	}
	rb.pages = make(pageRuns, n)
	prev := int64(0)
	for i := range rb.pages {
		from := prev + d.int()
		prev = from + d.int()
		rb.pages[i] = pageRun{from, prev}
	}
}

func (m *ReaderMeta) encode(e *encoder) {
	e.str(m.TZ)
	e.int(m.TZAt)
	e.str(m.TZID)
	e.int(m.Events)
	e.int(m.First)
	e.int(m.Last)
	e.int(m.LastActive)
	e.int(m.NextSlot)
	e.int(m.ActiveDays)
}

func (m *ReaderMeta) decode(d *decoder) {
	m.TZ = d.str()
	m.TZAt = d.int()
	m.TZID = d.str()
	m.Events = d.int()
	m.First = d.int()
	m.Last = d.int()
	m.LastActive = d.optInt()
	m.NextSlot = d.optIntOr(unknownCeiling)
	m.ActiveDays = d.optIntOr(unknownDays)
}

func (s *Slot) encode(e *encoder) { e.int(s.MS); e.int(s.Events) }
func (s *Slot) decode(d *decoder) { s.MS = d.int(); s.Events = d.int() }

func (c *PartitionCounts) encode(e *encoder) {
	e.int(c.Events)
	e.int(c.ReadingEvents)
	e.int(c.Readers)
	e.int(c.ReaderBooks)
	e.int(c.Aggregates)
}

func (c *PartitionCounts) decode(d *decoder) {
	c.Events = d.int()
	c.ReadingEvents = d.int()
	c.Readers = d.int()
	c.ReaderBooks = d.int()
	c.Aggregates = d.optInt()
}

// encodeCounts writes a map of counts in key order, so that equal counts are equal bytes.
func encodeCounts[K cmp.Ordered](e *encoder, m map[K]int64, key func(*encoder, K)) {
	keys := slices.Sorted(maps.Keys(m))
	e.int(int64(len(keys)))
	for _, k := range keys {
		key(e, k)
		e.int(m[k])
	}
}

// decodeCounts reads what encodeCounts wrote.
func decodeCounts[K comparable](d *decoder, key func(*decoder) K) map[K]int64 {
	n := d.int()
	m := make(map[K]int64, max(0, min(n, 1024)))
	for range n {
		if d.err != nil {
			break
		}
		k := key(d)
		m[k] = d.int()
	}
	return m
}

// decodeList reads a count, at most most, and that many items; a count out of range marks the
// record corrupt.
func decodeList[T any](d *decoder, most int64, item func(*decoder, *T)) []T {
	n := d.int()
	if n < 0 || n > most {
		d.err = errCorrupt
		return nil
	}
	out := make([]T, n)
	for i := range out {
		item(d, &out[i])
	}
	return out
}
