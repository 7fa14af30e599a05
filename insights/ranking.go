package insights

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"sort"

	"github.com/dogear-dev/dogear/state"
)

// A ranking orders the ids of one partition (books by trending weight, a book's passages by
// readers) heaviest first, as keys under a prefix: the weight's length, its bytes inverted (so
// that key order is weight order, descending), then the id. The value is a count carried along.
// Top-n queries merge the partitions' rankings (rankings.top) instead of reading every id.

func rankKey(prefix []byte, w *big.Int, id string) []byte {
	b := w.Bytes()
	k := binary.BigEndian.AppendUint16(append([]byte(nil), prefix...), uint16(math.MaxUint16-len(b)))
	for _, c := range b {
		k = append(k, ^c)
	}
	return append(k, id...)
}

// parseRankKey reads the weight and the id of a ranking key without its prefix.
func parseRankKey(rest []byte) (*big.Int, string) {
	n := math.MaxUint16 - int(binary.BigEndian.Uint16(rest))
	b := make([]byte, n)
	for i := range b {
		b[i] = ^rest[2+i]
	}
	return new(big.Int).SetBytes(b), string(rest[2+n:])
}

// moveRank moves id in a ranking from weight old to weight cur, with count as the entry's value;
// a weight of 0 is no entry.
func moveRank(tx Tx, prefix []byte, id string, old, cur *big.Int, count int64) {
	if old.Sign() > 0 {
		tx.Delete(rankKey(prefix, old, id))
	}
	if cur.Sign() > 0 {
		tx.Put(rankKey(prefix, cur, id), binary.AppendVarint(nil, count))
	}
}

// ranked is an id's total over every partition.
type ranked struct {
	id     string
	weight big.Int
	count  int64
	label  string // what a ranking shows of the id (a passage's text), when not the id
}

// rankings are the per-partition rankings of one kind.
type rankings struct {
	prefixes [][]byte
	// total reads an id's records of every partition.
	total func(id string) (ranked, error)
	// heavier orders totals: by weight, then as the kind breaks ties.
	heavier func(a, b *ranked) bool
	// entriesSuffice: an id met in every open ranking is totalled from its entries, without its
	// records; not when ties are broken by what only the records hold.
	entriesSuffice bool
	// less is what to take away from an id's total (trending: the starts after as_of).
	less map[string]*ranked
}

// takeAway subtracts what r.less holds for t's id from t.
func (r rankings) takeAway(t *ranked) {
	if l := r.less[t.id]; l != nil {
		t.weight.Sub(&t.weight, &l.weight)
		t.count -= l.count
	}
}

// keepTop inserts t into top, kept in order and at most n long.
func (r rankings) keepTop(top []ranked, t ranked, n int) []ranked {
	i := sort.Search(len(top), func(i int) bool { return r.heavier(&t, &top[i]) })
	if i >= n {
		return top
	}
	top = append(top, ranked{})
	copy(top[i+1:], top[i:])
	top[i] = t
	if len(top) > n {
		top = top[:n]
	}
	return top
}

// partial is what the merge has read of an id.
type partial struct {
	id    string
	known big.Int // the weights read so far
	count int64
	met   []bool // in which rankings
}

// top merges the rankings (after Fagin, Lotem and Naor's threshold algorithms). It reads each
// from the top, a chunk at a time, adding up what it reads of each id: a lower bound of the id's
// total. An id not met in a ranking still open weighs at most the last weight read there, so an
// id met nowhere weighs at most the sum of those; once the n-th best lower bound exceeds that
// sum, the top n are among the ids met. Those are then totalled exactly, most promising first (by
// their upper bound), until the n-th total exceeds every remaining upper bound. Reading a ranking
// is a scan of small keys; totalling an id reads its records of every partition, so it is done
// for as few ids as the bounds allow. When ids are spread over partitions evenly (readers are),
// an id heavy in one ranking is heavy in all, and the merge stops after a few chunks whatever the
// number of readers.
func (r rankings) top(src state.Reader, n int) ([]ranked, error) {
	type cursor struct {
		lower, upper []byte
		skip         int     // the prefix's length
		last         big.Int // the weight of the last entry read
		open         bool
	}
	cursors := make([]*cursor, len(r.prefixes))
	for i, p := range r.prefixes {
		cursors[i] = &cursor{lower: p, upper: state.PrefixEnd(p), skip: len(p), open: true}
	}
	partials := map[string]*partial{}
	var unmet big.Int // what an id met nowhere can weigh at most
	for chunk := max(4*n, 64); ; chunk *= 2 {
		for i, c := range cursors {
			if !c.open {
				continue
			}
			entries := 0
			err := src.Scan(c.lower, c.upper, func(k, v []byte) error {
				w, id := parseRankKey(k[c.skip:])
				count, read := binary.Varint(v)
				if read <= 0 {
					return fmt.Errorf("insights: corrupt ranking entry %q", k)
				}
				c.last.Set(w)
				c.lower = append(append(c.lower[:0:0], k...), 0)
				pa := partials[id]
				if pa == nil {
					pa = &partial{id: id, met: make([]bool, len(cursors))}
					partials[id] = pa
				}
				pa.known.Add(&pa.known, w)
				pa.count += count
				pa.met[i] = true
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
		if unmet.Sign() == 0 || r.nthKnown(partials, n).Cmp(&unmet) > 0 {
			break
		}
	}

	type candidate struct {
		*partial
		upper big.Int
		exact bool // met in every ranking still open: what was read is the total
	}
	cands := make([]candidate, 0, len(partials))
	for _, pa := range partials {
		c := candidate{partial: pa, exact: r.entriesSuffice}
		c.upper.Set(&pa.known)
		if l := r.less[pa.id]; l != nil {
			c.upper.Sub(&c.upper, &l.weight)
		}
		for i, cur := range cursors {
			if cur.open && !pa.met[i] {
				c.upper.Add(&c.upper, &cur.last)
				c.exact = false
			}
		}
		cands = append(cands, c)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].upper.Cmp(&cands[j].upper) > 0 })
	var top []ranked
	for _, c := range cands {
		if len(top) == n && top[n-1].weight.Cmp(&c.upper) > 0 {
			break
		}
		t := ranked{id: c.id, count: c.count}
		t.weight.Set(&c.known)
		if !c.exact {
			var err error
			if t, err = r.total(c.id); err != nil {
				return nil, err
			}
		}
		r.takeAway(&t)
		if t.weight.Sign() > 0 {
			top = r.keepTop(top, t, n)
		}
	}
	return top, nil
}

// nthKnown is the n-th largest lower bound of the ids met: what was read of each, less what
// r.less takes away (0 when fewer were met).
func (r rankings) nthKnown(partials map[string]*partial, n int) *big.Int {
	known := make([]*big.Int, 0, len(partials))
	for _, pa := range partials {
		k := &pa.known
		if l := r.less[pa.id]; l != nil {
			k = new(big.Int).Sub(k, &l.weight)
		}
		known = append(known, k)
	}
	if len(known) < n {
		return new(big.Int)
	}
	sort.Slice(known, func(i, j int) bool { return known[i].Cmp(known[j]) > 0 })
	return known[n-1]
}
