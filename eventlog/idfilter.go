package eventlog

import "github.com/bits-and-blooms/bloom/v3"

// idFilter is a Bloom filter over every event id in the embedded log, in front of its on-disk
// dedup index: a fresh id (nearly every id) costs no index lookup, only an id the filter may
// have seen does. It grows as a chain of filters, each twice the capacity of the one before and
// each held to idFilterFP when full. A fresh id tests every filter, so its chance of a lookup is
// at most the chain's length times idFilterFP; the chain stays short, since its length grows
// with the log2 of the log's growth since open. Memory is about 1.2 bytes per id the filters
// are sized for: twice the ids the log held at open, so 1.2 to 2.4 bytes per stored id.
//
// The filter is not stored: OpenPebble reads every id of the index into it, 0.3–0.9 µs an id on
// the project's machine (BenchmarkPebbleOpen: 0.6–1.7 s for a log of 2M events), so about a
// minute per 100M events. Storing it beside the log would make opening independent of the
// log's size.
type idFilter struct {
	chain []*bloom.BloomFilter
	n     uint // ids added to the newest filter
	cap   uint // what the newest filter was sized for
}

// idFilterFP is the false-positive rate: the share of fresh ids that still pay an index lookup.
const idFilterFP = 0.01

// newIDFilter sizes the first filter for at least the ids the log holds at open.
func newIDFilter(expected uint) *idFilter {
	f := &idFilter{}
	f.grow(max(expected*2, 1<<20))
	return f
}

func (f *idFilter) grow(capacity uint) {
	f.chain = append(f.chain, bloom.NewWithEstimates(capacity, idFilterFP))
	f.n, f.cap = 0, capacity
}

// add adds id and reports whether it may have been added before (false only when it was not).
func (f *idFilter) add(id string) (mayHave bool) {
	if f.n >= f.cap {
		f.grow(f.cap * 2)
	}
	newest := len(f.chain) - 1
	for _, b := range f.chain[:newest] {
		if b.TestString(id) {
			mayHave = true
			break
		}
	}
	if !f.chain[newest].TestOrAddString(id) {
		f.n++
		return mayHave
	}
	return true
}
