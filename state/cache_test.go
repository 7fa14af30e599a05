package state_test

import (
	"fmt"
	"testing"

	"github.com/dogear-dev/dogear/state"
)

// counting is a Reader that counts the Gets that reach the store.
type counting struct {
	state.Reader
	gets int
}

func (c *counting) Get(key []byte) ([]byte, bool, error) {
	c.gets++
	return c.Reader.Get(key)
}

func TestCacheServesCommittedWritesWithoutTheStore(t *testing.T) {
	s, err := state.OpenPebble(t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := &counting{Reader: s}
	c := state.NewCache(base, 1<<20)
	commit := func(w *state.Writes) {
		t.Helper()
		if err := s.Commit(0, 1, w); err != nil {
			t.Fatal(err)
		}
		c.Apply(w)
	}
	get := func(k string) (string, bool) {
		t.Helper()
		v, ok, err := c.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		return string(v), ok
	}

	if _, ok := get("a"); ok || base.gets != 1 {
		t.Fatalf("a missing key: found %v after %d store reads", ok, base.gets)
	}
	if _, ok := get("a"); ok || base.gets != 1 {
		t.Fatalf("a missing key read twice: found %v after %d store reads, want 1", ok, base.gets)
	}
	var w state.Writes
	w.Put([]byte("a"), []byte("1"))
	w.Put([]byte("b"), []byte("2"))
	commit(&w)
	w.Reset()
	w.Put([]byte("a"), []byte("x")) // Apply copies: reusing w's buffers later must not show
	if v, ok := get("a"); !ok || v != "1" || base.gets != 1 {
		t.Fatalf("a after commit: %q %v after %d store reads", v, ok, base.gets)
	}
	w.Reset()
	w.Delete([]byte("b"))
	commit(&w)
	if _, ok := get("b"); ok || base.gets != 1 {
		t.Fatalf("b after its delete: found %v after %d store reads", ok, base.gets)
	}
}

// Past its budget the cache drops what was not read again, and answers for dropped keys come
// from the store, unchanged.
func TestCacheStaysWithinItsBudget(t *testing.T) {
	s, err := state.OpenPebble(t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := &counting{Reader: s}
	c := state.NewCache(base, 64<<10)
	var w state.Writes
	for i := range 10_000 {
		w.Put(fmt.Appendf(nil, "k%05d", i), fmt.Appendf(nil, "v%d", i))
	}
	if err := s.Commit(0, 1, &w); err != nil {
		t.Fatal(err)
	}
	c.Apply(&w)
	for range 3 {
		for i := range 10_000 {
			v, ok, err := c.Get(fmt.Appendf(nil, "k%05d", i))
			if err != nil || !ok || string(v) != fmt.Sprintf("v%d", i) {
				t.Fatalf("k%05d: %q %v %v", i, v, ok, err)
			}
			if i%100 == 0 { // a hot key, read well within every generation
				if _, _, err := c.Get([]byte("k00007")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if base.gets < 20_000 {
		t.Fatalf("%d store reads for 30,000 cold reads of 10,000 keys over a 64 KiB cache: it kept more than its budget", base.gets)
	}
	before := base.gets
	for range 100 {
		c.Get([]byte("k00007"))
	}
	if base.gets != before {
		t.Fatalf("a hot key was read from the store %d times", base.gets-before)
	}
}
