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

// The README's run (200,000 events of the default platform) has readers who finish and rate
// books, as real traffic does: a few readers read much of the time.
func TestDefaultRunFinishesAndRates(t *testing.T) {
	cfg := DefaultConfig()
	g := New(cfg)
	types := map[event.Type]int{}
	started := map[string]bool{}
	for range 200_000 {
		e := g.Next()
		types[e.Type]++
		if e.Type == event.Page {
			started[e.Reader+"/"+e.Book] = true
		}
	}
	finished := float64(types[event.Finish]) / float64(len(started))
	if types[event.Finish] < 100 || finished < 0.05 || types[event.Rating] < types[event.Finish]/2 {
		t.Fatalf("%d books started, %d finished, %d rated in 200,000 events", len(started), types[event.Finish], types[event.Rating])
	}
	t.Logf("%d books started, %d finished (%.0f%%), %d rated", len(started), types[event.Finish], 100*finished, types[event.Rating])
}

func TestCatalogBooksAreRead(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Catalog = []CatalogBook{{ID: "3", AverageRating: 4.4}, {ID: "1", AverageRating: 4.3}, {ID: "5", AverageRating: 3.9}}
	g := New(cfg)
	for range 20_000 {
		if e := g.Next(); e.Book != "3" && e.Book != "1" && e.Book != "5" {
			t.Fatalf("a book outside the catalog: %+v", e)
		}
	}
}
