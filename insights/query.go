package insights

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/state"
)

// ErrNotFound means dogear has no events for the reader or book asked about.
var ErrNotFound = errors.New("not found")

// Definitions shared by the queries; docs/insights.md explains each.
const (
	AbandonAfter     = 30 * 24 * time.Hour // no reading for this long without finishing = abandoned
	TrendingHalfLife = trendHalfLifeHours * time.Hour
	MAUWindowDays    = 30
	// minOwnSpeedMS: below this much reading time in a book, its own speed is too noisy for an
	// estimate and the reader's overall speed is used instead.
	minOwnSpeedMS = 10 * 60 * 1000
)

// Day is reading on one calendar day in the reader's time zone.
type Day struct {
	Date    string  `json:"date"`
	Minutes float64 `json:"minutes"`
}

// InProgress is a book the reader has started and not finished ("continue reading").
type InProgress struct {
	Book     string    `json:"book"`
	Position *float64  `json:"position"` // latest position, null if no event carried one
	LastRead time.Time `json:"last_read"`
	// MinutesLeft estimates the reading time to the end at the reader's speed in this book (or
	// overall, while this book has too little reading time); null when there is no basis.
	MinutesLeft *float64 `json:"estimated_minutes_left"`
}

// ReaderInsights is the answer to GET /v1/readers/{id}/insights.
type ReaderInsights struct {
	Reader          string       `json:"reader"`
	AsOf            time.Time    `json:"as_of"`
	TimeZone        string       `json:"time_zone"`
	TotalMinutes    float64      `json:"total_reading_minutes"`
	Days            []Day        `json:"reading_by_day"`
	CurrentStreak   int          `json:"current_streak_days"`
	LongestStreak   int          `json:"longest_streak_days"`
	BooksStarted    int          `json:"books_started"`
	BooksFinished   int          `json:"books_finished"`
	PercentPerHour  *float64     `json:"percent_per_hour"`
	PagesPerHour    *float64     `json:"pages_per_hour"`
	ContinueReading []InProgress `json:"continue_reading"`
	Events          int64        `json:"events"`
}

// ForReader computes the insights of the reader readerID as of a moment (which fixes "today" for
// streaks); days is how many days of reading_by_day to return, ending on as_of's day.
func ForReader(src state.Reader, readerID string, asOf time.Time, days int) (*ReaderInsights, error) {
	var meta ReaderMeta
	b, ok, err := src.Get(metaKey(nil, readerID))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	if err := decodeRecord(b, &meta); err != nil {
		return nil, err
	}
	loc := time.UTC
	if meta.TZ != "" {
		if l, err := event.Location(meta.TZ); err == nil {
			loc = l
		}
	}
	out := &ReaderInsights{Reader: readerID, AsOf: asOf.UTC(), TimeZone: loc.String(), Events: meta.Events,
		Days: []Day{}, ContinueReading: []InProgress{}}

	// Reading time and active days, by local calendar day.
	msByDay := map[civil]int64{}
	active := map[civil]bool{}
	var total int64
	addSlot := func(slot int64, s *Slot) {
		d := civilOf(time.Unix(slot*slotSeconds, 0).In(loc))
		msByDay[d] += s.MS
		total += s.MS
		if s.Events > 0 {
			active[d] = true
		}
	}
	err = state.ScanPrefix(src, daySlotsPrefix(readerID), func(k, v []byte) error {
		var d daySlots
		if err := decodeRecord(v, &d); err != nil {
			return err
		}
		day := int64(binary.BigEndian.Uint64(k[len(k)-8:]))
		for i := range d.slots {
			addSlot(day*slotsPerDay+d.slots[i].slot, &d.slots[i].Slot)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Slots under their own keys, in partitions that began before day records held them.
	err = state.ScanPrefix(src, slotsPrefix(readerID), func(k, v []byte) error {
		var s Slot
		err := decodeRecord(v, &s)
		addSlot(int64(binary.BigEndian.Uint64(k[len(k)-8:])), &s)
		return err
	})
	if err != nil {
		return nil, err
	}
	out.TotalMinutes = minutes(total)
	today := civilOf(asOf.In(loc))
	for i := days - 1; i >= 0; i-- {
		d := today.add(-i)
		out.Days = append(out.Days, Day{Date: d.String(), Minutes: minutes(msByDay[d])})
	}
	out.CurrentStreak, out.LongestStreak = streaks(active, today)

	// Books.
	var readMS, pctMS, pageMS int64
	var pct float64
	var pages int64
	var books []ReaderBook
	err = state.ScanPrefix(src, readerBooksPrefix(readerID), func(_, v []byte) error {
		var rb ReaderBook
		if err := decodeRecord(v, &rb); err != nil {
			return err
		}
		if !rb.Started() {
			return nil
		}
		out.BooksStarted++
		if rb.Finished != 0 {
			out.BooksFinished++
		}
		readMS += rb.ReadMS
		if rb.ReadMS > 0 && rb.MaxPos > 0 {
			pct += rb.MaxPos * 100
			pctMS += rb.ReadMS
		}
		if rb.ReadMS > 0 && rb.PageViews > 0 {
			pages += rb.PageViews
			pageMS += rb.ReadMS
		}
		books = append(books, rb)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if pctMS > 0 {
		v := round2(pct / hours(pctMS))
		out.PercentPerHour = &v
	}
	if pageMS > 0 {
		v := round2(float64(pages) / hours(pageMS))
		out.PagesPerHour = &v
	}
	sort.Slice(books, func(i, j int) bool {
		if books[i].Last != books[j].Last {
			return books[i].Last > books[j].Last
		}
		return books[i].Book < books[j].Book
	})
	for _, rb := range books {
		if rb.Finished != 0 {
			continue
		}
		ip := InProgress{Book: rb.Book, LastRead: time.UnixMilli(rb.Last).UTC()}
		if rb.PosAt != 0 {
			p := rb.Pos
			ip.Position = &p
			rate := 0.0 // percent per hour
			if rb.ReadMS >= minOwnSpeedMS && rb.MaxPos > 0 {
				rate = rb.MaxPos * 100 / hours(rb.ReadMS)
			} else if out.PercentPerHour != nil {
				rate = pct / hours(pctMS)
			}
			if rate > 0 {
				m := round2((1 - p) * 100 / rate * 60)
				ip.MinutesLeft = &m
			}
		}
		out.ContinueReading = append(out.ContinueReading, ip)
	}
	return out, nil
}

// streaks returns the current streak (consecutive reading days ending today, or yesterday when
// the reader has not read yet today) and the longest streak ever.
func streaks(active map[civil]bool, today civil) (current, longest int) {
	days := make([]civil, 0, len(active))
	for d := range active {
		days = append(days, d)
	}
	sort.Slice(days, func(i, j int) bool { return days[i].before(days[j]) })
	run := 0
	for i, d := range days {
		if i > 0 && days[i-1].add(1) == d {
			run++
		} else {
			run = 1
		}
		longest = max(longest, run)
	}
	d := today
	if !active[d] {
		d = d.add(-1)
	}
	for active[d] {
		current++
		d = d.add(-1)
	}
	return current, longest
}

// Passage is a highlighted passage and how many readers highlighted it.
type Passage struct {
	Text    string `json:"text"`
	Readers int    `json:"readers"`
}

// Bucket is one tenth of a book in the abandonment curve.
type Bucket struct {
	From    float64 `json:"from"`
	To      float64 `json:"to"`
	Readers int     `json:"readers"`
}

// BookStats is the answer to GET /v1/books/{id}/stats.
type BookStats struct {
	Book                string    `json:"book"`
	AsOf                time.Time `json:"as_of"`
	ReadersStarted      int       `json:"readers_started"`
	ReadersFinished     int       `json:"readers_finished"`
	CompletionRate      *float64  `json:"completion_rate"`
	MedianHoursToFinish *float64  `json:"median_hours_to_finish"`
	ReadersAbandoned    int       `json:"readers_abandoned"`
	Abandonment         []Bucket  `json:"abandonment_curve"`
	AbandonedNoPosition int       `json:"abandoned_without_position"`
	Ratings             int       `json:"ratings"`
	AverageRating       *float64  `json:"average_rating"`
	RatingHistogram     [5]int    `json:"rating_histogram"`
	Highlights          int64     `json:"highlights"`
	TopPassages         []Passage `json:"most_highlighted"`
	ReadingHours        float64   `json:"reading_hours"`
}

// Book computes a book's statistics as of a moment (which decides who has abandoned it). When
// every partition kept the book aggregates from its first event it reads those (bookstats.go),
// a few dozen keys however many readers the book has; otherwise (state folded before them, until
// `dogear rebuild`) every reader's record of the book.
func Book(src state.Reader, book string, asOf time.Time) (*BookStats, error) {
	out := newBookStats(book, asOf)
	parts, kept, err := partitionsKeeping(src, aggregatesBooks)
	if err != nil {
		return nil, err
	}
	var found bool
	if kept {
		found, err = bookFromAggregates(src, book, asOf, out)
	} else {
		found, err = bookFromReaders(src, book, asOf, out)
	}
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNotFound
	}
	if kept {
		out.TopPassages, err = topPassagesFromRankings(src, book, parts, topPassagesShown)
	} else {
		out.TopPassages, err = topPassages(src, book, topPassagesShown)
	}
	return out, err
}

const topPassagesShown = 10

func newBookStats(book string, asOf time.Time) *BookStats {
	out := &BookStats{Book: book, AsOf: asOf.UTC(), TopPassages: []Passage{}}
	for i := range 10 {
		out.Abandonment = append(out.Abandonment, Bucket{From: float64(i) / 10, To: float64(i+1) / 10})
	}
	return out
}

// bookFromReaders answers Book from every reader's record of the book.
func bookFromReaders(src state.Reader, book string, asOf time.Time, out *BookStats) (bool, error) {
	cutoff := asOf.Add(-AbandonAfter).UnixMilli()
	finishes := map[int32]int64{}
	var ratingSum, readMS int64
	found := false
	err := state.ScanPrefix(src, bookReadersPrefix(book), func(_, v []byte) error {
		found = true
		var rb ReaderBook
		if err := decodeRecord(v, &rb); err != nil {
			return err
		}
		if rb.Rating > 0 {
			out.Ratings++
			ratingSum += int64(rb.Rating)
			out.RatingHistogram[rb.Rating-1]++
		}
		out.Highlights += rb.Highlights
		readMS += rb.ReadMS
		if !rb.Started() {
			return nil
		}
		out.ReadersStarted++
		switch {
		case rb.Finished != 0:
			out.ReadersFinished++
			finishes[finishSlot(hours(max(0, rb.Finished-rb.First)))]++
		case rb.Last < cutoff:
			out.ReadersAbandoned++
			if b := abandonmentBucket(&rb); b == noPosition {
				out.AbandonedNoPosition++
			} else {
				out.Abandonment[b].Readers++
			}
		}
		return nil
	})
	if err != nil || !found {
		return false, err
	}
	finishStats(out, ratingSum, readMS, finishes)
	return true, nil
}

func topPassages(src state.Reader, book string, n int) ([]Passage, error) {
	prefix := highlightsPrefix(book)
	type group struct {
		text    string
		readers int
	}
	groups := map[string]*group{}
	err := state.ScanPrefix(src, prefix, func(k, v []byte) error {
		hash := string(k[len(prefix) : len(prefix)+16])
		g := groups[hash]
		if g == nil {
			g = &group{text: string(v)}
			groups[hash] = g
		}
		g.readers++
		if string(v) < g.text {
			g.text = string(v)
		}
		return nil
	})
	out := make([]Passage, 0, len(groups))
	for _, g := range groups {
		out = append(out, Passage{Text: g.text, Readers: g.readers})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Readers != out[j].Readers {
			return out[i].Readers > out[j].Readers
		}
		return out[i].Text < out[j].Text
	})
	if len(out) > n {
		out = out[:n]
	}
	return out, err
}

// DayCount is a number of readers on one UTC day.
type DayCount struct {
	Date    string `json:"date"`
	Readers int    `json:"readers"`
}

// PlatformStats is the answer to GET /v1/stats.
type PlatformStats struct {
	AsOf   time.Time       `json:"as_of"`
	DAU    int             `json:"daily_active_readers"`
	MAU    int             `json:"monthly_active_readers"`
	Daily  []DayCount      `json:"daily_active_series"`
	Totals PartitionCounts `json:"totals"`
}

// Platform computes daily active readers (readers with a reading event on as_of's UTC day),
// monthly active readers (distinct readers over the 30 UTC days ending that day), the daily
// series, and totals. It reads the partitions' daily aggregates, a few keys per day whatever the
// readership, when every partition kept them and no reader read after as_of's day; otherwise
// (state from before the aggregates, or a look back in time) it counts the active readers' keys.
func Platform(src state.Reader, asOf time.Time) (*PlatformStats, error) {
	out := &PlatformStats{AsOf: asOf.UTC(), Daily: []DayCount{}}
	aggregated := true
	err := state.ScanPrefix(src, countsPrefix, func(_, v []byte) error {
		var c PartitionCounts
		if err := decodeRecord(v, &c); err != nil {
			return err
		}
		out.Totals.Events += c.Events
		out.Totals.ReadingEvents += c.ReadingEvents
		out.Totals.Readers += c.Readers
		out.Totals.ReaderBooks += c.ReaderBooks
		aggregated = aggregated && c.Aggregates >= aggregatesDaily
		return nil
	})
	if err != nil {
		return nil, err
	}
	today := dayNumber(asOf.UnixMilli())
	var later int64
	if aggregated {
		if later, err = sumDaily(src, dailyLast, today+1, math.MaxInt64, nil); err != nil {
			return nil, err
		}
	}
	if aggregated && later <= laterReadersLookedUp {
		err = platformFromAggregates(src, today, later > 0, out)
	} else {
		err = platformFromActiveKeys(src, today, out)
	}
	return out, err
}

// laterReadersLookedUp is how many readers whose latest reading day is after as_of's the monthly
// actives look up one by one; beyond it counting every active key of the 30 days costs less.
var laterReadersLookedUp int64 = 10_000

// platformFromAggregates: daily actives are the day's counts, and the monthly actives the
// readers whose latest reading day falls in the 30 days, plus, when some read after today
// (later: a device whose clock runs ahead, or a look back of a day or two), those of them who
// also read within the 30 days, looked up by their active keys.
func platformFromAggregates(src state.Reader, today int64, later bool, out *PlatformStats) error {
	from := today - MAUWindowDays + 1
	perDay := map[int64]int64{}
	if _, err := sumDaily(src, dailyActive, from, today+1, perDay); err != nil {
		return err
	}
	for d := from; d <= today; d++ {
		out.Daily = append(out.Daily, DayCount{Date: dayString(d * 86_400_000), Readers: int(perDay[d])})
	}
	out.DAU = out.Daily[len(out.Daily)-1].Readers
	mau, err := sumDaily(src, dailyLast, from, today+1, nil)
	if err != nil || !later {
		out.MAU = int(mau)
		return err
	}
	// Keys are p \0 a \0 <day, 10 bytes> \0 <reader>, in day order.
	root := []byte("p" + sep + "a" + sep)
	laterReaders := map[string]bool{}
	err = src.Scan(activePrefix(dayString((today+1)*86_400_000)), state.PrefixEnd(root), func(k, _ []byte) error {
		laterReaders[string(k[len(root)+len("2006-01-02")+len(sep):])] = true
		return nil
	})
	for reader := range laterReaders {
		for d := from; d <= today && err == nil; d++ {
			var active bool
			if _, active, err = src.Get(activeKey(dayString(d*86_400_000), reader)); active {
				mau++
				break
			}
		}
	}
	out.MAU = int(mau)
	return err
}

// sumDaily sums a daily aggregate over the days [from, to) and every partition, and, with perDay,
// by day.
func sumDaily(src state.Reader, kind byte, from, to int64, perDay map[int64]int64) (int64, error) {
	var total int64
	prefix := dailyPrefix(kind)
	lower := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(max(0, from)))
	upper := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(to))
	if to == math.MaxInt64 {
		upper = state.PrefixEnd(prefix)
	}
	err := src.Scan(lower, upper, func(k, v []byte) error {
		n, read := binary.Varint(v)
		if read <= 0 {
			return fmt.Errorf("insights: corrupt daily count %q", k)
		}
		total += n
		if perDay != nil {
			perDay[int64(binary.BigEndian.Uint64(k[len(prefix):]))] += n
		}
		return nil
	})
	return total, err
}

// platformFromActiveKeys counts every active reader's key of the 30 days.
func platformFromActiveKeys(src state.Reader, today int64, out *PlatformStats) error {
	month := map[string]struct{}{}
	for d := today - MAUWindowDays + 1; d <= today; d++ {
		day := dayString(d * 86_400_000)
		prefix := activePrefix(day)
		n := 0
		err := state.ScanPrefix(src, prefix, func(k, _ []byte) error {
			n++
			month[string(k[len(prefix):])] = struct{}{}
			return nil
		})
		if err != nil {
			return err
		}
		out.Daily = append(out.Daily, DayCount{Date: day, Readers: n})
	}
	out.DAU = out.Daily[len(out.Daily)-1].Readers
	out.MAU = len(month)
	return nil
}

// civil is a calendar date, free of time zones and daylight saving.
type civil struct {
	y int
	m time.Month
	d int
}

func civilOf(t time.Time) civil { return civil{t.Year(), t.Month(), t.Day()} }
func (c civil) add(days int) civil {
	return civilOf(time.Date(c.y, c.m, c.d+days, 12, 0, 0, 0, time.UTC))
}
func (c civil) before(o civil) bool {
	return c.y < o.y || (c.y == o.y && (c.m < o.m || (c.m == o.m && c.d < o.d)))
}
func (c civil) String() string {
	return time.Date(c.y, c.m, c.d, 0, 0, 0, 0, time.UTC).Format("2006-01-02")
}

func hours(ms int64) float64   { return float64(ms) / 3_600_000 }
func minutes(ms int64) float64 { return round2(float64(ms) / 60_000) }
func round2(v float64) float64 { return math.Round(v*100) / 100 }
func round4(v float64) float64 { return math.Round(v*10000) / 10000 }

// BookActivity is one book of a reader's, for GET /v1/readers/{id}/books.
type BookActivity struct {
	Book           string     `json:"book"`
	Started        *time.Time `json:"started"`
	LastRead       *time.Time `json:"last_read"`
	Finished       *time.Time `json:"finished"`
	Position       *float64   `json:"position"`
	Furthest       float64    `json:"furthest_position"`
	ReadingMinutes float64    `json:"reading_minutes"`
	PagesRead      int64      `json:"pages_read"`
	PageViews      int64      `json:"page_views"`
	Highlights     int64      `json:"highlights"`
	Rating         int        `json:"rating,omitempty"`
	Shelved        bool       `json:"shelved"`
	Purchased      bool       `json:"purchased"`
	Sampled        bool       `json:"sampled"`
}

// Books lists every book a reader has a record of, most recently read first.
func Books(src state.Reader, reader string) ([]BookActivity, error) {
	out := []BookActivity{}
	ts := func(ms int64) *time.Time {
		if ms == 0 {
			return nil
		}
		t := time.UnixMilli(ms).UTC()
		return &t
	}
	err := ReaderBooks(src, reader, func(rb *ReaderBook) error {
		b := BookActivity{Book: rb.Book, Started: ts(rb.First), LastRead: ts(rb.Last), Finished: ts(rb.Finished),
			Furthest: rb.MaxPos, ReadingMinutes: minutes(rb.ReadMS), PagesRead: rb.PagesRead, PageViews: rb.PageViews,
			Highlights: rb.Highlights, Rating: rb.Rating, Shelved: rb.Shelved != 0, Purchased: rb.Purchased != 0, Sampled: rb.Sampled != 0}
		if rb.PosAt != 0 {
			p := rb.Pos
			b.Position = &p
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		if _, ok, err := src.Get(metaKey(nil, reader)); err != nil || !ok {
			return nil, errors.Join(err, ErrNotFound)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].LastRead, out[j].LastRead
		if a == nil || b == nil {
			return a != nil
		}
		return a.After(*b)
	})
	return out, nil
}

// Highlight is a passage a reader highlighted in a book.
type Highlight struct {
	Book string `json:"book"`
	Text string `json:"text"`
}

// ReaderHighlights lists the passages a reader highlighted, book by book in the order of Books.
// Passages are stored by book (for a book's most highlighted passages), so this scans the
// highlights of each book the reader highlighted in.
func ReaderHighlights(src state.Reader, reader string) ([]Highlight, error) {
	var out []Highlight
	err := ReaderBooks(src, reader, func(rb *ReaderBook) error {
		if rb.Highlights == 0 {
			return nil
		}
		suffix := sep + reader
		return state.ScanPrefix(src, highlightsPrefix(rb.Book), func(k, v []byte) error {
			if strings.HasSuffix(string(k), suffix) && len(k) == len(highlightsPrefix(rb.Book))+16+len(suffix) {
				out = append(out, Highlight{Book: rb.Book, Text: string(v)})
			}
			return nil
		})
	})
	return out, err
}
