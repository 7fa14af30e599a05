package insights

import (
	"fmt"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/state"
)

// BenchmarkBookQueries compares the aggregates with reading every reader's records, for one book
// read by more and more readers (each starts it, a third finish it, some highlight one of 50
// passages), over 16 partitions: the aggregates should cost the same at every size.
//
//	go test ./insights -run '^$' -bench BookQueries -benchtime 200x
func BenchmarkBookQueries(b *testing.B) {
	const parts = 16
	for _, readers := range []int{1_000, 10_000, 100_000} {
		s, err := state.OpenPebble(b.TempDir(), 64<<20)
		if err != nil {
			b.Fatal(err)
		}
		end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		writes := make([]state.Writes, parts)
		folders := make([]*Folder, parts)
		for p := range parts {
			folders[p] = NewFolder(state.Overlay{Base: s, Writes: &writes[p]}, p)
		}
		for r := range readers {
			reader := fmt.Sprintf("reader-%07d", r)
			p := r % parts
			at := end.Add(-time.Duration(r%(60*24)) * time.Hour)
			evs := []event.Event{{ID: reader + "-s", Type: event.Session, Reader: reader, Book: "the-book", Time: at, DurationMS: 600_000, Position: ptr(0.3)}}
			if r%3 == 0 {
				evs = append(evs, event.Event{ID: reader + "-f", Type: event.Finish, Reader: reader, Book: "the-book", Time: at.Add(time.Duration(r%97) * time.Hour)})
			}
			if r%5 == 0 {
				evs = append(evs, event.Event{ID: reader + "-h", Type: event.Highlight, Reader: reader, Book: "the-book", Time: at, Text: fmt.Sprintf("passage %d", r%50)})
			}
			for i := range evs {
				if _, err := folders[p].Apply(&evs[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
		for p := range parts {
			folders[p].Flush()
			if err := s.Commit(p, 1, &writes[p]); err != nil {
				b.Fatal(err)
			}
		}
		parted := make([]int, parts)
		for p := range parted {
			parted[p] = p
		}
		b.Run(fmt.Sprintf("readers=%d/book/aggregates", readers), func(b *testing.B) {
			for b.Loop() {
				if _, err := Book(s, "the-book", end); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("readers=%d/book/every-reader", readers), func(b *testing.B) {
			for b.Loop() {
				out := newBookStats("the-book", end)
				if _, err := bookFromReaders(s, "the-book", end, out); err != nil {
					b.Fatal(err)
				}
				if _, err := topPassages(s, "the-book", topPassagesShown); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("readers=%d/trending/rankings", readers), func(b *testing.B) {
			for b.Loop() {
				if _, err := bookRankings(s, parted).top(s, 10); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("readers=%d/trending/every-start", readers), func(b *testing.B) {
			for b.Loop() {
				if _, err := trendingFromStarts(s, end.Unix()/3600, 10); err != nil {
					b.Fatal(err)
				}
			}
		})
		s.Close()
	}
}

func ptr(v float64) *float64 { return &v }
