// Package segment accepts Segment-format tracking calls (/v1/batch, /v1/track, /v1/identify,
// /v1/page) from existing analytics pipelines and turns reading-related ones into dogear events.
package segment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/httpjson"
)

// Segment's own limits (its HTTP tracking API documentation): 500 KB a batch, 32 KB a call.
const (
	MaxBatchBytes   = 500_000
	MaxMessageBytes = 32_000
)

// EventTypes maps Segment track event names (case-insensitive) to dogear event types;
// docs/segment.md lists the properties each reads. Unlisted names become generic "track" events.
var EventTypes = map[string]event.Type{
	"book opened":           event.Progress, // a progress event when it carries a position, else generic
	"page turned":           event.Page,
	"page viewed":           event.Page,
	"reading progressed":    event.Progress,
	"reading session ended": event.Session,
	"highlight created":     event.Highlight,
	"bookmark added":        event.Bookmark,
	"book finished":         event.Finish,
	"book rated":            event.Rating,
	"book added to shelf":   event.Shelve,
	"book wishlisted":       event.Shelve,
	"book purchased":        event.Purchase,
	"sample downloaded":     event.Sample,
}

// KeyCheck decides whether a write key found in the body may send events, and returns the
// request's context carrying the key (for its rate limit). A request already authenticated from
// its headers passes whatever the body says.
type KeyCheck func(ctx context.Context, writeKey string) (context.Context, bool)

// Handler serves the Segment-compatible endpoints.
type Handler struct {
	log    eventlog.Log
	gate   *ingest.Gate
	keyOK  KeyCheck
	logger *slog.Logger
	now    func() time.Time
}

// New returns the handler, behind the gate every ingest route shares.
func New(log eventlog.Log, gate *ingest.Gate, keyOK KeyCheck, logger *slog.Logger) *Handler {
	return &Handler{log: log, gate: gate, keyOK: keyOK, logger: logger, now: time.Now}
}

// Register adds the routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/batch", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, "") })
	for _, call := range []string{"track", "identify", "page"} {
		mux.HandleFunc("POST /v1/"+call, func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, call) })
	}
}

// Refusal says why one message was not accepted.
type Refusal struct {
	Index     int    `json:"index"`
	MessageID string `json:"messageId,omitempty"`
	Field     string `json:"field,omitempty"`
	Code      string `json:"code"` // the same codes as POST /v1/events refusals
	Reason    string `json:"reason"`
}

// Response is the answer to every accepted request.
type Response struct {
	Success    bool      `json:"success"`
	Accepted   int       `json:"accepted"`
	Duplicates int       `json:"duplicates"`
	Generic    int       `json:"generic"` // accepted as "track" events dogear does not interpret
	Refused    []Refusal `json:"refused"`
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, call string) {
	start := time.Now()
	resp := Response{Success: true, Refused: []Refusal{}}
	status, n := h.answer(w, r, call, &resp)
	ingest.ObserveRequest(ingest.RouteSegment, status, start, n, resp.Accepted, resp.Duplicates)
}

// answer serves one request and returns its status and how many calls it held.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, call string, resp *Response) (int, int) {
	limit := int64(MaxBatchBytes)
	if call != "" {
		limit = MaxMessageBytes
	}
	body, done, refused := h.gate.Enter(w, r, limit)
	if refused != nil {
		return refused.Write(w), 0
	}
	defer done()
	ctx := r.Context()
	key, _, _ := r.BasicAuth()
	if key == "" {
		var k struct {
			WriteKey string `json:"writeKey"`
		}
		json.Unmarshal(body, &k) // a body that is no JSON object is refused below, once the key is known
		key = k.WriteKey
	}
	ctx, ok := h.keyOK(ctx, key)
	if !ok {
		return httpjson.Fail(w, http.StatusUnauthorized, httpjson.Error{Error: "missing or unknown write key: send it as the HTTP basic-auth user, or as writeKey in the body"}), 0
	}
	var envelope struct {
		Batch   []json.RawMessage `json:"batch"`
		Context json.RawMessage   `json:"context"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		return httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: "body is not a JSON object: " + err.Error()}), 0
	}
	messages := envelope.Batch
	if call != "" {
		messages = []json.RawMessage{body}
	} else if envelope.Batch == nil {
		return httpjson.Fail(w, http.StatusBadRequest, httpjson.Error{Error: `a batch needs a "batch" array of calls`, Field: "batch"}), 0
	}
	if max := h.gate.Config().MaxEvents; len(messages) > max {
		return httpjson.Fail(w, http.StatusRequestEntityTooLarge, httpjson.Error{
			Error: fmt.Sprintf("%d calls in one batch; at most %d allowed: split the batch", len(messages), max), Field: "batch"}), len(messages)
	}
	var entries []eventlog.Entry
	now := h.now()
	for i, raw := range messages {
		e, generic, ref := h.convert(raw, call, envelope.Context, now)
		if ref != nil {
			ref.Index = i
			resp.Refused = append(resp.Refused, *ref)
			ingest.ObserveRefused(ingest.RouteSegment, ref.Code)
			continue
		}
		if generic {
			resp.Generic++
		}
		entries = append(entries, eventlog.Entry{ID: e.ID, Key: e.Reader, Value: e.Encode()})
	}
	if refused := h.gate.Admit(ctx, len(entries)); refused != nil {
		return refused.Write(w), len(messages)
	}
	if len(entries) > 0 {
		dups, err := ingest.Append(ctx, h.log, entries)
		if err != nil {
			return ingest.AppendFailed(w, ctx, err, h.logger), len(messages)
		}
		resp.Accepted, resp.Duplicates = len(entries), dups
	}
	status := http.StatusOK
	if resp.Accepted == 0 && len(resp.Refused) > 0 {
		status, resp.Success = http.StatusBadRequest, false
	}
	httpjson.Write(w, status, resp)
	return status, len(messages)
}

// message is the part of a Segment call dogear reads.
type message struct {
	Type              string                     `json:"type"`
	MessageID         string                     `json:"messageId"`
	UserID            any                        `json:"userId"`
	AnonymousID       any                        `json:"anonymousId"`
	Event             string                     `json:"event"`
	Name              string                     `json:"name"`
	Timestamp         string                     `json:"timestamp"`
	OriginalTimestamp string                     `json:"originalTimestamp"`
	Properties        map[string]json.RawMessage `json:"properties"`
	Traits            map[string]json.RawMessage `json:"traits"`
	Context           struct {
		Timezone string `json:"timezone"`
	} `json:"context"`
}

// segmentField names, for refusals, where a dogear field came from in the Segment call.
var segmentField = map[string]string{
	"id": "messageId", "reader": "userId", "book": "properties.book_id", "time": "timestamp",
	"position": "properties.position", "page": "properties.page", "pages": "properties.pages",
	"duration_ms": "properties.duration_ms", "page_turns": "properties.page_turns",
	"rating": "properties.rating", "text": "properties.text", "tz": "context.timezone",
}

// convert maps one call to a dogear event, validated by the same rules as POST /v1/events.
func (h *Handler) convert(raw json.RawMessage, call string, batchContext json.RawMessage, now time.Time) (event.Event, bool, *Refusal) {
	if len(raw) > MaxMessageBytes {
		var id struct {
			MessageID string `json:"messageId"`
		}
		json.Unmarshal(raw, &id) // so the client can tell which call it was
		return event.Event{}, false, &Refusal{MessageID: id.MessageID, Code: event.CodeTooLarge, Reason: fmt.Sprintf("call is %d bytes; Segment allows at most %d", len(raw), MaxMessageBytes)}
	}
	var m message
	if err := json.Unmarshal(raw, &m); err != nil {
		return event.Event{}, false, &Refusal{Code: event.CodeMalformed, Reason: "call is not a valid JSON object: " + err.Error()}
	}
	if m.Context.Timezone == "" && len(batchContext) > 0 {
		var c struct {
			Timezone string `json:"timezone"`
		}
		json.Unmarshal(batchContext, &c)
		m.Context.Timezone = c.Timezone
	}
	if call == "" {
		call = m.Type
	}
	if m.MessageID == "" {
		// Retries of the same call must still count once: derive the id from its bytes.
		sum := sha256.Sum256(raw)
		m.MessageID = "seg-" + hex.EncodeToString(sum[:12])
	}
	out := map[string]any{"id": m.MessageID, "reader": idString(m.UserID), "device": "segment"}
	if out["reader"] == "" {
		out["reader"] = idString(m.AnonymousID)
	}
	switch {
	case m.Timestamp != "":
		out["time"] = m.Timestamp
	case m.OriginalTimestamp != "":
		out["time"] = m.OriginalTimestamp
	default:
		out["time"] = now.UTC().Format(time.RFC3339Nano)
	}
	if m.Context.Timezone != "" {
		out["tz"] = m.Context.Timezone
	}
	props := m.Properties
	if props == nil {
		props = map[string]json.RawMessage{}
	}
	typ := event.Track
	extra := map[string]json.RawMessage{"segment_call": mustJSON(call)}
	switch call {
	case "track":
		extra["segment_event"] = mustJSON(m.Event)
		if t, ok := EventTypes[strings.ToLower(strings.TrimSpace(m.Event))]; ok {
			typ = t
		}
	case "identify":
		props = m.Traits
		if tz, ok := stringProp(props, "timezone"); ok && out["tz"] == nil {
			out["tz"] = tz
		}
	case "page", "screen":
		extra["segment_name"] = mustJSON(m.Name)
	default:
		return event.Event{}, false, &Refusal{MessageID: m.MessageID, Field: "type", Code: event.CodeUnknownType, Reason: fmt.Sprintf("call type %q is not supported (track, identify, page)", call)}
	}
	used := readProperties(props, out)
	if typ == event.Progress && out["position"] == nil {
		typ = event.Track // "Book Opened" without a position says nothing about progress
	}
	if typ != event.Track && out["book"] == nil {
		return event.Event{}, false, &Refusal{MessageID: m.MessageID, Field: "properties.book_id", Code: event.CodeMissing,
			Reason: fmt.Sprintf("%q maps to a %s event, which needs the book: properties.book_id (or asin, isbn)", m.Event, typ)}
	}
	out["type"] = string(typ)
	// Everything dogear did not read is kept, within the props bounds; what does not fit is counted.
	keys := make([]string, 0, len(props))
	for k := range props {
		if !used[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	total, dropped := 0, 0
	for _, k := range keys {
		v := props[k]
		if len(extra) >= event.MaxProps-1 || len(v) > event.MaxPropBytes || total+len(k)+len(v) > event.MaxPropsTotal-64 || len(k) > event.MaxIDLen {
			dropped++
			continue
		}
		extra[k] = v
		total += len(k) + len(v)
	}
	if dropped > 0 {
		extra["segment_dropped_properties"] = mustJSON(dropped)
	}
	out["props"] = extra
	b, _ := json.Marshal(out)
	e, ferr := event.Parse(b, now)
	if ferr != nil {
		field := segmentField[ferr.Field]
		if field == "" {
			field = ferr.Field
		}
		return event.Event{}, false, &Refusal{MessageID: m.MessageID, Field: field, Code: ferr.Code, Reason: ferr.Reason}
	}
	return e, typ == event.Track, nil
}

// readProperties copies the properties dogear understands into out and reports which it used.
func readProperties(p map[string]json.RawMessage, out map[string]any) map[string]bool {
	used := map[string]bool{}
	first := func(names ...string) (string, json.RawMessage) {
		for _, n := range names {
			if v, ok := p[n]; ok && string(v) != "null" {
				used[n] = true
				return n, v
			}
		}
		return "", nil
	}
	if _, v := first("book_id", "bookId", "book", "asin", "isbn", "product_id"); v != nil {
		out["book"] = idString(raw(v))
	}
	if n, v := first("position", "percentage", "percent", "progress"); v != nil {
		var f float64
		if json.Unmarshal(v, &f) == nil {
			if n != "position" && f > 1 {
				f /= 100 // percentages
			}
			out["position"] = f
		} else {
			out["position"] = raw(v) // let validation say what is wrong
		}
	}
	if _, v := first("page"); v != nil {
		out["page"] = raw(v)
	}
	if _, v := first("pages", "page_count", "total_pages"); v != nil {
		out["pages"] = raw(v)
	}
	if n, v := first("duration_ms", "duration"); v != nil {
		var f float64
		if n == "duration" && json.Unmarshal(v, &f) == nil {
			out["duration_ms"] = int64(math.Round(f * 1000)) // Segment's convention: seconds
		} else {
			out["duration_ms"] = raw(v)
		}
	}
	if _, v := first("page_turns"); v != nil {
		out["page_turns"] = raw(v)
	}
	if _, v := first("rating", "stars"); v != nil {
		out["rating"] = raw(v)
	}
	if _, v := first("text", "highlight_text", "highlight"); v != nil {
		out["text"] = raw(v)
	}
	if _, v := first("session_id", "session"); v != nil {
		out["session"] = idString(raw(v))
	}
	return used
}

func raw(v json.RawMessage) any {
	var x any
	json.Unmarshal(v, &x)
	return x
}

// idString renders a JSON string or number id as a string (Segment ids may be either).
func idString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprint(int64(x))
	case json.Number:
		return x.String()
	}
	return ""
}

func stringProp(p map[string]json.RawMessage, name string) (string, bool) {
	var s string
	if v, ok := p[name]; ok && json.Unmarshal(v, &s) == nil && s != "" {
		return s, true
	}
	return "", false
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
