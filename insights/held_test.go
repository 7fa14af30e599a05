package insights

import (
	"runtime"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/state"
)

// BenchmarkHeldRecordBytes measures the heap a held record takes, the figure heldPerGeneration's
// bound in bytes rests on: it folds generated events in batches of 2,000 into a new Folder, then
// compares the heap with the Folder and without it.
func BenchmarkHeldRecordBytes(b *testing.B) {
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := loadgen.New(loadgen.Config{Readers: 100_000, Books: 20_000, Seed: 3, Start: end.Add(-60 * 24 * time.Hour), End: end}).Batch(300_000)
	s, err := state.OpenPebble(b.TempDir(), 8<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var w state.Writes
	var perRecord float64
	for b.Loop() {
		f := NewFolder(state.Overlay{Base: s, Writes: &w}, 0)
		for i := range events {
			if i%2000 == 0 {
				f.Flush()
				if err := s.Commit(0, int64(i), &w); err != nil {
					b.Fatal(err)
				}
				w.Reset()
			}
			if err := f.ApplyUnique(&events[i]); err != nil {
				b.Fatal(err)
			}
		}
		f.Flush()
		w.Reset()
		n := len(f.current) + len(f.older)
		holding := heapBytes()
		runtime.KeepAlive(f)
		perRecord = float64(holding-heapBytes()) / float64(n)
	}
	b.ReportMetric(perRecord, "bytes/record")
}

func heapBytes() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
