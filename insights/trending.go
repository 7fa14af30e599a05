package insights

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/big"
	"time"

	"github.com/dogear-dev/dogear/state"
)

// Trending is kept as an aggregate folded with the events, so that the query reads a few keys
// whatever the readership. A start's weight halves every three days; with no hard window, the
// weights of a book's starts add up to one number whose ranking against other books no longer
// changes with time (every weight decays by the same factor). Each partition keeps, per book,
// that sum and the book's place in a ranking; the query merges the partitions' rankings.
//
// Weights are integers, so that sums are exact whatever order events arrive in (a rebuild
// reproduces them to the bit) and an erasure subtracts exactly what was added: a start in hour h
// weighs round(2^(trendFracBits + (h − trendEpochHour) / 72)). They grow by a factor of 2 every
// three days after the epoch, about 120 bits a year, which big.Int carries; a start more than
// trendFracBits half-lives before the epoch weighs 0 and no longer trends.

const (
	trendHalfLifeHours = 72
	trendFracBits      = 20
)

// trendEpochHour is the hour from which weights are counted (2025-01-01 UTC).
var trendEpochHour = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 3600

// firstWeightedHour is the first hour whose starts weigh more than 0.
var firstWeightedHour = trendEpochHour - trendFracBits*trendHalfLifeHours

// hourWeights[r] is round(2^(trendFracBits + r/72)): the weight of a start r hours into a
// half-life, before the shift by whole half-lives.
var hourWeights = func() (w [trendHalfLifeHours]uint64) {
	for r := range w {
		w[r] = uint64(math.Round(math.Exp2(trendFracBits + float64(r)/trendHalfLifeHours)))
	}
	return w
}()

// startWeight is the fixed-point weight of a start in the UTC hour h (hours since 1970).
func startWeight(h int64) *big.Int {
	d := h - trendEpochHour
	q, r := d/trendHalfLifeHours, d%trendHalfLifeHours
	if r < 0 {
		q, r = q-1, r+trendHalfLifeHours
	}
	w := new(big.Int).SetUint64(hourWeights[r])
	if q >= 0 {
		return w.Lsh(w, uint(q))
	}
	return w.Rsh(w, uint(-q))
}

// trendScore is a summed weight as of a moment: each start's weight 0.5^(age / 3 days), age
// measured from the beginning of the start's hour.
func trendScore(w *big.Int, asOf time.Time) float64 {
	var mant big.Float
	exp := new(big.Float).SetInt(w).MantExp(&mant) // w = mant × 2^exp, mant in [0.5, 1)
	m, _ := mant.Float64()
	halfLives := (float64(asOf.Unix())/3600 - float64(trendEpochHour)) / trendHalfLifeHours
	return m * math.Exp2(float64(exp-trendFracBits)-halfLives)
}

// BookTrend is a book's starts in one partition: how many, and their weights summed.
type BookTrend struct {
	Weight big.Int
	Starts int64
}

func (t *BookTrend) encode(e *encoder) { e.str(string(t.Weight.Bytes())); e.int(t.Starts) }
func (t *BookTrend) decode(d *decoder) { t.Weight.SetBytes([]byte(d.str())); t.Starts = d.int() }

// trendKey holds a BookTrend, under the book so that one prefix scan reads every partition's.
func trendKey(dst []byte, book string, partition int) []byte {
	return partitionKey(append(append(append(dst, "b"+sep...), book...), sep+"w"+sep...), partition)
}
func trendsPrefix(book string) []byte { return []byte("b" + sep + book + sep + "w" + sep) }

func rankPrefix(partition int) []byte {
	return binary.BigEndian.AppendUint16([]byte("p"+sep+"w"+sep), uint16(partition))
}

// addStart adds (n = 1) or removes (n = −1) a start of book in the UTC hour h to the partition's
// trending aggregates: the book's weight, its place in the ranking, and the hour's count.
func (f *Folder) addStart(book string, h int64, n int64) error {
	f.key = trendKey(f.key[:0], book, f.partition)
	held, _, err := f.hold(f.key, func() any { return new(BookTrend) })
	if err != nil {
		return err
	}
	f.change(held)
	t := held.rec.(*BookTrend)
	old := new(big.Int).Set(&t.Weight)
	if w := startWeight(h); n > 0 {
		t.Weight.Add(&t.Weight, w)
	} else {
		t.Weight.Sub(&t.Weight, w)
	}
	t.Starts += n
	// The entry's count is the starts, so that a merge that meets the book in every ranking
	// knows its totals without reading its records.
	moveRank(f.tx, rankPrefix(f.partition), book, old, &t.Weight, t.Starts)
	return f.addDaily(hourlyStarts, h, n)
}

// TrendingBook is one entry of GET /v1/trending.
type TrendingBook struct {
	Book   string  `json:"book"`
	Score  float64 `json:"score"`
	Starts int     `json:"starts"`
}

// Trending ranks books by readers starting them: each start up to the end of as_of's UTC hour
// counts 0.5^(age / 3 days), so a start today counts about 1, one a week ago about 0.2 and one a
// month ago a thousandth. Books whose starts all weigh nothing (docs/insights.md) are not
// listed. When every partition kept the aggregates, it merges the heads of the partitions'
// rankings, taking away the starts after as_of's hour (a device whose clock runs ahead, or a
// look back of a few hours); otherwise (state from before the aggregates, or a look far back,
// past more than laterStartsTakenAway starts) it reads every start.
func Trending(src state.Reader, asOf time.Time, n int) ([]TrendingBook, error) {
	hour := asOf.Unix() / 3600
	parts, kept, err := partitionsKeeping(src, aggregatesTrending)
	if err != nil {
		return nil, err
	}
	var later int64
	if kept {
		if later, err = sumDaily(src, hourlyStarts, hour+1, math.MaxInt64, nil); err != nil {
			return nil, err
		}
	}
	var top []ranked
	if kept && later <= laterStartsTakenAway {
		var after map[string]*ranked
		if after, err = startsBetween(src, hour+1, math.MaxInt64); err != nil {
			return nil, err
		}
		r := bookRankings(src, parts)
		r.less = after
		top, err = r.top(src, n)
	} else {
		top, err = trendingFromStarts(src, hour, n)
	}
	out := make([]TrendingBook, 0, len(top))
	for _, t := range top {
		out = append(out, TrendingBook{Book: t.id, Score: round4(trendScore(&t.weight, asOf)), Starts: int(t.count)})
	}
	return out, err
}

// laterStartsTakenAway is how many starts after as_of the rankings are corrected for; beyond it
// reading every start up to as_of costs less.
var laterStartsTakenAway int64 = 10_000

// bookRankings are the partitions' rankings of books by trending weight; ties go by book id.
func bookRankings(src state.Reader, parts []int) rankings {
	r := rankings{total: bookTotals(src), entriesSuffice: true, heavier: func(a, b *ranked) bool {
		if c := a.weight.Cmp(&b.weight); c != 0 {
			return c > 0
		}
		return a.id < b.id
	}}
	for _, p := range parts {
		r.prefixes = append(r.prefixes, rankPrefix(p))
	}
	return r
}

// partitionsKeeping lists the partitions with state, and whether every one kept the aggregates
// of a level (PartitionCounts.Aggregates) from its first event.
func partitionsKeeping(src state.Reader, level int64) ([]int, bool, error) {
	var parts []int
	kept := true
	err := state.ScanPrefix(src, countsPrefix, func(k, v []byte) error {
		var c PartitionCounts
		if err := decodeRecord(v, &c); err != nil {
			return err
		}
		parts = append(parts, int(binary.BigEndian.Uint16(k[len(countsPrefix):])))
		kept = kept && c.Aggregates >= level
		return nil
	})
	return parts, kept, err
}

// bookTotals sums a book's trending records over the partitions.
func bookTotals(src state.Reader) func(book string) (ranked, error) {
	return func(book string) (ranked, error) {
		t := ranked{id: book}
		err := state.ScanPrefix(src, trendsPrefix(book), func(_, v []byte) error {
			var bt BookTrend
			if err := decodeRecord(v, &bt); err != nil {
				return err
			}
			t.weight.Add(&t.weight, &bt.Weight)
			t.count += bt.Starts
			return nil
		})
		return t, err
	}
}

// startsBetween totals, by book, the starts in the UTC hours [from, to).
func startsBetween(src state.Reader, from, to int64) (map[string]*ranked, error) {
	lower := binary.BigEndian.AppendUint64(append([]byte(nil), startsPrefix...), uint64(max(0, from)))
	upper := state.PrefixEnd(startsPrefix)
	if to != math.MaxInt64 {
		upper = binary.BigEndian.AppendUint64(append([]byte(nil), startsPrefix...), uint64(to))
	}
	byBook := map[string]*ranked{}
	err := src.Scan(lower, upper, func(k, _ []byte) error {
		rest := k[len(startsPrefix):]
		h := int64(binary.BigEndian.Uint64(rest))
		book := string(rest[9 : 9+bytes.IndexByte(rest[9:], 0)])
		t := byBook[book]
		if t == nil {
			t = &ranked{id: book}
			byBook[book] = t
		}
		t.count++
		if h >= firstWeightedHour {
			t.weight.Add(&t.weight, startWeight(h))
		}
		return nil
	})
	return byBook, err
}

// trendingFromStarts totals every start up to the end of the UTC hour.
func trendingFromStarts(src state.Reader, hour int64, n int) ([]ranked, error) {
	byBook, err := startsBetween(src, 0, hour+1)
	r := bookRankings(src, nil)
	var top []ranked
	for _, t := range byBook {
		if t.weight.Sign() > 0 {
			top = r.keepTop(top, *t, n)
		}
	}
	return top, err
}
