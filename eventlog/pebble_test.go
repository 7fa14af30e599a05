package eventlog_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/eventlog/logtest"
)

func TestPebbleConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Opener {
		dir := t.TempDir()
		return func(t *testing.T) eventlog.Log {
			l, err := eventlog.OpenPebble(dir, 4, 8<<20)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}, logtest.Options{DedupOnAppend: true})
}

func TestPebblePartitionCountIsFixed(t *testing.T) {
	dir := t.TempDir()
	l, err := eventlog.OpenPebble(dir, 4, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, err = eventlog.OpenPebble(dir, 8, 8<<20)
	if err == nil || !strings.Contains(err.Error(), "created with 4 partitions") {
		t.Fatalf("reopen with another count: %v", err)
	}
	l, err = eventlog.OpenPebble(dir, 0, 8<<20)
	if err != nil || l.Partitions() != 4 {
		t.Fatalf("reopen with 0 = stored count: %v", err)
	}
	l.Close()
}

// BenchmarkPebbleAppend measures durable appends of 1000-event batches from four concurrent
// writers, the shape of ingest under load, with ids in sequence (as dogear loadgen and imports
// make them) and at random (UUIDs, as most devices and Segment send them).
func BenchmarkPebbleAppend(b *testing.B) {
	for _, c := range []struct {
		name string
		id   func(n int64, rng *rand.Rand) string
	}{
		{"sequential-ids", func(n int64, _ *rand.Rand) string { return fmt.Sprintf("e%d", n) }},
		{"random-ids", func(_ int64, rng *rand.Rand) string { return fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			l, err := eventlog.OpenPebble(b.TempDir(), 16, 256<<20)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			value := []byte(strings.Repeat("x", 200))
			b.SetParallelism(4)
			var seq atomicCounter
			b.RunParallel(func(pb *testing.PB) {
				batch := make([]eventlog.Entry, 1000)
				for pb.Next() {
					n := seq.add(1000)
					rng := rand.New(rand.NewPCG(uint64(n), 1))
					for i := range batch {
						batch[i] = eventlog.Entry{ID: c.id(n+int64(i), rng), Key: fmt.Sprintf("r%d", i%97), Value: value}
					}
					if _, err := l.Append(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkPebbleOpen measures opening a log of 2M events, most of which is filling the id
// filter from the dedup index (eventlog/idfilter.go).
func BenchmarkPebbleOpen(b *testing.B) {
	dir := b.TempDir()
	l, err := eventlog.OpenPebble(dir, 16, 256<<20)
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 84)
	const events = 2_000_000
	for n := 0; n < events; n += 1000 {
		batch := make([]eventlog.Entry, 1000)
		for i := range batch {
			batch[i] = eventlog.Entry{ID: fmt.Sprintf("evt-%08d", n+i), Key: fmt.Sprintf("r%d", i%997), Value: value}
		}
		if _, err := l.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	for b.Loop() {
		l, err := eventlog.OpenPebble(dir, 0, 256<<20)
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/events, "ns/event")
}

// BenchmarkDiskFsync is the disk alone, for comparison with the log's fsync histogram
// (dogear_eventlog_fsync_seconds) under load: an append of a batch's stored size (1000 events of
// about 82 bytes) and an fsync, every 15 ms, about half the rate dogear bench reaches here.
//
//	go test ./eventlog -run '^$' -bench DiskFsync -benchtime 1000x
func BenchmarkDiskFsync(b *testing.B) {
	f, err := os.CreateTemp(b.TempDir(), "fsync-")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	batch := make([]byte, 82*1000)
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := f.Write(batch); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(15 * time.Millisecond)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}
