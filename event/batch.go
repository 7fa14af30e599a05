package event

import (
	"bytes"
	"context"
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

// TooManyError refuses a body with more events than allowed. Splitting stops at the first event
// past the limit, so an oversized body costs no more than an allowed one.
type TooManyError struct {
	Max    int
	Offset int64 // where the first event past the limit starts
}

func (e *TooManyError) Error() string {
	return fmt.Sprintf("more than %d events in one request; at most %d allowed: split the batch (event %d starts at byte %d)", e.Max, e.Max, e.Max+1, e.Offset)
}

// cancelCheckEvery is how many events are split between looks at the request's context.
const cancelCheckEvery = 1024

// Split cuts a request body into at most maxItems events (0: no limit). A body is a JSON array of
// events, a single JSON object, or NDJSON (one event per line); a UTF-8 byte order mark before any
// of them is ignored. An array is one JSON document, so a syntax error anywhere in it refuses the
// whole body (a BodyError with its offset): its element boundaries after the error are
// unknowable. NDJSON lines are independent, so a malformed line is refused alone later by Parse,
// and the lines around it go through. Splitting is linear in the body's size and stops with
// ctx's error when ctx ends (the client went away).
func Split(ctx context.Context, body []byte, maxItems int) ([]Item, error) {
	start := len(body) - len(bytes.TrimLeft(body, " \t\r\n"))
	start += len(body[start:]) - len(bytes.TrimPrefix(body[start:], []byte("\ufeff")))
	start += len(body[start:]) - len(bytes.TrimLeft(body[start:], " \t\r\n"))
	if start == len(body) {
		return nil, nil
	}
	lines := lineCounter{body: body, line: 1}
	switch body[start] {
	case '[':
		return splitArray(ctx, body, start, maxItems, &lines)
	case '{':
		if json.Valid(body[start:]) {
			return []Item{{Raw: body[start:], Line: lines.at(start)}}, nil
		}
	}
	return splitLines(ctx, body, maxItems)
}

// lineCounter answers "which line is byte off on" for offsets that only grow, counting each
// newline once.
type lineCounter struct {
	body []byte
	off  int
	line int
}

func (c *lineCounter) at(off int) int {
	off = min(max(off, c.off), len(c.body))
	c.line += bytes.Count(c.body[c.off:off], []byte{'\n'})
	c.off = off
	return c.line
}

func splitArray(ctx context.Context, body []byte, start, maxItems int, lines *lineCounter) ([]Item, error) {
	doc := body[start:]
	dec := json.NewDecoder(bytes.NewReader(doc))
	if _, err := dec.Token(); err != nil { // the '['
		return nil, bodyErr(body, start, 0, err)
	}
	var items []Item
	for dec.More() {
		if len(items)%cancelCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		off := int(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bodyErr(body, start, off, err)
		}
		// InputOffset is before any separator; find where the element really starts.
		elem := start + off + bytes.IndexAny(doc[off:], "{[\"-0123456789tfn")
		if maxItems > 0 && len(items) == maxItems {
			return nil, &TooManyError{Max: maxItems, Offset: int64(elem)}
		}
		items = append(items, Item{Raw: raw, Line: lines.at(elem)})
	}
	if _, err := dec.Token(); err != nil { // the ']'
		return nil, bodyErr(body, start, int(dec.InputOffset()), err)
	}
	end := start + int(dec.InputOffset())
	if rest := bytes.TrimSpace(body[end:]); len(rest) > 0 {
		off := end + bytes.Index(body[end:], rest[:1])
		return nil, &BodyError{Offset: int64(off), Line: lines.at(off), Reason: "unexpected data after the closing ]"}
	}
	return items, nil
}

// bodyErr turns a decoding error at offset off of the document that starts at byte start of body
// into a BodyError with offsets in body.
func bodyErr(body []byte, start, off int, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = int(se.Offset)
	}
	off += start
	reason := err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		off = len(body)
		reason = "the body ends before the JSON array is closed (truncated?)"
	}
	off = min(off, len(body))
	return &BodyError{Offset: int64(off), Line: bytes.Count(body[:off], []byte{'\n'}) + 1, Reason: reason}
}

func splitLines(ctx context.Context, body []byte, maxItems int) ([]Item, error) {
	var items []Item
	line, off := 0, 0
	for len(body) > 0 {
		line++
		i := bytes.IndexByte(body, '\n')
		var l []byte
		if i < 0 {
			l, body = body, nil
		} else {
			l, body = body[:i], body[i+1:]
		}
		lineStart := off
		off += len(l) + 1
		l = bytes.TrimSpace(l)
		if line == 1 {
			l = bytes.TrimPrefix(l, []byte("\ufeff"))
		}
		if len(l) == 0 {
			continue
		}
		if len(items)%cancelCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if maxItems > 0 && len(items) == maxItems {
			return nil, &TooManyError{Max: maxItems, Offset: int64(lineStart)}
		}
		items = append(items, Item{Raw: l, Line: line})
	}
	return items, nil
}
