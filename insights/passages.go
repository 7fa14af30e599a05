package insights

import (
	"math/big"

	"github.com/dogear-dev/dogear/state"
)

// A book's most highlighted passages are kept as aggregates too: per partition and passage, how
// many readers highlighted it under each variant of its text (the variants differ in case and
// white space; the smallest is shown), and a ranking of the book's passages by readers. The
// query merges the partitions' rankings, so it reads the passages near the top, not every
// reader's highlight.

// PassageVariants are the readers of one partition who highlighted a passage, by the variant of
// its text each of them sent (the smallest, when they sent several).
type PassageVariants struct{ Readers map[string]int64 }

func (p *PassageVariants) total() int64 {
	var n int64
	for _, c := range p.Readers {
		n += c
	}
	return n
}

func (p *PassageVariants) encode(e *encoder) { encodeCounts(e, p.Readers, (*encoder).str) }
func (p *PassageVariants) decode(d *decoder) { p.Readers = decodeCounts(d, (*decoder).str) }

func passagePrefix(book, hash string) []byte {
	return []byte("b" + sep + book + sep + "p" + sep + hash + sep)
}

func passageRankPrefix(book string, partition int) []byte {
	return partitionKey([]byte("b"+sep+book+sep+"P"+sep), partition)
}

// movePassage moves a reader's highlight of a passage from one variant of its text to another:
// from "" is a new reader of the passage, to "" a reader erased.
func movePassage(tx Tx, partition int, book, hash, from, to string) error {
	k := partitionKey(passagePrefix(book, hash), partition)
	var p PassageVariants
	if err := load(tx, k, &p); err != nil {
		return err
	}
	if p.Readers == nil {
		p.Readers = map[string]int64{}
	}
	before := p.total()
	if from != "" {
		if p.Readers[from]--; p.Readers[from] <= 0 {
			delete(p.Readers, from)
		}
	}
	if to != "" {
		p.Readers[to]++
	}
	after := p.total()
	if after == 0 {
		tx.Delete(k)
	} else {
		tx.Put(k, encodeRecord(&p))
	}
	if after != before {
		moveRank(tx, passageRankPrefix(book, partition), hash, big.NewInt(before), big.NewInt(after), after)
	}
	return nil
}

// passageRankings are a book's passages ranked by readers in each partition; ties go by text.
func passageRankings(src state.Reader, book string, parts []int) rankings {
	r := rankings{
		total: func(hash string) (ranked, error) {
			t := ranked{id: hash}
			err := state.ScanPrefix(src, passagePrefix(book, hash), func(_, v []byte) error {
				var p PassageVariants
				if err := decodeRecord(v, &p); err != nil {
					return err
				}
				for text, n := range p.Readers {
					t.count += n
					if t.label == "" || text < t.label {
						t.label = text
					}
				}
				return nil
			})
			t.weight.SetInt64(t.count)
			return t, err
		},
		heavier: func(a, b *ranked) bool {
			if c := a.weight.Cmp(&b.weight); c != 0 {
				return c > 0
			}
			return a.label < b.label
		},
	}
	for _, p := range parts {
		r.prefixes = append(r.prefixes, passageRankPrefix(book, p))
	}
	return r
}

// topPassagesFromRankings is topPassages from the aggregates.
func topPassagesFromRankings(src state.Reader, book string, parts []int, n int) ([]Passage, error) {
	top, err := passageRankings(src, book, parts).top(src, n)
	out := make([]Passage, 0, len(top))
	for _, t := range top {
		out = append(out, Passage{Text: t.label, Readers: int(t.count)})
	}
	return out, err
}
