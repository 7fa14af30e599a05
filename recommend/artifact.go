package recommend

import (
	"cmp"
	"encoding/gob"
	"io"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Interaction is one reader–book signal: its weight (docs/recommendations.md explains how reading
// events become weights; negative means a weak dislike) and when it last changed.
type Interaction struct {
	Reader string
	Book   string
	Weight float32
	At     int64 // Unix ms
}

// Artifact is a trained, servable model: item neighbours (none for a popularity model) over the
// books it was trained on, and their popularity, for the prior ModelParams.PopularityWeight asks
// for and for filling short lists. It is what the registry stores.
type Artifact struct {
	Version    int
	Created    time.Time
	Params     ModelParams
	Books      []string // index -> book id
	Neighbors  *Neighbors
	Popularity []float32
	// ALS is the iALS part of a blend (nil otherwise). ReaderFactors holds the training readers'
	// factors, row ReaderRows[hash of the reader id], valid while their history is the one
	// trained on (ReaderHistory[row], a hash): a reader with new events is folded in again at
	// request time. Keys and values hold no pointers, so the garbage collector never scans them,
	// which matters with a million readers; two readers whose ids share a 64-bit hash would at
	// worst swap trained factors, and only while both histories also hash alike.
	ALS           *ALS
	ReaderRows    map[uint64]int32
	ReaderFactors []float32
	ReaderHistory []uint64
	// ReaderLists, ReaderScores and ReaderBecause are, per training reader (blendCandidates
	// each, -1 padded), the list Recommend makes from their trained history: the blend's
	// candidates in their final order, their scores, and the history book (an index into Books)
	// each is there because of. A request from a reader whose history is unchanged reads its list
	// instead of making it (cachedList).
	ReaderLists   []int32
	ReaderScores  []float32
	ReaderBecause []int32
	Readers       int
	Events        int

	index   map[string]int32
	pool    sync.Pool
	popOnce sync.Once
	pop     []int32

	popBooksOnce sync.Once
	popBooks     []string

	maxPopOnce sync.Once
	maxPop     float32
}

// TrainArtifact trains a servable model from interactions (negative weights are left out of
// training: they only steer a reader's own scores).
func TrainArtifact(inter []Interaction, p ModelParams) *Artifact {
	return trainArtifact(inter, p, &alsCache{})
}

// inOrder returns the interactions sorted by reader and book (a copy, unless they already are):
// readers and books get the same rows whatever order they came in, so a model trained twice on the
// same interactions is the same model (iALS starts from seeded random factors by row).
func inOrder(inter []Interaction) []Interaction {
	byReaderBook := func(a, b Interaction) int {
		return cmp.Or(strings.Compare(a.Reader, b.Reader), strings.Compare(a.Book, b.Book))
	}
	if slices.IsSortedFunc(inter, byReaderBook) {
		return inter
	}
	inter = slices.Clone(inter)
	slices.SortFunc(inter, byReaderBook)
	return inter
}

// alsCache keeps a trained iALS between artifacts trained on the same interactions (a model
// search), which differ only in their neighbours or blend weight.
type alsCache struct {
	factors int
	als     *ALS
	x       []float32
	// trial: the artifacts are a search's candidates, never served, so their readers' lists are
	// not made (cacheLists costs seconds on a large catalogue).
	trial bool
}

func trainArtifact(inter []Interaction, p ModelParams, cache *alsCache) *Artifact {
	inter = inOrder(inter)
	a := &Artifact{Created: time.Now().UTC(), Params: p}
	readers := map[string]int32{}
	idx := map[string]int32{}
	var entries []Entry
	for _, it := range inter {
		if it.Weight <= 0 {
			continue
		}
		r, ok := readers[it.Reader]
		if !ok {
			r = int32(len(readers))
			readers[it.Reader] = r
		}
		b, ok := idx[it.Book]
		if !ok {
			b = int32(len(a.Books))
			idx[it.Book] = b
			a.Books = append(a.Books, it.Book)
		}
		entries = append(entries, Entry{Row: r, Col: b, Val: it.Weight})
	}
	m := Build(len(readers), len(a.Books), entries)
	switch p.Kind {
	case "popularity":
	case "ease":
		nb, err := TrainEASE(m, p.Lambda)
		if err != nil {
			// Select tries EASE only on small catalogues; a larger one falls back to popularity.
			break
		}
		a.Neighbors = nb
	default:
		a.Neighbors = TrainNeighbors(m, p, nil)
		if p.Factors > 0 {
			a.trainALS(m, readers, inter, p, cache)
		}
	}
	a.Popularity = TrainPopularity(m).Count
	a.Readers, a.Events = len(readers), len(entries)
	a.index = idx
	if a.ALS != nil && p.PopularityWeight == 0 && !cache.trial {
		a.cacheLists(inter)
	}
	return a
}

// trainALS adds the iALS part of a blend: item factors, and each training reader's factors with
// the hash of the history they were solved for.
func (a *Artifact) trainALS(m *Matrix, readers map[string]int32, inter []Interaction, p ModelParams, cache *alsCache) {
	if cache.als == nil || cache.factors != p.Factors {
		ap := ALSDefaults
		ap.Factors = p.Factors
		als := TrainALS(m, ap, nil)
		cache.factors, cache.als, cache.x = p.Factors, als, als.x
		als.x = nil // the artifact keeps them by reader
	}
	a.ALS = cache.als
	a.ReaderFactors = cache.x
	a.ReaderRows = make(map[uint64]int32, len(readers))
	for r, row := range readers {
		a.ReaderRows[readerHash(r)] = row
	}
	a.ReaderHistory = make([]uint64, len(readers))
	for _, it := range inter {
		if row, ok := readers[it.Reader]; ok {
			a.ReaderHistory[row] ^= historyHash(it)
		}
	}
}

func readerHash(reader string) uint64 { return fnv1a(fnvOffset, reader) }

// historyHash is one interaction's share of its reader's history hash; XOR over the history makes
// it independent of order.
func historyHash(it Interaction) uint64 {
	h := fnv1a(fnvOffset, it.Book)
	w := math.Float32bits(it.Weight)
	for range 4 { // the weight's bytes, little-endian
		h = (h ^ uint64(w&0xff)) * fnvPrime
		w >>= 8
	}
	return h
}

// FNV-1a, written out so that hashing on the request path allocates nothing.
const fnvOffset, fnvPrime = 14695981039346656037, 1099511628211

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}

// trainedRow finds the reader of history among the training readers, and reports whether their
// history is the one trained on, so that their trained factors and cached candidates hold.
func (a *Artifact) trainedRow(history []Interaction) (int, bool) {
	if len(history) == 0 {
		return 0, false
	}
	var sum uint64
	for _, h := range history {
		sum ^= historyHash(h)
	}
	row, ok := a.ReaderRows[readerHash(history[0].Reader)]
	return int(row), ok && a.ReaderHistory[row] == sum
}

// readerFactors are the reader's iALS factors: the trained ones when their history is the one
// trained on, else folded in from it.
func (a *Artifact) readerFactors(history []Interaction) []float32 {
	if row, trained := a.trainedRow(history); trained {
		f := a.ALS.P.Factors
		return a.ReaderFactors[row*f : (row+1)*f]
	}
	items, vals := make([]int32, 0, len(history)), make([]float32, 0, len(history))
	for _, h := range history {
		if i, ok := a.index[h.Book]; ok && h.Weight > 0 {
			items, vals = append(items, i), append(vals, h.Weight)
		}
	}
	return a.ALS.foldIn(items, vals)
}

// Encode writes the artifact.
func (a *Artifact) Encode(w io.Writer) error { return gob.NewEncoder(w).Encode(a) }

// DecodeArtifact reads an artifact written by Encode.
func DecodeArtifact(r io.Reader) (*Artifact, error) {
	var a Artifact
	if err := gob.NewDecoder(r).Decode(&a); err != nil {
		return nil, err
	}
	a.index = make(map[string]int32, len(a.Books))
	for i, b := range a.Books {
		a.index[b] = int32(i)
	}
	if a.ALS != nil {
		a.ALS.gram = gramian(a.ALS.Y, a.ALS.P.Factors)
	}
	return &a, nil
}

// Rec is one recommended book. Because is the book in the reader's history that contributed
// most, empty when the book comes from popularity.
type Rec struct {
	Book    string
	Score   float32
	Because string
}

type scratch struct {
	cand     *topK
	dots     []float32
	acc      []float32
	best     []float32
	because  []int32
	touched  []int32
	excluded []bool  // by book index: books the request leaves out
	excludes []int32 // the indices set in excluded, to clear them after
	top      *topK
	history  []weighted
}

// weighted is a history book, by index, and its weight.
type weighted struct {
	book   int32
	weight float32
}

// Recommend ranks books for a reader's history by their neighbour scores, plus the popularity
// prior when the parameters ask for one, leaving out the books in exclude. Without a prior the
// list is shorter than n when the history reaches fewer books.
func (a *Artifact) Recommend(history []Interaction, exclude []string, n int) []Rec {
	s, _ := a.pool.Get().(*scratch)
	if s == nil || len(s.acc) != len(a.Books) {
		s = a.newScratch()
	}
	defer a.pool.Put(s)
	// Excluded books become marks by index: a request then asks about a reached book with one
	// array read, not a lookup by its id (that lookup was a tenth of a served request).
	for _, b := range exclude {
		if j, ok := a.index[b]; ok {
			s.exclude(j)
		}
	}
	var idx []int32
	var score []float32
	var because []int32
	if row, ok := a.cachedList(s, history, n); ok {
		k := row * blendCandidates
		m := k
		for m < k+n && a.ReaderLists[m] >= 0 {
			m++
		}
		idx, score, because = a.ReaderLists[k:m], a.ReaderScores[k:m], a.ReaderBecause[k:m]
	} else {
		idx, score = a.rank(s, history, n)
		because = make([]int32, len(idx))
		for k, j := range idx {
			because[k] = -1
			if s.acc[j] > 0 {
				because[k] = s.because[j]
			}
		}
	}
	out := make([]Rec, 0, n)
	for k, j := range idx {
		r := Rec{Book: a.Books[j], Score: score[k]}
		if because[k] >= 0 {
			r.Because = a.Books[because[k]]
		}
		out = append(out, r)
	}
	s.reset()
	return out
}

// cachedList reports whether the reader of history has a list made at training (cacheLists)
// that is the one rank would make for this request, and its row. It is when their history is the
// one trained on, the request leaves out every history book, as training did, and none of the
// list's books besides: books left out that the list does not hold cannot change it.
func (a *Artifact) cachedList(s *scratch, history []Interaction, n int) (int, bool) {
	if a.ReaderLists == nil || n > blendCandidates {
		return 0, false
	}
	row, trained := a.trainedRow(history)
	if !trained {
		return 0, false
	}
	for _, h := range history {
		if j, ok := a.index[h.Book]; ok && !s.excluded[j] {
			return 0, false
		}
	}
	for _, j := range a.ReaderLists[row*blendCandidates : (row+1)*blendCandidates] {
		if j >= 0 && s.excluded[j] {
			return 0, false
		}
	}
	return row, true
}

// rank scores the books for history into s and returns the best n that s does not exclude, best
// first, with their scores.
func (a *Artifact) rank(s *scratch, history []Interaction, n int) ([]int32, []float32) {
	s.top = newTopK(n)
	var top float32 // the highest neighbour score
	if a.Neighbors != nil {
		top = a.accumulate(s, history)
		if a.ALS != nil && top > 0 {
			a.blendALS(s, history, top)
			top = 1
		}
	}
	if prior := a.prior(len(history)); prior > 0 {
		// Every book gets a score: neighbour scores scaled to at most 1, plus the prior.
		scale := float32(0)
		if top > 0 {
			scale = 1 / top
		}
		for j := range a.Books {
			v := max(s.acc[j], 0)*scale + prior*a.Popularity[j]
			if v > 0 && !s.excluded[j] && s.top.accepts(int32(j), v) {
				s.top.push(int32(j), v)
			}
		}
	} else {
		for _, j := range s.touched {
			if s.acc[j] > 0 && !s.excluded[j] && s.top.accepts(j, s.acc[j]) {
				s.top.push(j, s.acc[j])
			}
		}
	}
	return s.top.sorted()
}

// blendCandidates is how many of the books the neighbours reach, best first, iALS rescores. The
// final 20 come from the head of that order, and scoring 100 instead of every reached book (often
// a thousand or more) keeps a request to a few tens of microseconds.
const blendCandidates = 100

// blendALS replaces the neighbour scores of the blendCandidates best reached books (those not
// excluded) with the blend of it and the book's iALS score, each scaled to its maximum over
// them, and drops the other reached books.
func (a *Artifact) blendALS(s *scratch, history []Interaction, top float32) {
	idx, acc := a.candidates(s)
	x := a.readerFactors(history)
	f := a.ALS.P.Factors
	if cap(s.dots) < len(idx) {
		s.dots = make([]float32, len(idx))
	}
	dots := s.dots[:len(idx)]
	var best float32
	for k, j := range idx {
		dots[k] = dot(a.ALS.Y[int(j)*f:int(j+1)*f], x)
		best = max(best, dots[k])
	}
	for _, j := range s.touched {
		s.acc[j] = 0
	}
	wn, wa := float32(1-a.Params.ALSWeight), float32(a.Params.ALSWeight)
	for k, j := range idx {
		v := wn * acc[k] / top
		if best > 0 {
			v += wa * dots[k] / best
		}
		// Scores stay positive so that the list keeps every candidate, as without iALS.
		s.acc[j] = max(v, 1e-9)
	}
}

// cacheLists makes, for every training reader, the list Recommend would make from their trained
// history (ReaderLists), so that serving a reader whose history is unchanged costs no scoring.
// inter is sorted by reader. Only a blend without a popularity prior keeps lists: its list is at
// most blendCandidates long, where a prior scores every book.
func (a *Artifact) cacheLists(inter []Interaction) {
	rows := len(a.ReaderHistory)
	a.ReaderLists = make([]int32, rows*blendCandidates)
	for i := range a.ReaderLists {
		a.ReaderLists[i] = -1
	}
	a.ReaderScores = make([]float32, rows*blendCandidates)
	a.ReaderBecause = make([]int32, rows*blendCandidates)
	var spans [][]Interaction // each reader's interactions
	for i := 0; i < len(inter); {
		j := i
		for j < len(inter) && inter[j].Reader == inter[i].Reader {
			j++
		}
		spans = append(spans, inter[i:j])
		i = j
	}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s := a.newScratch()
			for i := w; i < len(spans); i += workers {
				history := spans[i]
				row, ok := a.trainedRow(history)
				if !ok {
					continue // a reader with no liked book has no factors
				}
				for _, h := range history {
					if j, ok := a.index[h.Book]; ok {
						s.exclude(j)
					}
				}
				idx, score := a.rank(s, history, blendCandidates)
				at := row * blendCandidates
				for k, j := range idx {
					a.ReaderLists[at+k], a.ReaderScores[at+k], a.ReaderBecause[at+k] = j, score[k], s.because[j]
				}
				s.reset()
			}
		})
	}
	wg.Wait()
}

// accumulate adds each history book's neighbours, weighted, into s and returns the highest score.
// The history is taken in the order of its books' indices, so that the float sums, and so the
// list, do not depend on the order the caller holds it in (state, training, evaluation).
func (a *Artifact) accumulate(s *scratch, history []Interaction) (top float32) {
	s.history = s.history[:0]
	for _, h := range history {
		if i, ok := a.index[h.Book]; ok {
			s.history = append(s.history, weighted{i, h.Weight})
		}
	}
	slices.SortFunc(s.history, func(x, y weighted) int {
		return cmp.Or(cmp.Compare(x.book, y.book), cmp.Compare(x.weight, y.weight))
	})
	for _, h := range s.history {
		i := h.book
		nb, sim := a.Neighbors.Similar(int(i))
		for k, j := range nb {
			c := h.weight * sim[k]
			if s.acc[j] == 0 && s.best[j] == 0 {
				s.touched = append(s.touched, j)
				s.best[j] = -1
			}
			s.acc[j] += c
			if c > s.best[j] {
				s.best[j], s.because[j] = c, i
			}
		}
	}
	for _, j := range s.touched {
		top = max(top, s.acc[j])
	}
	return top
}

// reset clears what accumulate wrote, for the scratch's next use.
func (a *Artifact) newScratch() *scratch {
	n := len(a.Books)
	return &scratch{acc: make([]float32, n), best: make([]float32, n), because: make([]int32, n), excluded: make([]bool, n)}
}

// exclude leaves book j out of the request's lists.
func (s *scratch) exclude(j int32) {
	if !s.excluded[j] {
		s.excluded[j] = true
		s.excludes = append(s.excludes, j)
	}
}

func (s *scratch) reset() {
	for _, j := range s.touched {
		s.acc[j], s.best[j] = 0, 0
	}
	s.touched = s.touched[:0]
	for _, j := range s.excludes {
		s.excluded[j] = false
	}
	s.excludes = s.excludes[:0]
}

// candidates are the blendCandidates reached books with the highest neighbour scores that are not
// excluded, best first, and their scores.
func (a *Artifact) candidates(s *scratch) ([]int32, []float32) {
	if s.cand == nil {
		s.cand = newTopK(blendCandidates)
	}
	s.cand.reset()
	for _, j := range s.touched {
		if s.acc[j] > 0 && !s.excluded[j] && s.cand.accepts(j, s.acc[j]) {
			s.cand.push(j, s.acc[j])
		}
	}
	return s.cand.sorted()
}

// prior is the weight of a book's popularity (scaled to at most 1) in the score of a reader with
// history books: all of it for a popularity model, PopularityWeight/(1+history) otherwise.
func (a *Artifact) prior(history int) float32 {
	a.maxPopOnce.Do(func() {
		for _, p := range a.Popularity {
			a.maxPop = max(a.maxPop, p)
		}
	})
	if a.maxPop == 0 {
		return 0
	}
	if a.Neighbors == nil {
		return 1 / a.maxPop
	}
	return float32(a.Params.PopularityWeight) / float32(1+history) / a.maxPop
}

// Popular lists the books most read in the training data, best first (at most 1000). The list is
// the model's own, made once, since requests that fill up with popular books ask for it every
// time: callers must not change it.
func (a *Artifact) Popular() []string {
	idx := a.popular()
	a.popBooksOnce.Do(func() {
		a.popBooks = make([]string, len(idx))
		for k, j := range idx {
			a.popBooks[k] = a.Books[j]
		}
	})
	return a.popBooks
}

// Similar lists the books most similar to book ("readers also enjoyed").
func (a *Artifact) Similar(book string, n int) ([]Rec, bool) {
	i, ok := a.index[book]
	if !ok || a.Neighbors == nil {
		return nil, false
	}
	nb, sim := a.Neighbors.Similar(int(i))
	out := make([]Rec, 0, min(n, len(nb)))
	for k := 0; k < len(nb) && k < n; k++ {
		out = append(out, Rec{Book: a.Books[nb[k]], Score: sim[k], Because: book})
	}
	return out, true
}

// popular is the artifact's books by training popularity (the first 1000), computed once.
func (a *Artifact) popular() []int32 {
	a.popOnce.Do(func() {
		order := make([]int32, len(a.Books))
		for i := range order {
			order[i] = int32(i)
		}
		sort.SliceStable(order, func(x, y int) bool { return a.Popularity[order[x]] > a.Popularity[order[y]] })
		a.pop = order[:min(len(order), 1000)]
	})
	return a.pop
}
