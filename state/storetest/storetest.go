// Package storetest is the conformance suite every state.Store implementation must pass:
// reads, ordered prefix scans, and state committed atomically with partition offsets.
package storetest

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/dogear-dev/dogear/state"
)

// Opener opens a Store over the same storage each time it is called.
type Opener func(t *testing.T) state.Store

// Run runs the suite. newStorage returns an Opener over fresh, empty storage.
func Run(t *testing.T, newStorage func(t *testing.T) Opener) {
	t.Run("GetPutDelete", func(t *testing.T) {
		s := newStorage(t)(t)
		defer s.Close()
		var w state.Writes
		w.Put([]byte("a"), []byte("1"))
		w.Put([]byte("b"), []byte("2"))
		w.Put([]byte("a"), []byte("3")) // later write wins
		mustCommit(t, s, 0, 5, &w)
		expect(t, s, "a", "3")
		expect(t, s, "b", "2")
		w.Reset()
		w.Delete([]byte("b"))
		mustCommit(t, s, 0, 6, &w)
		if _, ok, _ := s.Get([]byte("b")); ok {
			t.Fatal("deleted key still present")
		}
	})
	t.Run("ScanPrefixInOrder", func(t *testing.T) {
		s := newStorage(t)(t)
		defer s.Close()
		var w state.Writes
		for _, k := range []string{"r\x00b\x00z", "r\x00a\x00y", "r\x00b\x00a", "r\x00b", "q", "r\x01"} {
			w.Put([]byte(k), []byte(k))
		}
		mustCommit(t, s, 1, 1, &w)
		var got []string
		err := state.ScanPrefix(s, []byte("r\x00b"), func(k, v []byte) error {
			if !bytes.Equal(k, v) {
				t.Errorf("key %q has value %q", k, v)
			}
			got = append(got, string(k))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"r\x00b", "r\x00b\x00a", "r\x00b\x00z"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("scan r\\0b = %q, want %q", got, want)
		}
		n := 0
		state.ScanPrefix(s, []byte("r"), func(k, v []byte) error { n++; return state.ErrStop })
		if n != 1 {
			t.Fatalf("ErrStop did not stop the scan after %d calls", n)
		}
		got = nil
		s.Scan([]byte("r\x00a"), []byte("r\x00b\x00b"), func(k, v []byte) error { got = append(got, string(k)); return nil })
		if want := []string{"r\x00a\x00y", "r\x00b", "r\x00b\x00a"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("range scan = %q, want %q", got, want)
		}
		got = nil
		s.Scan([]byte("r\x01"), nil, func(k, v []byte) error { got = append(got, string(k)); return nil })
		if len(got) != 1 {
			t.Fatalf("open-ended scan = %q", got)
		}
	})
	t.Run("OffsetsDurableWithState", func(t *testing.T) {
		open := newStorage(t)
		s := open(t)
		for p := 0; p < 3; p++ {
			if off, err := s.Offset(p); err != nil || off != 0 {
				t.Fatalf("new store partition %d offset %d %v", p, off, err)
			}
		}
		var w state.Writes
		w.Put([]byte("k1"), []byte("v1"))
		mustCommit(t, s, 2, 42, &w)
		w.Reset()
		w.Put([]byte("k2"), []byte("v2"))
		mustCommit(t, s, 0, 7, &w)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t)
		defer s.Close()
		for p, want := range []int64{7, 0, 42} {
			if off, _ := s.Offset(p); off != want {
				t.Fatalf("partition %d offset %d after reopen, want %d", p, off, want)
			}
		}
		expect(t, s, "k1", "v1")
		expect(t, s, "k2", "v2")
	})
}

func mustCommit(t *testing.T, s state.Store, p int, off int64, w *state.Writes) {
	t.Helper()
	if err := s.Commit(p, off, w); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, s state.Store, k, v string) {
	t.Helper()
	got, ok, err := s.Get([]byte(k))
	if err != nil || !ok || string(got) != v {
		t.Fatalf("Get(%q) = %q %v %v, want %q", k, got, ok, err, v)
	}
}
