package recommend

import (
	"encoding/gob"
	"io"
	"sort"
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

// Artifact is a trained, servable model: RP3beta item neighbours over the books it was trained
// on, plus their popularity for filling short lists. It is what the registry stores.
type Artifact struct {
	Version    int
	Created    time.Time
	Params     NeighborParams
	Books      []string // index -> book id
	Neighbors  *Neighbors
	Popularity []float32
	Readers    int
	Events     int

	index   map[string]int32
	pool    sync.Pool
	popOnce sync.Once
	pop     []int32
}

// TrainArtifact trains a servable model from interactions (negative weights are left out of
// training: they only steer a reader's own scores).
func TrainArtifact(inter []Interaction, p NeighborParams) *Artifact {
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
	a.Neighbors = TrainNeighbors(m, p, nil)
	a.Popularity = TrainPopularity(m).Count
	a.Readers, a.Events = len(readers), len(entries)
	a.index = idx
	return a
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
	acc     []float32
	best    []float32
	because []int32
	touched []int32
	top     *topK
}

// Recommend ranks books by their neighbour scores for a reader's history, skipping books for
// which exclude is true. The list is shorter than n when the history reaches fewer books.
func (a *Artifact) Recommend(history []Interaction, exclude func(string) bool, n int) []Rec {
	s, _ := a.pool.Get().(*scratch)
	if s == nil || len(s.acc) != len(a.Books) {
		s = &scratch{acc: make([]float32, len(a.Books)), best: make([]float32, len(a.Books)), because: make([]int32, len(a.Books))}
	}
	defer a.pool.Put(s)
	s.top = newTopK(n)
	for _, h := range history {
		i, ok := a.index[h.Book]
		if !ok {
			continue
		}
		nb, sim := a.Neighbors.Similar(int(i))
		for k, j := range nb {
			c := h.Weight * sim[k]
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
		// exclude is a map lookup: ask it only about books that would make the list.
		if s.acc[j] > 0 && s.top.accepts(j, s.acc[j]) && !exclude(a.Books[j]) {
			s.top.push(j, s.acc[j])
		}
	}
	idx, score := s.top.sorted()
	out := make([]Rec, 0, n)
	for k, j := range idx {
		out = append(out, Rec{Book: a.Books[j], Score: score[k], Because: a.Books[s.because[j]]})
	}
	for _, j := range s.touched {
		s.acc[j], s.best[j] = 0, 0
	}
	s.touched = s.touched[:0]
	return out
}

// Popular lists the books most read in the training data, best first (at most 1000).
func (a *Artifact) Popular() []string {
	idx := a.popular()
	out := make([]string, len(idx))
	for k, j := range idx {
		out[k] = a.Books[j]
	}
	return out
}

// Similar lists the books most similar to book ("readers also enjoyed").
func (a *Artifact) Similar(book string, n int) ([]Rec, bool) {
	i, ok := a.index[book]
	if !ok {
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
