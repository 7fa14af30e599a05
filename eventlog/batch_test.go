package eventlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/dogear-dev/dogear/internal/pebbledb"
)

func readerEntry(reader string, i int) Entry {
	id := fmt.Sprintf("%s-%d", reader, i)
	return Entry{ID: id, Key: reader, Value: []byte(`{"id":"` + id + `","reader":"` + reader + `"}`)}
}

// readFrom reads partition p from offset from in reads of max records, until the end.
func readFrom(t *testing.T, l *Pebble, p int, from int64, max int) []Record {
	t.Helper()
	var all []Record
	for {
		recs, err := l.Read(context.Background(), p, from, max)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return all
		}
		if len(recs) > max {
			t.Fatalf("read of at most %d returned %d", max, len(recs))
		}
		all = append(all, recs...)
		from = recs[len(recs)-1].Offset + 1
	}
}

// One append larger than a stored batch spans several batch records; a read starting inside a
// batch, or reading a few records at a time, sees every offset once and in order.
func TestReadsAcrossAndInsideBatches(t *testing.T) {
	l, err := OpenPebble(t.TempDir(), 1, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var entries []Entry
	for i := range 3*maxBatchEvents + 7 {
		entries = append(entries, readerEntry("ann", i))
	}
	if _, err := l.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from int64
		max  int
	}{{0, 2000}, {0, 13}, {maxBatchEvents - 1, 2}, {maxBatchEvents + 100, 1000}, {int64(len(entries)) - 1, 5}} {
		recs := readFrom(t, l, 0, c.from, c.max)
		if want := len(entries) - int(c.from); len(recs) != want {
			t.Fatalf("from %d by %d: %d records, want %d", c.from, c.max, len(recs), want)
		}
		for i, r := range recs {
			if r.Offset != c.from+int64(i) || string(r.Value) != string(entries[r.Offset].Value) {
				t.Fatalf("from %d by %d: record %d is offset %d %s", c.from, c.max, i, r.Offset, r.Value)
			}
		}
	}
}

// Erasing a reader whose events share batches with others' removes exactly theirs: the others
// keep their offsets, the gaps are skipped, the erased ids can be stored again, and all of it
// holds after a reopen.
func TestEraseInsideBatches(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenPebble(dir, 1, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	for i := range maxBatchEvents + 50 {
		entries = append(entries, readerEntry([]string{"ann", "bob", "cid"}[i%3], i))
	}
	if _, err := l.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	n, err := l.EraseReader(context.Background(), "ann")
	if err != nil {
		t.Fatal(err)
	}
	if want := (len(entries) + 2) / 3; n != want {
		t.Fatalf("erased %d records, want %d", n, want)
	}
	check := func(l *Pebble) {
		t.Helper()
		recs := readFrom(t, l, 0, 0, 100)
		if len(recs) != len(entries)-n {
			t.Fatalf("%d records left, want %d", len(recs), len(entries)-n)
		}
		for _, r := range recs {
			if r.Offset%3 == 0 || string(r.Value) != string(entries[r.Offset].Value) {
				t.Fatalf("offset %d holds %s after erasing ann", r.Offset, r.Value)
			}
		}
		if end, _ := l.End(0); end != int64(len(entries)) {
			t.Fatalf("end %d after erasure, want %d: offsets must not be reused", end, len(entries))
		}
	}
	check(l)
	l.Close()
	if l, err = OpenPebble(dir, 0, 8<<20); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(l)
	dup, err := l.Append(context.Background(), []Entry{entries[0], entries[1]})
	if err != nil {
		t.Fatal(err)
	}
	if dup[0] || !dup[1] {
		t.Fatalf("dup = %v, want [false true]: an erased id is new again, a kept one is not", dup)
	}
}

// A log stored one event per key, as dogear did before batch records, is rewritten into
// batches when opened: same records, same offsets and ends, dedup and erasure still work.
func TestOpenRewritesPerEventKeys(t *testing.T) {
	dir := t.TempDir()
	db, err := pebbledb.Open(dir, 8<<20, pebbledb.DefaultMemTableBytes)
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	b.Set(partitionsKey, []byte("2"), nil)
	var want [2][]string
	next := [2]int64{}
	for i := range 1500 {
		e := readerEntry(fmt.Sprintf("r%d", i%7), i)
		p := e.Partition(2)
		k := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint16([]byte{'l'}, uint16(p)), uint64(next[p]))
		b.Set(k, e.Value, nil)
		b.Set(idKey(e.ID), binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint16(nil, uint16(p)), uint64(next[p])), nil)
		want[p] = append(want[p], string(e.Value))
		next[p]++
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for range 2 { // the second open finds nothing left to rewrite
		l, err := OpenPebble(dir, 0, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		for p := range 2 {
			if end, _ := l.End(p); end != next[p] {
				t.Fatalf("partition %d end %d, want %d", p, end, next[p])
			}
			recs := readFrom(t, l, p, 0, 300)
			if len(recs) != len(want[p]) {
				t.Fatalf("partition %d: %d records, want %d", p, len(recs), len(want[p]))
			}
			for i, r := range recs {
				if r.Offset != int64(i) || string(r.Value) != want[p][i] {
					t.Fatalf("partition %d record %d: offset %d %s", p, i, r.Offset, r.Value)
				}
			}
		}
		dup, err := l.Append(context.Background(), []Entry{readerEntry("r3", 3)})
		if err != nil || !dup[0] {
			t.Fatalf("an id stored before the rewrite: dup %v, err %v", dup, err)
		}
		l.Close()
	}
	l, err := OpenPebble(dir, 0, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n, err := l.EraseReader(context.Background(), "r3"); err != nil || n == 0 {
		t.Fatalf("erasing a reader of rewritten records: %d, %v", n, err)
	}
}
