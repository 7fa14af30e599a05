package insights_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/insights"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func pos(p float64) *float64 { return &p }

// story is a small history whose insights are worked out by hand in the test below, following
// the definitions in docs/insights.md.
func story() []event.Event {
	ev := func(id, typ, reader, book, at string, f func(*event.Event)) event.Event {
		e := event.Event{ID: id, Type: event.Type(typ), Reader: reader, Book: book, Time: ts(at)}
		if f != nil {
			f(&e)
		}
		return e
	}
	min := func(m int64) func(*event.Event) {
		return func(e *event.Event) { e.DurationMS = m * 60_000; e.TZ = "America/New_York" }
	}
	at := func(p float64) func(*event.Event) { return func(e *event.Event) { e.Position = pos(p) } }
	text := func(s string) func(*event.Event) { return func(e *event.Event) { e.Text = s } }
	return []event.Event{
		// ann, in New York (UTC-5 in November), reads b1 on her 9th (evening), 10th and 11th.
		ev("a1", "session", "ann", "b1", "2026-11-10T03:00:00Z", min(30)),
		ev("a2", "progress", "ann", "b1", "2026-11-10T03:30:00Z", at(0.10)),
		ev("a3", "session", "ann", "b1", "2026-11-10T14:00:00Z", min(60)),
		ev("a4", "progress", "ann", "b1", "2026-11-10T15:00:00Z", at(0.30)),
		ev("a5", "session", "ann", "b1", "2026-11-11T14:00:00Z", min(30)),
		ev("a6", "progress", "ann", "b1", "2026-11-11T14:30:00Z", at(0.40)),
		ev("a7", "highlight", "ann", "b1", "2026-11-11T14:10:00Z", text("Other line")),
		// ... skips the 12th, reads and finishes b2 on the 13th and rates it.
		ev("a8", "session", "ann", "b2", "2026-11-13T14:00:00Z", min(60)),
		ev("a9", "finish", "ann", "b2", "2026-11-13T15:00:00Z", nil),
		ev("a10", "rating", "ann", "b2", "2026-11-13T15:01:00Z", func(e *event.Event) { e.Rating = 4 }),
		// A late event from the 10th: it must not move ann's latest position back.
		ev("a11", "progress", "ann", "b1", "2026-11-10T16:00:00Z", at(0.35)),
		// bob stopped at 55% of b1 in September: abandoned.
		ev("b1", "progress", "bob", "b1", "2026-09-01T10:00:00Z", at(0.20)),
		ev("b2", "progress", "bob", "b1", "2026-09-02T10:00:00Z", at(0.55)),
		ev("b3", "highlight", "bob", "b1", "2026-09-02T09:00:00Z", text("call me  ishmael.")),
		// cat read b1 in 48 hours and loved it.
		ev("c1", "progress", "cat", "b1", "2026-11-01T00:00:00Z", at(0.01)),
		ev("c2", "highlight", "cat", "b1", "2026-11-01T01:00:00Z", text("Call me Ishmael.")),
		ev("c3", "finish", "cat", "b1", "2026-11-03T00:00:00Z", nil),
		ev("c4", "rating", "cat", "b1", "2026-11-03T00:05:00Z", func(e *event.Event) { e.Rating = 5 }),
		// dan only bought b2: not a reader of it.
		ev("d1", "purchase", "dan", "b2", "2026-11-12T00:00:00Z", nil),
	}
}

func TestInsightDefinitions(t *testing.T) {
	s := fold(t, story(), rand.New(rand.NewPCG(1, 1)))
	asOf := ts("2026-11-13T20:00:00Z")

	r, err := insights.ForReader(s, "ann", asOf, 5)
	if err != nil {
		t.Fatal(err)
	}
	if r.TimeZone != "America/New_York" || r.TotalMinutes != 180 {
		t.Errorf("tz %s total %v, want America/New_York 180", r.TimeZone, r.TotalMinutes)
	}
	wantDays := []insights.Day{{"2026-11-09", 30}, {"2026-11-10", 60}, {"2026-11-11", 30}, {"2026-11-12", 0}, {"2026-11-13", 60}}
	for i, d := range wantDays {
		if r.Days[i] != d {
			t.Errorf("day %d = %+v, want %+v (local days in New York)", i, r.Days[i], d)
		}
	}
	if r.CurrentStreak != 1 || r.LongestStreak != 3 {
		t.Errorf("streaks current %d longest %d, want 1 and 3", r.CurrentStreak, r.LongestStreak)
	}
	if r.BooksStarted != 2 || r.BooksFinished != 1 {
		t.Errorf("books started %d finished %d, want 2 and 1", r.BooksStarted, r.BooksFinished)
	}
	// (40% of b1 + 100% of b2) in 3 hours.
	if r.PercentPerHour == nil || *r.PercentPerHour != 46.67 || r.PagesPerHour != nil {
		t.Errorf("speed %v %%/h, pages/h %v; want 46.67 and none", deref(r.PercentPerHour), r.PagesPerHour)
	}
	if len(r.ContinueReading) != 1 {
		t.Fatalf("continue reading %+v, want only b1", r.ContinueReading)
	}
	c := r.ContinueReading[0]
	// b1 at 40% after 2 hours = 20%/h; 60% left = 180 minutes.
	if c.Book != "b1" || *c.Position != 0.40 || !c.LastRead.Equal(ts("2026-11-11T14:30:00Z")) || c.MinutesLeft == nil || *c.MinutesLeft != 180 {
		t.Errorf("continue reading %+v pos %v eta %v", c, deref(c.Position), deref(c.MinutesLeft))
	}

	b, err := insights.Book(s, "b1", asOf)
	if err != nil {
		t.Fatal(err)
	}
	if b.ReadersStarted != 3 || b.ReadersFinished != 1 || *b.CompletionRate != 0.3333 {
		t.Errorf("b1 started %d finished %d rate %v, want 3 1 0.3333", b.ReadersStarted, b.ReadersFinished, deref(b.CompletionRate))
	}
	if m := b.MedianHoursToFinish; m == nil || math.Abs(*m-48) > 48*0.001 {
		t.Errorf("median hours to finish %v, want 48 within 0.1%%", deref(b.MedianHoursToFinish))
	}
	if b.ReadersAbandoned != 1 || b.Abandonment[5].Readers != 1 {
		t.Errorf("abandoned %d, curve %+v; want bob in the 50-60%% bucket", b.ReadersAbandoned, b.Abandonment)
	}
	if b.Ratings != 1 || *b.AverageRating != 5 || b.RatingHistogram[4] != 1 {
		t.Errorf("ratings %d avg %v hist %v", b.Ratings, deref(b.AverageRating), b.RatingHistogram)
	}
	if b.Highlights != 3 || len(b.TopPassages) != 2 || b.TopPassages[0] != (insights.Passage{Text: "Call me Ishmael.", Readers: 2}) {
		t.Errorf("highlights %d top %+v", b.Highlights, b.TopPassages)
	}
	if _, err := insights.Book(s, "nope", asOf); err != insights.ErrNotFound {
		t.Errorf("unknown book: %v", err)
	}
	b2, _ := insights.Book(s, "b2", asOf)
	if b2.ReadersStarted != 1 {
		t.Errorf("b2 readers started %d: a purchase alone is not a start", b2.ReadersStarted)
	}

	tr, err := insights.Trending(s, asOf, 10)
	if err != nil {
		t.Fatal(err)
	}
	decay := func(start string) float64 {
		return math.Pow(0.5, asOf.Sub(ts(start).Truncate(time.Hour)).Hours()/72)
	}
	wantB2 := decay("2026-11-13T14:00:00Z")
	// bob's start in September still counts, about 4e-8.
	wantB1 := decay("2026-11-10T03:00:00Z") + decay("2026-11-01T00:00:00Z") + decay("2026-09-01T10:00:00Z")
	if len(tr) != 2 || tr[0].Book != "b2" || tr[1].Book != "b1" || tr[1].Starts != 3 ||
		math.Abs(tr[0].Score-wantB2) > 1e-4 || math.Abs(tr[1].Score-wantB1) > 1e-4 {
		t.Errorf("trending %+v, want b2 %.4f then b1 %.4f (3 starts)", tr, wantB2, wantB1)
	}

	p, err := insights.Platform(s, asOf)
	if err != nil {
		t.Fatal(err)
	}
	if p.DAU != 1 || p.MAU != 2 || p.Totals.Readers != 4 || p.Totals.Events != int64(len(story())) {
		t.Errorf("platform %+v, want DAU 1 (ann) MAU 2 (ann, cat), 4 readers", p)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
