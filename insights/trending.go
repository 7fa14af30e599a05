package insights

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"sort"
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
func trendKey(book string, partition int) []byte {
	return binary.BigEndian.AppendUint16(trendsPrefix(book), uint16(partition))
}
func trendsPrefix(book string) []byte { return []byte("b" + sep + book + sep + "w" + sep) }

// rankKey places a book in its partition's ranking: heaviest first, then by book id. The
// weight's length comes first and each byte is inverted, so that key order is weight order,
// descending.
func rankKey(partition int, w *big.Int, book string) []byte {
	k := rankPrefix(partition)
	b := w.Bytes()
	k = binary.BigEndian.AppendUint16(k, uint16(math.MaxUint16-len(b)))
	for _, c := range b {
		k = append(k, ^c)
	}
	return append(k, book...)
}

const rankPrefixLen = len("p"+sep+"w"+sep) + 2

func rankPrefix(partition int) []byte {
	return binary.BigEndian.AppendUint16([]byte("p"+sep+"w"+sep), uint16(partition))
}

// parseRank reads the weight and the book of a ranking key without its prefix.
func parseRank(rest []byte) (*big.Int, string) {
	n := math.MaxUint16 - int(binary.BigEndian.Uint16(rest))
	b := make([]byte, n)
	for i := range b {
		b[i] = ^rest[2+i]
	}
	return new(big.Int).SetBytes(b), string(rest[2+n:])
}

// addStart adds (n = 1) or removes (n = −1) a start of book in the UTC hour h to the partition's
// trending aggregates: the book's weight, its place in the ranking, and the hour's count.
func addStart(tx Tx, partition int, book string, h int64, n int64) error {
	k := trendKey(book, partition)
	var t BookTrend
	if err := load(tx, k, &t); err != nil {
		return err
	}
	if t.Weight.Sign() > 0 {
		tx.Delete(rankKey(partition, &t.Weight, book))
	}
	if w := startWeight(h); n > 0 {
		t.Weight.Add(&t.Weight, w)
	} else {
		t.Weight.Sub(&t.Weight, w)
	}
	if t.Starts += n; t.Starts == 0 {
		tx.Delete(k)
	} else {
		tx.Put(k, encodeRecord(&t))
	}
	if t.Weight.Sign() > 0 {
		// The value is the starts, so that a merge that meets the book in every ranking knows
		// its totals without reading its records.
		tx.Put(rankKey(partition, &t.Weight, book), binary.AppendVarint(nil, t.Starts))
	}
	return addDaily(tx, hourlyStarts, h, partition, n)
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
// listed. When every partition kept the aggregates and no start came after as_of's hour (the
// live dashboard), it merges the heads of the partitions' rankings; otherwise (state from before
// the aggregates, or a look back in time) it reads every start.
func Trending(src state.Reader, asOf time.Time, n int) ([]TrendingBook, error) {
	hour := asOf.Unix() / 3600
	parts, aggregated, err := trendPartitions(src, hour)
	if err != nil {
		return nil, err
	}
	var top []bookTotal
	if aggregated {
		top, err = trendingFromRankings(src, parts, n)
	} else {
		top, err = trendingFromStarts(src, hour, n)
	}
	out := make([]TrendingBook, 0, len(top))
	for _, t := range top {
		out = append(out, TrendingBook{Book: t.book, Score: round4(trendScore(&t.weight, asOf)), Starts: int(t.starts)})
	}
	return out, err
}

// trendPartitions lists the partitions with state, and whether their trending aggregates can
// answer as of the UTC hour: all kept them, and none counted a start after it.
func trendPartitions(src state.Reader, hour int64) ([]int, bool, error) {
	parts, kept, err := partitionsKeeping(src, aggregatesTrending)
	if err != nil || !kept {
		return parts, false, err
	}
	later, err := sumDaily(src, hourlyStarts, hour+1, math.MaxInt64, nil)
	return parts, later == 0, err
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

// bookTotal is a book's trending weight and starts over every partition.
type bookTotal struct {
	book   string
	weight big.Int
	starts int64
}

// heavier orders totals as trending lists them: by weight, then by book id.
func heavier(a, b *bookTotal) bool {
	if c := a.weight.Cmp(&b.weight); c != 0 {
		return c > 0
	}
	return a.book < b.book
}

// keepTop inserts t into top, kept sorted and at most n long.
func keepTop(top []bookTotal, t bookTotal, n int) []bookTotal {
	i := sort.Search(len(top), func(i int) bool { return heavier(&t, &top[i]) })
	if i >= n {
		return top
	}
	top = append(top, bookTotal{})
	copy(top[i+1:], top[i:])
	top[i] = t
	if len(top) > n {
		top = top[:n]
	}
	return top
}

// trendingFromRankings merges the partitions' rankings (after Fagin, Lotem and Naor's threshold
// algorithms). It reads each ranking from the top, a chunk at a time, adding up what it reads of
// each book: a lower bound of the book's total. A book not met in a ranking still open weighs at
// most the last weight read there, so a book met nowhere weighs at most the sum of those; once
// the n-th best lower bound exceeds that sum, the top n are among the books met. Those are then
// totalled exactly, most promising first (by their upper bound), until the n-th total exceeds
// every remaining upper bound. Reading a ranking is a scan of small keys; totalling a book reads
// its records of every partition, so it is done for as few books as the bounds allow. With
// readers spread over partitions, a book heavy in one is heavy in all, and the merge stops
// after a few chunks however many readers and books there are.
func trendingFromRankings(src state.Reader, parts []int, n int) ([]bookTotal, error) {
	type cursor struct {
		lower, upper []byte
		last         big.Int // the weight of the last entry read
		open         bool
	}
	cursors := make([]*cursor, len(parts))
	for i, p := range parts {
		prefix := rankPrefix(p)
		cursors[i] = &cursor{lower: prefix, upper: state.PrefixEnd(prefix), open: true}
	}
	partials := map[string]*partial{}
	var unmet big.Int // what a book met nowhere can weigh at most
	for chunk := max(4*n, 64); ; chunk *= 2 {
		for i, c := range cursors {
			if !c.open {
				continue
			}
			entries := 0
			err := src.Scan(c.lower, c.upper, func(k, v []byte) error {
				w, book := parseRank(k[rankPrefixLen:])
				starts, read := binary.Varint(v)
				if read <= 0 {
					return fmt.Errorf("insights: corrupt ranking entry %q", k)
				}
				c.last.Set(w)
				c.lower = append(append(c.lower[:0:0], k...), 0)
				pb := partials[book]
				if pb == nil {
					pb = &partial{book: book, met: make([]bool, len(cursors))}
					partials[book] = pb
				}
				pb.known.Add(&pb.known, w)
				pb.starts += starts
				pb.met[i] = true
				if entries++; entries == chunk {
					return state.ErrStop
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			c.open = entries == chunk
		}

		unmet.SetInt64(0)
		for _, c := range cursors {
			if c.open {
				unmet.Add(&unmet, &c.last)
			}
		}
		if unmet.Sign() == 0 || nthKnown(partials, n).Cmp(&unmet) > 0 {
			break
		}
	}

	type candidate struct {
		*partial
		upper big.Int
		exact bool // met in every ranking still open: what was read is the total
	}
	cands := make([]candidate, 0, len(partials))
	for _, pb := range partials {
		c := candidate{partial: pb, exact: true}
		c.upper.Set(&pb.known)
		for i, cur := range cursors {
			if cur.open && !pb.met[i] {
				c.upper.Add(&c.upper, &cur.last)
				c.exact = false
			}
		}
		cands = append(cands, c)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].upper.Cmp(&cands[j].upper) > 0 })
	var top []bookTotal
	for _, c := range cands {
		if len(top) == n && top[n-1].weight.Cmp(&c.upper) > 0 {
			break
		}
		t := bookTotal{book: c.book, starts: c.starts}
		t.weight.Set(&c.known)
		if !c.exact {
			var err error
			if t, err = bookTotals(src, c.book); err != nil {
				return nil, err
			}
		}
		top = keepTop(top, t, n)
	}
	return top, nil
}

// partial is what the merge has read of a book.
type partial struct {
	book   string
	known  big.Int // the weights read so far
	starts int64   // and the starts
	met    []bool  // in which rankings
}

// nthKnown is the n-th largest weight read of the books met (0 when fewer were met).
func nthKnown(partials map[string]*partial, n int) *big.Int {
	known := make([]*big.Int, 0, len(partials))
	for _, pb := range partials {
		known = append(known, &pb.known)
	}
	if len(known) < n {
		return new(big.Int)
	}
	sort.Slice(known, func(i, j int) bool { return known[i].Cmp(known[j]) > 0 })
	return known[n-1]
}

// bookTotals sums a book's trending records over the partitions.
func bookTotals(src state.Reader, book string) (bookTotal, error) {
	t := bookTotal{book: book}
	err := state.ScanPrefix(src, trendsPrefix(book), func(_, v []byte) error {
		var bt BookTrend
		if err := decodeRecord(v, &bt); err != nil {
			return err
		}
		t.weight.Add(&t.weight, &bt.Weight)
		t.starts += bt.Starts
		return nil
	})
	return t, err
}

// trendingFromStarts totals every start up to the end of the UTC hour.
func trendingFromStarts(src state.Reader, hour int64, n int) ([]bookTotal, error) {
	upper := binary.BigEndian.AppendUint64(append([]byte(nil), startsPrefix...), uint64(hour+1))
	byBook := map[string]*bookTotal{}
	err := src.Scan(startsPrefix, upper, func(k, _ []byte) error {
		rest := k[len(startsPrefix):]
		h := int64(binary.BigEndian.Uint64(rest))
		book := string(rest[9 : 9+bytes.IndexByte(rest[9:], 0)])
		t := byBook[book]
		if t == nil {
			t = &bookTotal{book: book}
			byBook[book] = t
		}
		t.starts++
		if h >= firstWeightedHour {
			t.weight.Add(&t.weight, startWeight(h))
		}
		return nil
	})
	var top []bookTotal
	for _, t := range byBook {
		if t.weight.Sign() > 0 {
			top = keepTop(top, *t, n)
		}
	}
	return top, err
}
