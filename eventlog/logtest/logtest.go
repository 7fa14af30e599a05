// Package logtest is the conformance suite every eventlog.Log implementation must pass:
// per-partition order, dense offsets, durability across reopen, and resumption from an offset.
package logtest

import (
	"context"
	"errors"
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
	// SharedByProcesses: several opens of one storage can be members of one group (Kafka), and
	// Claim splits the partitions among them. The embedded log has one process.
	SharedByProcesses bool
}

// Run runs the suite. newStorage returns an Opener over fresh, empty storage.
func Run(t *testing.T, newStorage func(t *testing.T) Opener, opts Options) {
	t.Run("OrderPerPartition", func(t *testing.T) { orderPerPartition(t, newStorage(t)) })
	t.Run("ConcurrentAppendsDense", func(t *testing.T) { concurrentAppends(t, newStorage(t)) })
	t.Run("DurableAcrossReopen", func(t *testing.T) { durable(t, newStorage(t), opts) })
	t.Run("ResumeFromOffset", func(t *testing.T) { resume(t, newStorage(t)) })
	t.Run("WaitReturnsOnAppend", func(t *testing.T) { waitForAppend(t, newStorage(t)) })
	t.Run("ClaimFoldsEveryPartition", func(t *testing.T) { claimAll(t, newStorage(t)) })
	t.Run("ClaimEndsOnAFailedFold", func(t *testing.T) { claimFails(t, newStorage(t)) })
	if opts.SharedByProcesses {
		t.Run("ClaimSplitsAndHandsOver", func(t *testing.T) { claimShared(t, newStorage(t)) })
	}
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

func waitForAppend(t *testing.T, open Opener) {
	l := open(t)
	defer l.Close()
	p := eventlog.PartitionFor("ann", l.Partitions())
	end, _ := l.End(p)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, p, end); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on an empty partition returned %v, want the context's deadline", err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		l.Append(context.Background(), []eventlog.Entry{entry("ann", 0)})
	}()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Wait(ctx, p, end); err != nil {
		t.Fatalf("Wait did not return after an append: %v", err)
	}
	if recs := readAll(t, l, p, end); len(recs) != 1 {
		t.Fatalf("after Wait: %d records, want 1", len(recs))
	}
}

// member claims partitions of l in group and records which it holds; a partition's fold holds it
// until its context ends.
type member struct {
	mu   sync.Mutex
	held map[int]bool
	// bad is set when the member got a partition one of others still held.
	others []*member
	bad    error
	done   chan error
	cancel context.CancelFunc
}

func claim(l eventlog.Log, group string, others ...*member) *member {
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{held: map[int]bool{}, done: make(chan error, 1), cancel: cancel, others: others}
	go func() {
		m.done <- l.Claim(ctx, group, func(ctx context.Context, p int) error {
			for _, o := range m.others {
				if o.holds(p) {
					m.mu.Lock()
					m.bad = fmt.Errorf("partition %d claimed while another member held it", p)
					m.mu.Unlock()
				}
			}
			m.set(p, true)
			<-ctx.Done()
			m.set(p, false)
			return ctx.Err()
		})
	}()
	return m
}

func (m *member) set(p int, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		m.held[p] = true
	} else {
		delete(m.held, p)
	}
}

func (m *member) holds(p int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[p]
}

func (m *member) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.held)
}

// stop ends the member's Claim and checks that it returned nil with every fold done.
func (m *member) stop(t *testing.T) {
	t.Helper()
	m.cancel()
	select {
	case err := <-m.done:
		if err != nil {
			t.Fatalf("Claim returned %v after its context ended", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Claim did not return after its context ended")
	}
	if n := m.count(); n != 0 {
		t.Fatalf("Claim returned with %d folds still running", n)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

func claimAll(t *testing.T, open Opener) {
	l := open(t)
	defer l.Close()
	m := claim(l, "folders")
	eventually(t, "one member did not get every partition", func() bool { return m.count() == l.Partitions() })
	m.stop(t)
}

func claimFails(t *testing.T, open Opener) {
	l := open(t)
	defer l.Close()
	boom := errors.New("state store gone")
	done := make(chan error, 1)
	go func() {
		done <- l.Claim(context.Background(), "failing", func(ctx context.Context, p int) error {
			if p == 0 {
				return boom
			}
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("Claim returned %v, want the fold's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a failed fold did not end Claim")
	}
}

// claimShared: two members split the partitions without overlap; when one leaves, the other
// takes all of them, each only after the leaver's fold of it returned.
func claimShared(t *testing.T, open Opener) {
	la, lb := open(t), open(t)
	defer la.Close()
	defer lb.Close()
	a := claim(la, "pair")
	eventually(t, "the first member did not get every partition", func() bool { return a.count() == la.Partitions() })
	b := claim(lb, "pair", a)
	eventually(t, "the partitions were not split between two members", func() bool {
		return a.count() > 0 && b.count() > 0 && a.count()+b.count() == la.Partitions()
	})
	for p := 0; p < la.Partitions(); p++ {
		if a.holds(p) && b.holds(p) {
			t.Fatalf("partition %d held by both members", p)
		}
	}
	a.stop(t)
	eventually(t, "the remaining member did not take over every partition", func() bool { return b.count() == lb.Partitions() })
	b.stop(t)
	if b.bad != nil {
		t.Fatal(b.bad)
	}
}
