package insights_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/state"
)

const partitions = 4

// fold applies events to a fresh real Pebble store, committing in random-sized chunks per partition.
func fold(t *testing.T, events []event.Event, rng *rand.Rand) state.Store {
	t.Helper()
	s, err := state.OpenPebble(t.TempDir(), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	foldInto(t, s, events, rng)
	return s
}

// foldInto applies events to s as fold does.
func foldInto(t *testing.T, s state.Store, events []event.Event, rng *rand.Rand) {
	t.Helper()
	var w state.Writes
	tx := state.Overlay{Base: s, Writes: &w}
	offsets := make([]int64, partitions)
	for p := range offsets {
		var err error
		if offsets[p], err = s.Offset(p); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(events); {
		n := 1 + rng.IntN(200)
		w.Reset()
		part := eventlog.PartitionFor(events[i].Reader, partitions)
		f := insights.NewFolder(tx, part)
		for ; n > 0 && i < len(events); n-- {
			// Each chunk holds one partition's events, as a processor's batch does.
			if eventlog.PartitionFor(events[i].Reader, partitions) != part {
				break
			}
			if _, err := f.Apply(&events[i]); err != nil {
				t.Fatal(err)
			}
			offsets[part]++
			i++
		}
		f.Flush()
		if err := s.Commit(part, offsets[part], &w); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshot is every insight dogear can answer, as JSON, plus the raw state.
func snapshot(t *testing.T, s state.Store, events []event.Event, asOf time.Time) string {
	t.Helper()
	out := answers(t, s, events, asOf)
	s.Scan(nil, nil, func(k, v []byte) error {
		out += fmt.Sprintf("%q=%q\n", k, v)
		return nil
	})
	return out
}

// answers is every insight dogear can answer about the readers and books of events, as JSON.
func answers(t *testing.T, s state.Store, events []event.Event, asOf time.Time) string {
	t.Helper()
	readers, books := map[string]bool{}, map[string]bool{}
	for _, e := range events {
		readers[e.Reader], books[e.Book] = true, true
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range sortedKeys(readers) {
		ri, err := insights.ForReader(s, r, asOf, 30)
		if err != nil {
			t.Fatal(err)
		}
		enc.Encode(ri)
		books, err := insights.Books(s, r) // with the distinct pages read of each
		if err != nil {
			t.Fatal(err)
		}
		enc.Encode(books)
	}
	for _, b := range sortedKeys(books) {
		bs, err := insights.Book(s, b, asOf)
		if err != nil {
			t.Fatal(err)
		}
		enc.Encode(bs)
	}
	tr, _ := insights.Trending(s, asOf, 50)
	enc.Encode(tr)
	ps, _ := insights.Platform(s, asOf)
	enc.Encode(ps)
	return buf.String()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// TestOrderIndependence is the property test: the same events in order, shuffled, and shuffled
// with duplicates give identical insights and identical state, for many random seeds.
func TestOrderIndependence(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		cfg := loadgen.Config{Readers: 40, Books: 25, Seed: seed, Start: end.Add(-90 * 24 * time.Hour), End: end}
		events := loadgen.New(cfg).Batch(3000)
		rng := rand.New(rand.NewPCG(seed, 7))
		asOf := end.Add(-20 * 24 * time.Hour) // mid-history: abandonment and streaks both matter

		inOrder := append([]event.Event(nil), events...)
		sortByTime(inOrder)
		want := snapshot(t, fold(t, inOrder, rng), events, asOf)

		shuffled := append([]event.Event(nil), events...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := snapshot(t, fold(t, shuffled, rng), events, asOf); got != want {
			t.Fatalf("seed %d: shuffled events give different insights:\n%s", seed, firstDiff(want, got))
		}

		dups := append([]event.Event(nil), events...)
		for i := 0; i < len(events)/3; i++ {
			dups = append(dups, events[rng.IntN(len(events))])
		}
		rng.Shuffle(len(dups), func(i, j int) { dups[i], dups[j] = dups[j], dups[i] })
		if got := snapshot(t, fold(t, dups, rng), events, asOf); got != want {
			t.Fatalf("seed %d: duplicated events give different insights:\n%s", seed, firstDiff(want, got))
		}
	}
}

// TestRecordsFromBeforeTheCeilings folds half the events, rewrites every reader's records as a
// build before NextPage, NextSlot, ActiveDays and the pages in the record wrote them, and folds
// the rest: pages read again (every tenth page event of the first half is read again an hour
// later, in the rest) and slots read in again must still count once, and days first read in the
// rest (every third day is held back for it) must count, as in state folded by this build alone.
func TestRecordsFromBeforeTheCeilings(t *testing.T) {
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := loadgen.New(loadgen.Config{Readers: 40, Books: 25, Seed: 11, Start: end.Add(-90 * 24 * time.Hour), End: end}).Batch(3000)
	rng := rand.New(rand.NewPCG(11, 7))
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	for i := 0; i < len(events)/2; i += 10 {
		if e := events[i]; e.Type == event.Page {
			e.ID += "-again"
			e.Time = e.Time.Add(time.Hour)
			events = append(events, e)
		}
	}
	asOf := end.Add(-20 * 24 * time.Hour)
	want := answers(t, fold(t, events, rng), events, asOf)

	var first, rest []event.Event
	for i, e := range events {
		if i < len(events)/2 && e.Time.Unix()/86400%3 != 0 {
			first = append(first, e)
		} else {
			rest = append(rest, e)
		}
	}
	s := fold(t, first, rng)
	readers, books := map[string]bool{}, map[string]bool{}
	for _, e := range events {
		readers[e.Reader], books[e.Book] = true, true
	}
	w, err := insights.AsBeforeCeilings(s, sortedKeys(readers), sortedKeys(books))
	if err != nil {
		t.Fatal(err)
	}
	if w.Len() == 0 {
		t.Fatal("no record was rewritten")
	}
	off, err := s.Offset(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(0, off, w); err != nil {
		t.Fatal(err)
	}
	foldInto(t, s, rest, rng)
	if got := answers(t, s, events, asOf); got != want {
		t.Fatalf("records from before the ceilings give different insights:\n%s", firstDiff(want, got))
	}
}

func sortByTime(ev []event.Event) {
	for i := 1; i < len(ev); i++ {
		for j := i; j > 0 && ev[j].Time.Before(ev[j-1].Time); j-- {
			ev[j], ev[j-1] = ev[j-1], ev[j]
		}
	}
}

func firstDiff(a, b string) string {
	al, bl := bytes.Split([]byte(a), []byte("\n")), bytes.Split([]byte(b), []byte("\n"))
	for i := range min(len(al), len(bl)) {
		if !bytes.Equal(al[i], bl[i]) {
			return fmt.Sprintf("line %d\nwant %s\ngot  %s", i, al[i], bl[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(al), len(bl))
}

// TestPlatformAggregates checks daily and monthly active readers, trending and book statistics
// against what the events themselves say (or the per-reader records, for books), after shuffled
// folding and two erasures: mid-history, where readers read after as_of, so the aggregates are
// corrected reader by reader and start by start, and the per-reader keys answer too; and at the
// end of the history after the per-reader keys are deleted, so that only the aggregates can.
func TestPlatformAggregates(t *testing.T) {
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := loadgen.New(loadgen.Config{Readers: 60, Books: 20, Seed: 11, Start: end.Add(-60 * 24 * time.Hour), End: end}).Batch(4000)
	rng := rand.New(rand.NewPCG(11, 3))
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	s := fold(t, events, rng)
	erased := map[string]bool{events[0].Reader: true, events[1].Reader: true}
	for r := range erased {
		part := eventlog.PartitionFor(r, partitions)
		var w state.Writes
		if found, err := insights.Erase(s, &w, part, r); err != nil || !found {
			t.Fatalf("erase %s: %v %v", r, found, err)
		}
		off, _ := s.Offset(part)
		if err := s.Commit(part, off, &w); err != nil {
			t.Fatal(err)
		}
	}
	want := func(asOf time.Time) (dau, mau int) {
		today := asOf.UTC().Truncate(24 * time.Hour)
		day, month := map[string]bool{}, map[string]bool{}
		for _, e := range events {
			if !e.Type.IsReading() || erased[e.Reader] {
				continue
			}
			d := e.Time.UTC().Truncate(24 * time.Hour)
			if d.Equal(today) {
				day[e.Reader] = true
			}
			if !d.After(today) && d.After(today.Add(-insights.MAUWindowDays*24*time.Hour)) {
				month[e.Reader] = true
			}
		}
		return len(day), len(month)
	}
	// Trending as docs/insights.md defines it: each reader's earliest reading event of a book
	// is a start, weighted by the age of its hour.
	trending := func(asOf time.Time) []insights.TrendingBook {
		first := map[[2]string]time.Time{}
		for _, e := range events {
			k := [2]string{e.Reader, e.Book}
			if e.Type.IsReading() && !erased[e.Reader] && (first[k].IsZero() || e.Time.Before(first[k])) {
				first[k] = e.Time
			}
		}
		byBook := map[string]*insights.TrendingBook{}
		for k, at := range first {
			hour := at.Truncate(time.Hour)
			if hour.After(asOf) {
				continue
			}
			if byBook[k[1]] == nil {
				byBook[k[1]] = &insights.TrendingBook{Book: k[1]}
			}
			byBook[k[1]].Score += math.Pow(0.5, asOf.Sub(hour).Hours()/insights.TrendingHalfLife.Hours())
			byBook[k[1]].Starts++
		}
		var out []insights.TrendingBook
		for _, tb := range byBook {
			out = append(out, *tb)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Score != out[j].Score {
				return out[i].Score > out[j].Score
			}
			return out[i].Book < out[j].Book
		})
		return out
	}
	mid := end.Add(-25 * 24 * time.Hour)
	var checkTrending func(asOf time.Time)
	// While the per-reader active keys and per-start keys are there, stats and trending can also
	// be read from them.
	activeKeys, startKeys := true, true
	check := func(asOf time.Time) {
		t.Helper()
		ps, err := insights.Platform(s, asOf)
		if err != nil {
			t.Fatal(err)
		}
		dau, mau := want(asOf)
		if ps.DAU != dau || ps.MAU != mau || dau == 0 {
			t.Fatalf("as of %s: DAU %d MAU %d, the events say %d and %d", asOf, ps.DAU, ps.MAU, dau, mau)
		}
		if activeKeys {
			restore := insights.ReadEveryRecord()
			every, err := insights.Platform(s, asOf)
			restore()
			if err != nil || every.DAU != dau || every.MAU != mau {
				t.Fatalf("as of %s: from every active key DAU %d MAU %d (%v), the events say %d and %d", asOf, every.DAU, every.MAU, err, dau, mau)
			}
		}
		checkTrending(asOf)
	}
	checkTrending = func(asOf time.Time) {
		t.Helper()
		tr, err := insights.Trending(s, asOf, 1000)
		if err != nil {
			t.Fatal(err)
		}
		want := trending(asOf)
		if len(tr) == 0 || !sameTrending(tr, want) {
			t.Fatalf("as of %s: trending\n%v\nthe events say\n%v", asOf, tr, want)
		}
		if startKeys {
			restore := insights.ReadEveryRecord()
			every, err := insights.Trending(s, asOf, 1000)
			restore()
			if err != nil || !sameTrending(every, want) {
				t.Fatalf("as of %s: trending from every start\n%v (%v)\nthe events say\n%v", asOf, every, err, want)
			}
		}
		// The head of the list alone, as the dashboard asks for it, is the head of the whole.
		if top, err := insights.Trending(s, asOf, 5); err != nil || fmt.Sprint(top) != fmt.Sprint(tr[:5]) {
			t.Fatalf("as of %s: top 5 %v, the whole list starts %v (%v)", asOf, top, tr[:5], err)
		}
	}
	check(mid)
	// Book statistics from the aggregates equal those from every reader's record, with the
	// 30-day cut-off at several hours of one day, where the readers of that day are told apart
	// one by one.
	books := map[string]bool{}
	for _, e := range events {
		books[e.Book] = true
	}
	for _, asOf := range []time.Time{mid, mid.Add(7 * time.Hour), mid.Add(19*time.Hour + 30*time.Minute), end, end.Add(40 * 24 * time.Hour)} {
		for _, b := range sortedKeys(books) {
			bookFromAggregatesAsFromReaders(t, s, b, asOf)
		}
	}
	var w state.Writes
	activeKeys = false
	s.Scan([]byte("p\x00a\x00"), state.PrefixEnd([]byte("p\x00a\x00")), func(k, _ []byte) error { w.Delete(k); return nil })
	off, _ := s.Offset(0)
	if err := s.Commit(0, off, &w); err != nil || w.Len() == 0 {
		t.Fatalf("deleting %d active keys: %v", w.Len(), err)
	}
	check(end.Add(-time.Hour))
	// With the per-start keys gone too, only the trending aggregates can answer.
	startKeys = false
	s.Scan([]byte("p\x00s\x00"), state.PrefixEnd([]byte("p\x00s\x00")), func(k, _ []byte) error { w.Delete(k); return nil })
	if err := s.Commit(0, off, &w); err != nil || w.Len() == 0 {
		t.Fatalf("deleting %d start keys: %v", w.Len(), err)
	}
	checkTrending(end.Add(time.Hour))
}

// sameTrending compares a trending list with one computed in floating point from the events:
// the same books with the same starts, scores equal to rounding (dogear's weights are fixed
// point, to a millionth), in an order that only swaps books whose scores are that close.
func sameTrending(got, want []insights.TrendingBook) bool {
	if len(got) != len(want) {
		return false
	}
	exact := map[string]insights.TrendingBook{}
	for _, w := range want {
		exact[w.Book] = w
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-6*max(a, b) }
	for i, g := range got {
		w, ok := exact[g.Book]
		if !ok || g.Starts != w.Starts || math.Abs(g.Score-w.Score) > 1e-4+1e-6*w.Score {
			return false
		}
		if g.Book != want[i].Book && !close(w.Score, want[i].Score) {
			return false
		}
	}
	return true
}

// A reader whose latest event is dated after as_of's day (a device whose clock runs ahead) still
// counts in the monthly actives when they also read within the 30 days, and not otherwise.
func TestMonthlyActivesWithAClockAhead(t *testing.T) {
	asOf := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	events := []event.Event{
		{ID: "a1", Type: event.Session, Reader: "ann", Book: "b1", Time: asOf.Add(-5 * 24 * time.Hour), DurationMS: 60_000},
		{ID: "a2", Type: event.Session, Reader: "ann", Book: "b1", Time: asOf.Add(20 * time.Hour), DurationMS: 60_000}, // tomorrow
		{ID: "b1", Type: event.Session, Reader: "bob", Book: "b1", Time: asOf.Add(-2 * time.Hour), DurationMS: 60_000},
		{ID: "c1", Type: event.Session, Reader: "cat", Book: "b2", Time: asOf.Add(-40 * 24 * time.Hour), DurationMS: 60_000},
		{ID: "c2", Type: event.Session, Reader: "cat", Book: "b2", Time: asOf.Add(22 * time.Hour), DurationMS: 60_000}, // tomorrow, not in the month
	}
	s := fold(t, events, rand.New(rand.NewPCG(1, 1)))
	ps, err := insights.Platform(s, asOf)
	if err != nil || ps.DAU != 1 || ps.MAU != 2 {
		t.Fatalf("DAU %d MAU %d (%v), want 1 (bob) and 2 (ann, bob)", ps.DAU, ps.MAU, err)
	}
}

// TestAggregatesOverBothLayouts folds half the partitions as builds did that kept a key per hour
// of unfinished starters and per time slot of a reader, and the rest with those in day records,
// then erases a reader of each. Book statistics from the aggregates still equal those from every
// reader's record, at cut-offs across the hours of one day, and every reader's insights equal
// those of the same events folded in the earlier layout alone.
func TestAggregatesOverBothLayouts(t *testing.T) {
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := loadgen.New(loadgen.Config{Readers: 60, Books: 10, Seed: 5, Start: end.Add(-60 * 24 * time.Hour), End: end}).Batch(4000)
	rng := rand.New(rand.NewPCG(5, 8))
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	var early, late []event.Event // of the even partitions, and of the odd ones
	for _, e := range events {
		if eventlog.PartitionFor(e.Reader, partitions)%2 == 0 {
			early = append(early, e)
		} else {
			late = append(late, e)
		}
	}
	// The even partitions start under the earlier layout and go on after the change.
	restore := insights.KeepKeysPerHourAndSlot()
	s := fold(t, early[:len(early)/2], rng)
	before := fold(t, events, rng)
	restore()
	foldInto(t, s, append(early[len(early)/2:], late...), rng)

	books := map[string]bool{}
	for _, e := range events {
		books[e.Book] = true
	}
	withHourKeys, err := insights.HourKeysOf(s, sortedKeys(books))
	if err != nil {
		t.Fatal(err)
	}
	for p := range partitions {
		if withHourKeys[p] != (p%2 == 0) {
			t.Fatalf("partition %d has hour keys: %v, want them in the even partitions only", p, withHourKeys[p])
		}
	}
	erased := map[string]bool{early[0].Reader: true, late[0].Reader: true}
	for r := range erased {
		part := eventlog.PartitionFor(r, partitions)
		for _, st := range []state.Store{s, before} {
			var w state.Writes
			if found, err := insights.Erase(st, &w, part, r); err != nil || !found {
				t.Fatalf("erase %s: %v %v", r, found, err)
			}
			off, _ := st.Offset(part)
			if err := st.Commit(part, off, &w); err != nil {
				t.Fatal(err)
			}
		}
	}
	readers := map[string]bool{}
	for _, e := range events {
		readers[e.Reader] = true
	}
	for _, r := range sortedKeys(readers) {
		slotKeys, err := insights.HasSlotKeys(s, r)
		if err != nil {
			t.Fatal(err)
		}
		if even := eventlog.PartitionFor(r, partitions)%2 == 0; slotKeys != (even && !erased[r]) {
			t.Fatalf("reader %s (partition %d) has slot keys: %v", r, eventlog.PartitionFor(r, partitions), slotKeys)
		}
		got, err := insights.ForReader(s, r, end, 90)
		want, err2 := insights.ForReader(before, r, end, 90)
		if erased[r] {
			if !errors.Is(err, insights.ErrNotFound) || !errors.Is(err2, insights.ErrNotFound) {
				t.Fatalf("erased reader %s: %v, %v", r, err, err2)
			}
			continue
		}
		if err != nil || err2 != nil {
			t.Fatal(err, err2)
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Fatalf("reader %s: over both layouts\n%s\nin the earlier one\n%s", r, g, w)
		}
	}
	// Cut-offs just before and just after readers' latest reading events, so that the readers of
	// the cut-off's hour and of the rest of its day count on either side.
	last := map[[2]string]time.Time{}
	for _, e := range events {
		if k := [2]string{e.Reader, e.Book}; e.Type.IsReading() && e.Time.After(last[k]) {
			last[k] = e.Time
		}
	}
	var cutoffs []time.Time
	for _, at := range last {
		if at.Minute() >= 10 && at.Minute() < 50 {
			cutoffs = append(cutoffs, at.Add(-10*time.Minute), at.Add(10*time.Minute))
		}
	}
	slices.SortFunc(cutoffs, time.Time.Compare)
	abandoned := 0
	for _, cutoff := range cutoffs[:min(len(cutoffs), 80)] {
		asOf := cutoff.Add(insights.AbandonAfter)
		for _, b := range sortedKeys(books) {
			abandoned += bookFromAggregatesAsFromReaders(t, s, b, asOf).ReadersAbandoned
		}
	}
	if abandoned == 0 {
		t.Fatal("no reader abandoned any book at these cut-offs: the test compares nothing that moves")
	}
}

// bookFromAggregatesAsFromReaders checks that a book's statistics from the aggregates equal those
// from every reader's record, and returns them.
func bookFromAggregatesAsFromReaders(t *testing.T, s state.Reader, book string, asOf time.Time) *insights.BookStats {
	t.Helper()
	got, err := insights.Book(s, book, asOf)
	if err != nil {
		t.Fatal(err)
	}
	want, err := insights.BookFromReaders(s, book, asOf)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Fatalf("book %s as of %s: from the aggregates\n%s\nfrom the readers\n%s", book, asOf, g, w)
	}
	return want
}
