// Package event defines dogear's reading-event model (v1): the event types, their fields,
// and the validation that turns untrusted JSON from devices into events or precise refusals.
package event

import (
	"encoding/json"
	"time"

	fastjson "github.com/goccy/go-json"
)

// Type is the kind of reading event.
type Type string

// The event types of model v1; docs/events.md describes each with an example.
const (
	Session   Type = "session"  // a reading session: duration_ms, optional page_turns
	Page      Type = "page"     // a page viewed: page, optional pages and duration_ms
	Progress  Type = "progress" // a position reached: position
	Highlight Type = "highlight"
	Bookmark  Type = "bookmark"
	Finish    Type = "finish"
	Rating    Type = "rating"
	Shelve    Type = "shelve" // added to want-to-read
	Purchase  Type = "purchase"
	Sample    Type = "sample"
	// Track is a tracking call dogear does not interpret (an unmapped Segment event, an identify
	// or page call): kept in the log with its name and properties in props; book is optional.
	Track Type = "track"
)

// Types lists every known type, in documentation order.
var Types = []Type{Session, Page, Progress, Highlight, Bookmark, Finish, Rating, Shelve, Purchase, Sample, Track}

func (t Type) known() bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}

// IsReading reports whether the type means the reader was reading the book (as opposed to buying,
// sampling, shelving or rating it); reading events start a book and count towards streaks.
func (t Type) IsReading() bool {
	switch t {
	case Session, Page, Progress, Highlight, Bookmark, Finish:
		return true
	}
	return false
}

// Event is one validated reading event. Time is always UTC. Optional numeric fields are zero
// when absent, except Position, which is nil when absent because 0 is a meaningful position.
type Event struct {
	ID         string                     `json:"id"`
	Type       Type                       `json:"type"`
	Reader     string                     `json:"reader"`
	Book       string                     `json:"book"`
	Time       time.Time                  `json:"time"`
	Device     string                     `json:"device,omitempty"`
	Session    string                     `json:"session,omitempty"`
	Position   *float64                   `json:"position,omitempty"`
	Page       int                        `json:"page,omitempty"`
	Pages      int                        `json:"pages,omitempty"`
	DurationMS int64                      `json:"duration_ms,omitempty"`
	PageTurns  int                        `json:"page_turns,omitempty"`
	Rating     int                        `json:"rating,omitempty"`
	Text       string                     `json:"text,omitempty"`
	TZ         string                     `json:"tz,omitempty"`
	Props      map[string]json.RawMessage `json:"props,omitempty"`
}

// Limits on field sizes. They bound what one event can cost in memory and storage.
const (
	MaxIDLen       = 128
	MaxTextBytes   = 4096
	MaxStringField = 256 // device, session, tz
	MaxProps       = 32
	MaxPropBytes   = 1024
	MaxPropsTotal  = 8192
	MaxDuration    = 24 * time.Hour
	MaxPages       = 1_000_000
	MaxFutureSkew  = 24 * time.Hour
)

// Earliest is the earliest event time accepted: e-readers did not exist before it, so an earlier
// time is a device clock that was never set.
var Earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Marshal encodes the event as the JSON a client sends (NDJSON bodies, exports, dumps). It uses
// goccy/go-json, a drop-in encoding/json that is about 3× faster on events; the slow path of
// Parse keeps encoding/json for its precise error types. The log stores events in their binary
// stored form instead (Encode).
func (e *Event) Marshal() []byte {
	b, err := fastjson.Marshal(e)
	if err != nil {
		// Every field of a validated Event is marshalable; failure here is a programming error.
		panic("event: marshal: " + err.Error())
	}
	return b
}
