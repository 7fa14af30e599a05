// Package loadgen makes realistic synthetic reading traffic (readers moving through books page by
// page in sessions, Zipf-popular books, abandonment, highlights, ratings) and sends or saves it.
package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/dogear-dev/dogear/event"
)

// Config shapes the simulated platform. The same Config always yields the same events.
type Config struct {
	Readers int
	Books   int
	// Catalog, when not empty, is the books readers read instead of synthetic ones, most read
	// first (a server's catalog, by ratings count); Books is then its length.
	Catalog []CatalogBook
	Seed    uint64
	// Events happen between Start and End, in event time; a reader whose clock passes End
	// starts again near Start, which makes some events arrive late, as real devices do.
	Start, End time.Time
}

// DefaultConfig is a small platform over the 60 days before now.
func DefaultConfig() Config {
	end := time.Now().UTC().Truncate(time.Second)
	return Config{Readers: 10_000, Books: 2_000, Seed: 1, Start: end.Add(-60 * 24 * time.Hour), End: end}
}

var zones = []string{"America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin",
	"Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney", "America/Sao_Paulo", "UTC", "Asia/Kathmandu"}

var devices = []string{"kindle-paperwhite", "kobo-clara", "ios-app", "android-app", "koreader"}

type reader struct {
	id       string
	tz       string
	device   string
	clock    time.Time
	pagesMin float64 // reading speed, pages per minute
	book     int     // -1: choosing
	pages    int
	page     int
	quitAt   int // page at which this book will be abandoned; 0: read to the end
	session  int
}

// CatalogBook is a real book for readers to read: its id, and its average rating (0: unknown),
// around which readers' ratings fall.
type CatalogBook struct {
	ID            string
	AverageRating float64
}

// Generator yields an endless stream of valid events. It is not safe for concurrent use.
type Generator struct {
	cfg     Config
	rng     *rand.Rand
	zipf    *rand.Zipf
	active  *rand.Zipf // which reader reads next: a few read a lot, most a little, as on real platforms
	readers []reader
	buf     []event.Event
	n       uint64
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	if len(cfg.Catalog) > 0 {
		cfg.Books = len(cfg.Catalog)
	}
	g := &Generator{cfg: cfg, rng: rng, zipf: rand.NewZipf(rng, 1.1, 2, uint64(max(1, cfg.Books-1))),
		active: rand.NewZipf(rng, 1.2, 10, uint64(max(0, cfg.Readers-1)))}
	span := cfg.End.Sub(cfg.Start)
	for i := range cfg.Readers {
		g.readers = append(g.readers, reader{
			id:       fmt.Sprintf("reader-%06d", i),
			tz:       zones[rng.IntN(len(zones))],
			device:   devices[rng.IntN(len(devices))],
			clock:    cfg.Start.Add(time.Duration(rng.Int64N(int64(span) + 1))),
			pagesMin: 0.4 + rng.Float64()*1.6,
			book:     -1,
		})
	}
	return g
}

// Next returns the next event.
func (g *Generator) Next() event.Event {
	for len(g.buf) == 0 {
		g.session(&g.readers[g.active.Uint64()])
	}
	e := g.buf[0]
	g.buf = g.buf[1:]
	return e
}

// Batch returns the next n events.
func (g *Generator) Batch(n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

func (g *Generator) bookID(i int) string {
	if len(g.cfg.Catalog) > 0 {
		return g.cfg.Catalog[i].ID
	}
	return fmt.Sprintf("book-%05d", i)
}

// bookPages is a book's length, fixed per book.
func bookPages(i int) int { return 120 + (i*7919)%480 }

func (g *Generator) emit(r *reader, typ event.Type, at time.Time, fill func(*event.Event)) {
	g.n++
	e := event.Event{
		ID: fmt.Sprintf("g%d-%d", g.cfg.Seed, g.n), Type: typ, Reader: r.id, Book: g.bookID(r.book),
		Time: at.UTC().Truncate(time.Millisecond), Device: r.device,
	}
	if fill != nil {
		fill(&e)
	}
	g.buf = append(g.buf, e)
}

// session simulates one sitting: maybe picking a new book, then reading pages.
func (g *Generator) session(r *reader) {
	// Readers come back after a few hours to two days.
	r.clock = r.clock.Add(time.Duration(g.rng.ExpFloat64() * float64(20*time.Hour)))
	if r.clock.After(g.cfg.End) {
		r.clock = g.cfg.Start.Add(time.Duration(g.rng.Int64N(int64(24 * time.Hour))))
	}
	if r.book < 0 {
		g.startBook(r)
	}
	r.session++
	sessionID := fmt.Sprintf("%s-s%d", r.id, r.session)
	start := r.clock
	at := start
	turns := 5 + g.rng.IntN(36)
	var total time.Duration
	for i := 0; i < turns && r.page < r.pages; i++ {
		r.page++
		d := time.Duration(60/r.pagesMin*(0.5+g.rng.Float64())) * time.Second
		page := r.page
		g.emit(r, event.Page, at, func(e *event.Event) {
			e.Page, e.Pages, e.DurationMS, e.Session = page, r.pages, d.Milliseconds(), sessionID
		})
		if g.rng.Float64() < 0.01 {
			g.emit(r, event.Highlight, at.Add(d/2), func(e *event.Event) {
				e.Text = g.passage(r.book, page, g.rng)
				pos := float64(page) / float64(r.pages)
				e.Position = &pos
			})
		}
		at = at.Add(d)
		total += d
		if r.quitAt > 0 && r.page >= r.quitAt {
			break
		}
	}
	pos := float64(r.page) / float64(r.pages)
	g.emit(r, event.Session, start, func(e *event.Event) {
		e.DurationMS, e.PageTurns, e.Session, e.TZ = max(1, total.Milliseconds()), turns, sessionID, r.tz
	})
	g.emit(r, event.Progress, at, func(e *event.Event) { e.Position = &pos })
	r.clock = at
	switch {
	case r.page >= r.pages:
		g.emit(r, event.Finish, at, nil)
		// About two in three who finish rate, around the book's average (3.9, Goodreads' mean,
		// when unknown): ratings of finished books lean high.
		if g.rng.Float64() < 0.65 {
			mean := 3.9
			if len(g.cfg.Catalog) > 0 && g.cfg.Catalog[r.book].AverageRating > 0 {
				mean = g.cfg.Catalog[r.book].AverageRating
			}
			stars := int(math.Round(mean + 0.9*g.rng.NormFloat64()))
			g.emit(r, event.Rating, at.Add(time.Minute), func(e *event.Event) { e.Rating = min(5, max(1, stars)) })
		}
		r.book = -1
	case r.quitAt > 0 && r.page >= r.quitAt:
		r.book = -1 // abandoned: never opened again
	}
	if g.rng.Float64() < 0.05 {
		keep := r.book
		r.book = int(g.zipf.Uint64())
		g.emit(r, event.Shelve, at.Add(2*time.Minute), nil)
		r.book = keep
		if keep < 0 {
			r.book = -1
		}
	}
}

func (g *Generator) startBook(r *reader) {
	r.book = int(g.zipf.Uint64())
	r.pages, r.page, r.quitAt = bookPages(r.book), 0, 0
	if g.rng.Float64() < 0.35 {
		r.quitAt = 1 + g.rng.IntN(r.pages)
	}
	switch x := g.rng.Float64(); {
	case x < 0.5:
		g.emit(r, event.Purchase, r.clock.Add(-time.Minute), nil)
	case x < 0.7:
		g.emit(r, event.Sample, r.clock.Add(-time.Minute), nil)
	}
}

// passage picks a highlight in the book near the page; a few passages per book are highlighted
// far more than others, as in real books.
func (g *Generator) passage(book, page int, rng *rand.Rand) string {
	if rng.Float64() < 0.5 {
		return fmt.Sprintf("Memorable line %d of %s.", rng.IntN(3), g.bookID(book))
	}
	return fmt.Sprintf("A passage from page %d of %s.", page, g.bookID(book))
}
