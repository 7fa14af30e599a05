package event

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	fastjson "github.com/goccy/go-json"
)

// The stored form is how the log, Kafka topics and the archiver's input carry an event: a
// compact binary encoding, written once at ingest and read by processors without JSON.
// docs/events.md documents it; this is version 1:
//
//	version  byte 0x01 (a JSON object, the stored form before it, starts with '{')
//	present  uvarint: bit i set when optional field i is present (storedDevice...storedProps)
//	id, type, reader, book  str each
//	time     varint: Unix nanoseconds, UTC
//	then each present optional field, in bit order:
//	  device, session, text, tz         str
//	  position                          8 bytes, IEEE 754 little endian
//	  page, pages, duration_ms, page_turns, rating   varint
//	  props    uvarint count, then count × (str key, str raw JSON value), keys in byte order
//	str      uvarint length, then that many bytes
//
// A reader that meets a present bit it does not know refuses the event, naming the bit, rather
// than drop a field: a new optional field needs a new bit, a changed meaning a new version.
const storedVersion = 1

const (
	storedDevice = 1 << iota
	storedSession
	storedPosition
	storedPage
	storedPages
	storedDuration
	storedPageTurns
	storedRating
	storedText
	storedTZ
	storedProps
	storedKnown = storedProps<<1 - 1
)

// Encode returns the event's stored form.
func (e *Event) Encode() []byte {
	return e.AppendEncoded(make([]byte, 0, 32+len(e.ID)+len(e.Reader)+len(e.Book)+len(e.Text)))
}

// AppendEncoded appends the event's stored form to b: a request's events can share one buffer
// instead of an allocation each.
func (e *Event) AppendEncoded(b []byte) []byte {
	var present uint64
	flag := func(bit uint64, on bool) {
		if on {
			present |= bit
		}
	}
	flag(storedDevice, e.Device != "")
	flag(storedSession, e.Session != "")
	flag(storedPosition, e.Position != nil)
	flag(storedPage, e.Page != 0)
	flag(storedPages, e.Pages != 0)
	flag(storedDuration, e.DurationMS != 0)
	flag(storedPageTurns, e.PageTurns != 0)
	flag(storedRating, e.Rating != 0)
	flag(storedText, e.Text != "")
	flag(storedTZ, e.TZ != "")
	flag(storedProps, len(e.Props) > 0)

	b = append(b, storedVersion)
	b = binary.AppendUvarint(b, present)
	for _, s := range []string{e.ID, string(e.Type), e.Reader, e.Book} {
		b = appendStr(b, s)
	}
	b = binary.AppendVarint(b, e.Time.UnixNano())
	if present&storedDevice != 0 {
		b = appendStr(b, e.Device)
	}
	if present&storedSession != 0 {
		b = appendStr(b, e.Session)
	}
	if present&storedPosition != 0 {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(*e.Position))
	}
	for _, f := range []struct {
		bit uint64
		v   int64
	}{{storedPage, int64(e.Page)}, {storedPages, int64(e.Pages)}, {storedDuration, e.DurationMS}, {storedPageTurns, int64(e.PageTurns)}, {storedRating, int64(e.Rating)}} {
		if present&f.bit != 0 {
			b = binary.AppendVarint(b, f.v)
		}
	}
	if present&storedText != 0 {
		b = appendStr(b, e.Text)
	}
	if present&storedTZ != 0 {
		b = appendStr(b, e.TZ)
	}
	if present&storedProps != 0 {
		keys := make([]string, 0, len(e.Props))
		for k := range e.Props {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = appendStr(b, k)
			b = appendStr(b, string(e.Props[k]))
		}
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

var errTruncated = errors.New("truncated")

// storedReader reads the fields of one stored event. Strings are cut from one string copy of
// the whole event, so a decode allocates once for all of them.
type storedReader struct {
	s   string
	pos int
	err error
}

func (r *storedReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := uvarintString(r.s[r.pos:])
	if n <= 0 {
		r.err = fmt.Errorf("%w at byte %d", errTruncated, r.pos)
		return 0
	}
	r.pos += n
	return v
}

func (r *storedReader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1) // zigzag, as binary.AppendVarint writes it
}

func (r *storedReader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.s)-r.pos) {
		r.err = fmt.Errorf("%w: a field of %d bytes at byte %d", errTruncated, n, r.pos)
		return ""
	}
	s := r.s[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s
}

func (r *storedReader) fixed64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.s)-r.pos < 8 {
		r.err = fmt.Errorf("%w at byte %d", errTruncated, r.pos)
		return 0
	}
	v := binary.LittleEndian.Uint64([]byte(r.s[r.pos : r.pos+8]))
	r.pos += 8
	return v
}

// uvarintString is binary.Uvarint over a string, without copying it.
func uvarintString(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// Decode reads an event in its stored form: version 1, or the JSON that events were stored as
// before it (still in older logs, topics and dumps). It does not validate: stored events were
// validated on the way in.
func Decode(b []byte) (Event, error) {
	var e Event
	switch {
	case len(b) == 0:
		return e, errors.New("event: empty stored event")
	case b[0] == '{':
		return decodeJSON(b)
	case b[0] != storedVersion:
		return e, fmt.Errorf("event: stored form version %d is not known to this dogear (it reads 1)", b[0])
	}
	r := &storedReader{s: string(b), pos: 1}
	present := r.uvarint()
	if unknown := present &^ storedKnown; unknown != 0 {
		return e, fmt.Errorf("event: stored event has optional fields this dogear does not know (bits %#x); upgrade it", unknown)
	}
	e.ID, e.Type, e.Reader, e.Book = r.str(), Type(r.str()), r.str(), r.str()
	e.Time = time.Unix(0, r.varint()).UTC()
	// Present fields follow in bit order, so these reads go in that order.
	has := func(bit uint64) bool { return present&bit != 0 }
	str := func(bit uint64) string {
		if !has(bit) {
			return ""
		}
		return r.str()
	}
	num := func(bit uint64) int64 {
		if !has(bit) {
			return 0
		}
		return r.varint()
	}
	e.Device = str(storedDevice)
	e.Session = str(storedSession)
	if has(storedPosition) {
		p := math.Float64frombits(r.fixed64())
		e.Position = &p
	}
	e.Page = int(num(storedPage))
	e.Pages = int(num(storedPages))
	e.DurationMS = num(storedDuration)
	e.PageTurns = int(num(storedPageTurns))
	e.Rating = int(num(storedRating))
	e.Text = str(storedText)
	e.TZ = str(storedTZ)
	if has(storedProps) {
		n := r.uvarint()
		if r.err == nil && n > uint64(len(r.s)-r.pos)/2 { // each prop takes at least two bytes
			return Event{}, fmt.Errorf("event: stored event claims %d props in %d bytes", n, len(r.s)-r.pos)
		}
		if n > 0 {
			e.Props = make(map[string]json.RawMessage, n)
		}
		for range n {
			k := r.str()
			e.Props[k] = json.RawMessage(r.str())
		}
	}
	if r.err != nil {
		return Event{}, fmt.Errorf("event: stored event: %w", r.err)
	}
	if r.pos != len(r.s) {
		return Event{}, fmt.Errorf("event: stored event has %d bytes after its last field", len(r.s)-r.pos)
	}
	return e, nil
}

// decodeJSON reads an event stored as JSON. Apart from Decode, so that the decoder's hold on
// the event it fills does not move Decode's to the heap.
func decodeJSON(b []byte) (Event, error) {
	var e Event
	err := fastjson.Unmarshal(b, &e)
	return e, err
}
