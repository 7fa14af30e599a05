package event

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func storedSamples() []Event {
	pos0, pos := 0.0, 0.4375
	at := time.Date(2026, 11, 20, 8, 0, 0, 123456789, time.UTC)
	return []Event{
		{ID: "e1", Type: Finish, Reader: "r1", Book: "b1", Time: at},
		{ID: "e2", Type: Progress, Reader: "r1", Book: "b1", Time: at, Position: &pos0},
		{ID: "e3", Type: Page, Reader: "ü-reader", Book: "978-3-16-148410-0", Time: at, Device: "kindle", Session: "s1",
			Position: &pos, Page: 12, Pages: 300, DurationMS: 41_000, PageTurns: 3, Rating: 5, Text: "a \"quoted\" line\nand another",
			TZ: "Europe/Berlin", Props: map[string]json.RawMessage{"store": json.RawMessage(`"de"`), "n": json.RawMessage(`{"a":[1,2]}`)}},
		{ID: "e4", Type: Track, Reader: "r2", Time: at.Add(-time.Hour * 24 * 365 * 20), Props: map[string]json.RawMessage{"name": json.RawMessage(`"Signed Up"`)}},
	}
}

func TestStoredFormRoundTrips(t *testing.T) {
	for _, e := range storedSamples() {
		b := e.Encode()
		back, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("%s: stored form changed the event:\n%+v\n%+v", e.ID, e, back)
		}
		if json := e.Marshal(); len(b) >= len(json) {
			t.Errorf("%s: stored form %d bytes, JSON %d: it should be smaller", e.ID, len(b), len(json))
		}
	}
}

// Logs, topics and dumps written before the binary form hold JSON; it still reads.
func TestStoredFormReadsJSON(t *testing.T) {
	for _, e := range storedSamples() {
		back, err := Decode(e.Marshal())
		if err != nil || !reflect.DeepEqual(back, e) {
			t.Fatalf("%s from JSON: %+v %v", e.ID, back, err)
		}
	}
}

func TestStoredFormRefusesDamage(t *testing.T) {
	full := storedSamples()[2].Encode()
	for n := range len(full) {
		if _, err := Decode(full[:n]); err == nil {
			t.Fatalf("accepted the first %d of %d bytes", n, len(full))
		}
	}
	if _, err := Decode(append(full[:len(full):len(full)], 0)); err == nil || !strings.Contains(err.Error(), "after its last field") {
		t.Fatalf("trailing byte: %v", err)
	}
	future := append([]byte{storedVersion, 0x80, 0x80, 0x01}, full[2:]...) // bit 14 set
	if _, err := Decode(future); err == nil || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("an unknown optional field: %v", err)
	}
	if _, err := Decode([]byte{2, 0}); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("an unknown version: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, e := range storedSamples() {
		f.Add(e.Encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil || len(b) == 0 || b[0] != storedVersion {
			return
		}
		// Whatever decodes re-encodes to bytes that decode to the same event.
		again, err := Decode(e.Encode())
		if err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("decoded %+v, re-encoded to %+v (%v)", e, again, err)
		}
	})
}
