package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // IANA zones must validate the same on machines without /usr/share/zoneinfo
	"unicode/utf8"

	fastjson "github.com/goccy/go-json"
)

// FieldError says why one event was refused: which field, and a reason a person can act on.
// Code is a stable, machine-readable reason used in metrics.
type FieldError struct {
	Field  string `json:"field,omitempty"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Refusal codes.
const (
	CodeMalformed   = "malformed_json"
	CodeMissing     = "missing_field"
	CodeInvalid     = "invalid_value"
	CodeWrongType   = "wrong_json_type"
	CodeUnknownType = "unknown_type"
	CodeTooLarge    = "too_large"
	CodeUTF8        = "invalid_utf8"
)

func fieldErr(field, code, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Code: code, Reason: fmt.Sprintf(format, args...)}
}

// wire is the shape of an event on the wire. Pointers tell absent (or null) from zero where the
// two mean different things; elsewhere a value saves the decoder an allocation per field.
type wire struct {
	ID         string                     `json:"id"`
	Type       string                     `json:"type"`
	Reader     string                     `json:"reader"`
	Book       string                     `json:"book"`
	Time       string                     `json:"time"`
	Device     string                     `json:"device"`
	Session    string                     `json:"session"`
	Position   *float64                   `json:"position"`
	Page       *int                       `json:"page"`
	Pages      *int                       `json:"pages"`
	DurationMS int64                      `json:"duration_ms"`
	PageTurns  int                        `json:"page_turns"`
	Rating     *int                       `json:"rating"`
	Text       string                     `json:"text"`
	TZ         string                     `json:"tz"`
	Props      map[string]json.RawMessage `json:"props"`
}

var wires = sync.Pool{New: func() any { return new(wire) }}

// knownFields maps each wire field name to the JSON kind it must have, for the slow path's messages.
var knownFields = map[string]string{
	"id": "string", "type": "string", "reader": "string", "book": "string", "time": "string",
	"device": "string", "session": "string", "position": "number", "page": "integer",
	"pages": "integer", "duration_ms": "integer", "page_turns": "integer", "rating": "integer",
	"text": "string", "tz": "string", "props": "object",
}

// Parse validates one JSON event. now bounds how far in the future an event time may be.
func Parse(raw []byte, now time.Time) (Event, *FieldError) {
	if !utf8.Valid(raw) {
		off := invalidUTF8Offset(raw)
		return Event{}, fieldErr(fieldAt(raw, off), CodeUTF8, "invalid UTF-8 at byte %d of the event", off)
	}
	// The fast path: goccy decodes the model's fields from raw and skips any other, which the
	// slow path keeps in props; checkShape reports those, and an event with any takes the slow
	// path. So does anything goccy refuses, including anything after the object: the slow path
	// says what is wrong, naming the field.
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		// The decoder takes the wire form through an interface, which would move it to the heap
		// for every event; a pooled one is reused instead (validate copies out what it keeps).
		w := wires.Get().(*wire)
		defer wires.Put(w)
		*w = wire{}
		if fastjson.Unmarshal(raw, w) == nil {
			others, ferr := checkShape(raw)
			if ferr != nil {
				return Event{}, ferr
			}
			if !others {
				return w.validate(now)
			}
		}
	}
	w, ferr := parseSlow(raw)
	if ferr != nil {
		return Event{}, ferr
	}
	if _, ferr := checkShape(raw); ferr != nil {
		return Event{}, ferr
	}
	return w.validate(now)
}

func parseSlow(raw []byte) (wire, *FieldError) {
	var w wire
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return w, fieldErr("", CodeMalformed, "malformed JSON at byte %d of the event: %v", se.Offset, se)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return w, fieldErr("", CodeWrongType, "an event must be a JSON object, got %s", te.Value)
		}
		return w, fieldErr("", CodeMalformed, "malformed JSON: %v", err)
	}
	if m == nil {
		return w, fieldErr("", CodeWrongType, "an event must be a JSON object, got null")
	}
	extra := map[string]json.RawMessage{}
	// Sorted so the first error reported for a bad event does not depend on map order.
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		v := m[name]
		kind, ok := knownFields[name]
		if !ok {
			extra[name] = v
			continue
		}
		if string(v) == "null" {
			continue
		}
		var err error
		switch name {
		case "id":
			err = json.Unmarshal(v, &w.ID)
		case "type":
			err = json.Unmarshal(v, &w.Type)
		case "reader":
			err = json.Unmarshal(v, &w.Reader)
		case "book":
			err = json.Unmarshal(v, &w.Book)
		case "time":
			err = json.Unmarshal(v, &w.Time)
		case "device":
			err = json.Unmarshal(v, &w.Device)
		case "session":
			err = json.Unmarshal(v, &w.Session)
		case "position":
			err = json.Unmarshal(v, &w.Position)
		case "page":
			err = json.Unmarshal(v, &w.Page)
		case "pages":
			err = json.Unmarshal(v, &w.Pages)
		case "duration_ms":
			err = json.Unmarshal(v, &w.DurationMS)
		case "page_turns":
			err = json.Unmarshal(v, &w.PageTurns)
		case "rating":
			err = json.Unmarshal(v, &w.Rating)
		case "text":
			err = json.Unmarshal(v, &w.Text)
		case "tz":
			err = json.Unmarshal(v, &w.TZ)
		case "props":
			err = json.Unmarshal(v, &w.Props)
		}
		if err != nil {
			return w, fieldErr(name, CodeWrongType, "must be a JSON %s, got %s", kind, describe(v))
		}
	}
	if len(extra) > 0 {
		if w.Props == nil {
			w.Props = extra
		} else {
			for k, v := range extra {
				if _, dup := w.Props[k]; dup {
					return w, fieldErr(k, CodeInvalid, "given both as a top-level field and in props")
				}
				w.Props[k] = v
			}
		}
	}
	return w, nil
}

// describe names a JSON value's kind and shows a short piece of it.
func describe(v json.RawMessage) string {
	s := strings.TrimSpace(string(v))
	kind := "a number"
	switch {
	case s == "":
		return "nothing"
	case s[0] == '"':
		kind = "a string"
	case s[0] == '{':
		kind = "an object"
	case s[0] == '[':
		kind = "an array"
	case s == "true" || s == "false":
		kind = "a boolean"
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return kind + " (" + s + ")"
}

func (w *wire) validate(now time.Time) (Event, *FieldError) {
	var e Event
	var ferr *FieldError
	if e.ID, ferr = requiredID("id", w.ID); ferr != nil {
		return e, ferr
	}
	if w.Type == "" {
		return e, fieldErr("type", CodeMissing, "is required (one of %s)", typeList())
	}
	e.Type = Type(w.Type)
	if !e.Type.known() {
		return e, fieldErr("type", CodeUnknownType, "unknown type %q (want one of %s)", truncate(w.Type), typeList())
	}
	if e.Reader, ferr = requiredID("reader", w.Reader); ferr != nil {
		return e, ferr
	}
	if e.Type != Track || w.Book != "" {
		if e.Book, ferr = requiredID("book", w.Book); ferr != nil {
			return e, ferr
		}
	}
	if w.Time == "" {
		return e, fieldErr("time", CodeMissing, "is required (RFC 3339, e.g. 2026-11-26T08:30:00Z)")
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return e, fieldErr("time", CodeInvalid, "must be RFC 3339 with a time zone, e.g. 2026-11-26T08:30:00Z; got %q", truncate(w.Time))
	}
	if t.Before(Earliest) {
		return e, fieldErr("time", CodeInvalid, "%s is before %s: the device clock looks unset", w.Time, Earliest.Format("2006-01-02"))
	}
	if t.After(now.Add(MaxFutureSkew)) {
		return e, fieldErr("time", CodeInvalid, "%s is more than %s in the future", w.Time, MaxFutureSkew)
	}
	e.Time = t.UTC()
	if e.Device, ferr = boundedString("device", w.Device); ferr != nil {
		return e, ferr
	}
	if e.Session, ferr = boundedString("session", w.Session); ferr != nil {
		return e, ferr
	}
	if e.TZ, ferr = boundedString("tz", w.TZ); ferr != nil {
		return e, ferr
	}
	if e.TZ != "" {
		if _, err := Location(e.TZ); err != nil {
			return e, fieldErr("tz", CodeInvalid, "unknown IANA time zone %q (e.g. Europe/Berlin)", truncate(e.TZ))
		}
	}
	if w.Position != nil {
		p := *w.Position
		if math.IsNaN(p) || p < 0 || p > 1 {
			return e, fieldErr("position", CodeInvalid, "must be a fraction of the book from 0 to 1, got %v", p)
		}
		e.Position = &p
	}
	if w.Pages != nil {
		if *w.Pages < 1 || *w.Pages > MaxPages {
			return e, fieldErr("pages", CodeInvalid, "must be from 1 to %d, got %d", MaxPages, *w.Pages)
		}
		e.Pages = *w.Pages
	}
	if w.Page != nil {
		if *w.Page < 1 || *w.Page > MaxPages {
			return e, fieldErr("page", CodeInvalid, "must be from 1 to %d, got %d", MaxPages, *w.Page)
		}
		if e.Pages > 0 && *w.Page > e.Pages {
			return e, fieldErr("page", CodeInvalid, "page %d is beyond the book's %d pages", *w.Page, e.Pages)
		}
		e.Page = *w.Page
	}
	if d := w.DurationMS; d < 0 || d > MaxDuration.Milliseconds() {
		return e, fieldErr("duration_ms", CodeInvalid, "must be from 0 to %d (24 hours), got %d", MaxDuration.Milliseconds(), d)
	}
	e.DurationMS = w.DurationMS
	if w.PageTurns < 0 || w.PageTurns > MaxPages {
		return e, fieldErr("page_turns", CodeInvalid, "must be from 0 to %d, got %d", MaxPages, w.PageTurns)
	}
	e.PageTurns = w.PageTurns
	if w.Rating != nil {
		if *w.Rating < 1 || *w.Rating > 5 {
			return e, fieldErr("rating", CodeInvalid, "must be a whole number from 1 to 5, got %d", *w.Rating)
		}
		e.Rating = *w.Rating
	}
	if len(w.Text) > MaxTextBytes {
		return e, fieldErr("text", CodeTooLarge, "is %d bytes; at most %d allowed", len(w.Text), MaxTextBytes)
	}
	e.Text = w.Text
	if ferr := validateProps(w.Props); ferr != nil {
		return e, ferr
	}
	if len(w.Props) > 0 {
		e.Props = w.Props
	}
	return e, requiredByType(&e)
}

// requiredByType checks the fields each type needs, in the words of docs/events.md.
func requiredByType(e *Event) *FieldError {
	switch e.Type {
	case Session:
		if e.DurationMS <= 0 {
			return fieldErr("duration_ms", CodeMissing, "a session needs duration_ms > 0")
		}
	case Page:
		if e.Page == 0 {
			return fieldErr("page", CodeMissing, "a page event needs page (the page number, from 1)")
		}
	case Progress:
		if e.Position == nil {
			return fieldErr("position", CodeMissing, "a progress event needs position (0 to 1)")
		}
	case Rating:
		if e.Rating == 0 {
			return fieldErr("rating", CodeMissing, "a rating event needs rating (1 to 5)")
		}
	}
	return nil
}

func validateProps(p map[string]json.RawMessage) *FieldError {
	if len(p) > MaxProps {
		return fieldErr("props", CodeTooLarge, "has %d extra fields; at most %d allowed", len(p), MaxProps)
	}
	total := 0
	for k, v := range p {
		if len(k) > MaxIDLen {
			return fieldErr("props", CodeTooLarge, "field name %q… is longer than %d bytes", k[:32], MaxIDLen)
		}
		if len(v) > MaxPropBytes {
			return fieldErr(k, CodeTooLarge, "extra field is %d bytes; at most %d allowed", len(v), MaxPropBytes)
		}
		total += len(k) + len(v)
	}
	if total > MaxPropsTotal {
		return fieldErr("props", CodeTooLarge, "extra fields total %d bytes; at most %d allowed", total, MaxPropsTotal)
	}
	return nil
}

func requiredID(field, s string) (string, *FieldError) {
	if s == "" {
		return "", fieldErr(field, CodeMissing, "is required")
	}
	if len(s) > MaxIDLen {
		return "", fieldErr(field, CodeTooLarge, "is %d bytes; at most %d allowed", len(s), MaxIDLen)
	}
	for i, r := range s {
		// Control characters and '/' would make ids ambiguous in keys, URLs and logs.
		if r < 0x20 || r == 0x7f || r == '/' {
			return "", fieldErr(field, CodeInvalid, "has a forbidden character %q at byte %d (no control characters or '/')", r, i)
		}
	}
	return s, nil
}

// boundedString checks an optional string field's length.
func boundedString(field, s string) (string, *FieldError) {
	if len(s) > MaxStringField {
		return "", fieldErr(field, CodeTooLarge, "is %d bytes; at most %d allowed", len(s), MaxStringField)
	}
	return s, nil
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

var locations sync.Map // IANA name -> *time.Location

// Location loads an IANA time zone, caching it: readers' zones repeat constantly.
func Location(name string) (*time.Location, error) {
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}

func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// fieldAt guesses which field's value holds byte off, for the invalid-UTF-8 message: the last
// `"name":` before the offset.
func fieldAt(b []byte, off int) string {
	prefix := b[:off]
	for {
		i := bytes.LastIndex(prefix, []byte(`":`))
		if i < 0 {
			return ""
		}
		j := bytes.LastIndexByte(prefix[:i], '"')
		if j < 0 {
			return ""
		}
		name := string(prefix[j+1 : i])
		if utf8.ValidString(name) && !strings.ContainsAny(name, "{},") {
			return name
		}
		prefix = prefix[:j]
	}
}

// CheckID applies the rules of an id field (event, reader, book) to s: non-empty, at most
// MaxIDLen bytes, no control characters or '/'.
func CheckID(field, s string) *FieldError {
	_, ferr := requiredID(field, s)
	return ferr
}
