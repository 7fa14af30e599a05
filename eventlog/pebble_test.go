package eventlog_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

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

// BenchmarkPebbleAppend measures durable appends of 1000-event batches from 8 concurrent writers,
// the shape of ingest under load.
func BenchmarkPebbleAppend(b *testing.B) {
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
			for i := range batch {
				id := fmt.Sprintf("e%d", n+int64(i))
				batch[i] = eventlog.Entry{ID: id, Key: fmt.Sprintf("r%d", i%97), Value: value}
			}
			if _, err := l.Append(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
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
