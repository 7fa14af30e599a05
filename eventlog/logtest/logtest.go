// Package logtest is the conformance suite every eventlog.Log implementation must pass:
// per-partition order, dense offsets, durability across reopen, and resumption from an offset.
package logtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/eventlog"
)

// Opener opens a Log over the same storage each time it is called; the suite closes what it opens.
type Opener func(t *testing.T) eventlog.Log

// Options says what an implementation guarantees beyond the common contract.
type Options struct {
	// DedupOnAppend: Append recognises ids it stored before (the embedded log). Kafka cannot.
	DedupOnAppend bool
}

// Run runs the suite. newStorage returns an Opener over fresh, empty storage.
func Run(t *testing.T, newStorage func(t *testing.T) Opener, opts Options) {
	t.Run("OrderPerPartition", func(t *testing.T) { orderPerPartition(t, newStorage(t)) })
	t.Run("ConcurrentAppendsDense", func(t *testing.T) { concurrentAppends(t, newStorage(t)) })
	t.Run("DurableAcrossReopen", func(t *testing.T) { durable(t, newStorage(t), opts) })
	t.Run("ResumeFromOffset", func(t *testing.T) { resume(t, newStorage(t)) })
	t.Run("ChangedSignalsAppend", func(t *testing.T) { changed(t, newStorage(t)) })
}

func entry(reader string, i int) eventlog.Entry {
	id := fmt.Sprintf("%s-%06d", reader, i)
	return eventlog.Entry{ID: id, Key: reader, Value: []byte(`{"id":"` + id + `"}`)}
}

// readAll reads a partition from an offset to its end.
func readAll(t *testing.T, l eventlog.Log, p int, from int64) []eventlog.Record {
	t.Helper()
	ctx := context.Background()
	end, err := l.End(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []eventlog.Record
	for deadline := time.Now().Add(10 * time.Second); from < end; {
		recs, err := l.Read(ctx, p, from, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("partition %d: nothing readable at %d though end is %d", p, from, end)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, r := range recs {
			if r.Offset != from || r.Partition != p {
				t.Fatalf("partition %d: want offset %d, got partition %d offset %d", p, from, r.Partition, r.Offset)
			}
			from++
			out = append(out, r)
		}
	}
	return out
}

func orderPerPartition(t *testing.T, open Opener) {
	l := open(t)
	defer l.Close()
	ctx := context.Background()
	readers := []string{"ann", "bob", "cid", "dee", "eve"}
	for i := 0; i < 40; i++ {
		var batch []eventlog.Entry
		for _, r := range readers {
			batch = append(batch, entry(r, i))
		}
		if _, err := l.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	perReader := map[string][]string{}
	total := 0
	for p := 0; p < l.Partitions(); p++ {
		for _, rec := range readAll(t, l, p, 0) {
			v := string(rec.Value)
			reader := v[7:10]
			if eventlog.PartitionFor(reader, l.Partitions()) != p {
				t.Fatalf("%s stored in partition %d, want %d", reader, p, eventlog.PartitionFor(reader, l.Partitions()))
			}
			perReader[reader] = append(perReader[reader], v)
			total++
		}
	}
	if total != 200 {
		t.Fatalf("read %d records, appended 200", total)
	}
	for _, r := range readers {
		for i, v := range perReader[r] {
			if want := string(entry(r, i).Value); v != want {
				t.Fatalf("reader %s record %d = %s, want %s (order lost)", r, i, v, want)
			}
		}
	}
}

func concurrentAppends(t *testing.T, open Opener) {
	l := open(t)
	defer l.Close()
	const writers, per = 8, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := l.Append(context.Background(), []eventlog.Entry{entry(fmt.Sprintf("w%02d", w), i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	seen := map[string]bool{}
	for p := 0; p < l.Partitions(); p++ {
		for _, rec := range readAll(t, l, p, 0) {
			if seen[string(rec.Value)] {
				t.Fatalf("record %s stored twice", rec.Value)
			}
			seen[string(rec.Value)] = true
		}
	}
	if len(seen) != writers*per {
		t.Fatalf("%d records after %d concurrent appends", len(seen), writers*per)
	}
}

func durable(t *testing.T, open Opener, opts Options) {
	l := open(t)
	batch := []eventlog.Entry{entry("ann", 0), entry("bob", 0), entry("ann", 1)}
	dup, err := l.Append(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range dup {
		if d {
			t.Fatalf("entry %d of a fresh append reported duplicate", i)
		}
	}
	ends := make([]int64, l.Partitions())
	for p := range ends {
		ends[p], _ = l.End(p)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t)
	defer l.Close()
	total := 0
	for p := range ends {
		end, _ := l.End(p)
		if end != ends[p] {
			t.Fatalf("partition %d end %d after reopen, was %d", p, end, ends[p])
		}
		total += len(readAll(t, l, p, 0))
	}
	if total != 3 {
		t.Fatalf("%d records after reopen, want 3", total)
	}
	if opts.DedupOnAppend {
		dup, err := l.Append(context.Background(), []eventlog.Entry{entry("ann", 1), entry("cid", 0), entry("cid", 0)})
		if err != nil {
			t.Fatal(err)
		}
		if !dup[0] || dup[1] || !dup[2] {
			t.Fatalf("dup = %v, want [true false true] (known id after reopen; new; repeated in batch)", dup)
		}
	}
}

func resume(t *testing.T, open Opener) {
	l := open(t)
	defer l.Close()
	var batch []eventlog.Entry
	for i := 0; i < 30; i++ {
		batch = append(batch, entry("ann", i))
	}
	if _, err := l.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	p := eventlog.PartitionFor("ann", l.Partitions())
	all := readAll(t, l, p, 0)
	rest := readAll(t, l, p, 17)
	if len(rest) != len(all)-17 || string(rest[0].Value) != string(all[17].Value) {
		t.Fatalf("resume at 17: got %d records starting %s", len(rest), rest[0].Value)
	}
	end, _ := l.End(p)
	recs, err := l.Read(context.Background(), p, end, 10)
	if err != nil || len(recs) != 0 {
		t.Fatalf("read at end: %d records, %v", len(recs), err)
	}
}

func changed(t *testing.T, open Opener) {
	l := open(t)
	defer l.Close()
	ch := l.Changed()
	go func() {
		time.Sleep(20 * time.Millisecond)
		l.Append(context.Background(), []eventlog.Entry{entry("ann", 0)})
	}()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed channel not signalled after an append")
	}
}
