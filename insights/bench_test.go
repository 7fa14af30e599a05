package insights_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/state"
)

// BenchmarkApply folds generated events into a real Pebble store in processor-sized batches:
// "unique" as a processor over the embedded log does (Folder.ApplyUnique), "lookup" as one over
// Kafka does, looking each id up first (Folder.Apply). Batches of 2,000 are a partition's
// largest; at full rate over 16 partitions a processor reads a few hundred records at a time.
func BenchmarkApply(b *testing.B) {
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	gen := loadgen.New(loadgen.Config{Readers: 5000, Books: 1000, Seed: 3, Start: end.Add(-60 * 24 * time.Hour), End: end})
	events := gen.Batch(200_000)
	for _, c := range []struct {
		name  string
		apply func(*insights.Folder, *event.Event) error
	}{
		{"unique", (*insights.Folder).ApplyUnique},
		{"lookup", func(f *insights.Folder, e *event.Event) error { _, err := f.Apply(e); return err }},
	} {
		for _, batch := range []int{2000, 200} {
			b.Run(fmt.Sprintf("%s/batch=%d", c.name, batch), func(b *testing.B) {
				s, err := state.OpenPebble(b.TempDir(), 64<<20)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var w state.Writes
				f := insights.NewFolder(state.Overlay{Base: s, Writes: &w}, 0)
				for i := 0; b.Loop(); i++ {
					if i%batch == 0 {
						f.Flush()
						if err := s.Commit(0, int64(i), &w); err != nil {
							b.Fatal(err)
						}
						w.Reset()
					}
					e := events[i%len(events)]
					e.ID += string(rune('a' + i/len(events)%26)) // fresh ids on every pass
					if err := c.apply(f, &e); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
