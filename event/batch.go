package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Item is one event's raw JSON within a request body, with where it came from.
type Item struct {
	Raw  []byte
	Line int // 1-based line of the body where the event starts
}

// BodyError refuses a whole body: it is not a JSON array, a JSON object, or NDJSON.
type BodyError struct {
	Offset int64 // byte offset in the (decompressed) body
	Line   int
	Reason string
}

func (e *BodyError) Error() string {
	return fmt.Sprintf("body is not valid JSON at line %d (byte %d): %s", e.Line, e.Offset, e.Reason)
}

// Split cuts a request body into events. A body is a JSON array of events, a single JSON object,
// or NDJSON (one event per line). An array is one JSON document, so a syntax error anywhere in it
// refuses the whole body (a BodyError with its offset): its element boundaries after the error
// are unknowable. NDJSON lines are independent, so a malformed line is refused alone later by
// Parse, and the lines around it go through.
func Split(body []byte) ([]Item, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return nil, nil
	}
	start := len(body) - len(trimmed)
	switch trimmed[0] {
	case '[':
		return splitArray(body, start)
	case '{':
		if json.Valid(trimmed) {
			return []Item{{Raw: trimmed, Line: lineAt(body, start)}}, nil
		}
	}
	return splitLines(body), nil
}

func splitArray(body []byte, start int) ([]Item, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // the '['
		return nil, bodyErr(body, int64(start), err)
	}
	var items []Item
	for dec.More() {
		off := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bodyErr(body, off, err)
		}
		// InputOffset is before any separator; find where the element really starts.
		elem := off + int64(bytes.IndexAny(body[off:], "{[\"-0123456789tfn"))
		items = append(items, Item{Raw: raw, Line: lineAt(body, int(elem))})
	}
	if _, err := dec.Token(); err != nil { // the ']'
		return nil, bodyErr(body, dec.InputOffset(), err)
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		off := int(dec.InputOffset()) + bytes.Index(body[dec.InputOffset():], rest[:1])
		return nil, &BodyError{Offset: int64(off), Line: lineAt(body, off), Reason: "unexpected data after the closing ]"}
	}
	return items, nil
}

func bodyErr(body []byte, off int64, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	reason := err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		off = int64(len(body))
		reason = "the body ends before the JSON array is closed (truncated?)"
	}
	if off > int64(len(body)) {
		off = int64(len(body))
	}
	return &BodyError{Offset: off, Line: lineAt(body, int(off)), Reason: reason}
}

func splitLines(body []byte) []Item {
	var items []Item
	line := 0
	for len(body) > 0 {
		line++
		i := bytes.IndexByte(body, '\n')
		var l []byte
		if i < 0 {
			l, body = body, nil
		} else {
			l, body = body[:i], body[i+1:]
		}
		l = bytes.TrimSpace(l)
		if line == 1 {
			l = bytes.TrimPrefix(l, []byte("\ufeff"))
		}
		if len(l) == 0 {
			continue
		}
		items = append(items, Item{Raw: l, Line: line})
	}
	return items
}

func lineAt(body []byte, off int) int {
	if off > len(body) {
		off = len(body)
	}
	return bytes.Count(body[:off], []byte{'\n'}) + 1
}
