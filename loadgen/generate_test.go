package loadgen

import (
	"bytes"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/event"
)

func TestGeneratedEventsAreValidAndRepeatable(t *testing.T) {
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	cfg := Config{Readers: 50, Books: 30, Seed: 9, Start: end.Add(-30 * 24 * time.Hour), End: end}
	var a, b bytes.Buffer
	EncodeNDJSON(&a, New(cfg).Batch(5000))
	EncodeNDJSON(&b, New(cfg).Batch(5000))
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the same config gave different events")
	}
	types := map[event.Type]int{}
	ids := map[string]bool{}
	for i, line := range bytes.Split(bytes.TrimSpace(a.Bytes()), []byte("\n")) {
		e, err := event.Parse(line, end)
		if err != nil {
			t.Fatalf("event %d refused: %v\n%s", i, err, line)
		}
		if ids[e.ID] {
			t.Fatalf("id %s generated twice", e.ID)
		}
		ids[e.ID] = true
		if e.Time.Before(cfg.Start) || e.Time.After(end.Add(time.Hour)) {
			t.Fatalf("event %d at %v is outside the configured span", i, e.Time)
		}
		types[e.Type]++
	}
	for _, typ := range []event.Type{event.Session, event.Page, event.Progress, event.Highlight, event.Finish, event.Rating, event.Purchase} {
		if types[typ] == 0 {
			t.Errorf("no %s events in 5000: %v", typ, types)
		}
	}
}
