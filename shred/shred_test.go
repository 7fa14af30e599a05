package shred_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/shred"
	"github.com/dogear-dev/dogear/shred/keystest"
)

func TestDirKeysConformance(t *testing.T) {
	keystest.Run(t, func(t *testing.T) shred.Keys {
		dir := filepath.Join(os.TempDir(), "dogear-keystest-"+strings.ReplaceAll(t.Name(), "/", "-"))
		t.Cleanup(func() { os.RemoveAll(dir) })
		k, err := shred.OpenDirKeys(dir)
		if err != nil {
			t.Fatal(err)
		}
		return k
	})
}

// TestCassandraKeysConformance runs the suite against a real Cassandra when
// DOGEAR_TEST_CASSANDRA=host:port names one (keyspace dogear with deploy/cassandra/schema.cql).
func TestCassandraKeysConformance(t *testing.T) {
	addr := os.Getenv("DOGEAR_TEST_CASSANDRA")
	if addr == "" {
		t.Skip("DOGEAR_TEST_CASSANDRA not set: no Cassandra server to test against")
	}
	keystest.Run(t, func(t *testing.T) shred.Keys {
		k, err := shred.OpenCassandraKeys([]string{addr}, "dogear")
		if err != nil {
			t.Fatal(err)
		}
		return k
	})
}

func TestSealOpenAndShred(t *testing.T) {
	ctx := context.Background()
	keys, _ := shred.OpenDirKeys(t.TempDir())
	s := shred.New(keys)
	plain := []byte(`{"id":"ann-e1","type":"highlight","reader":"ann","book":"b1","time":"2026-11-20T10:00:00Z","text":"a secret passage"}`)
	sealed, err := s.Seal(ctx, []eventlog.Entry{{ID: "ann-e1", Key: "ann", Value: plain}})
	if err != nil {
		t.Fatal(err)
	}
	e := sealed[0]
	for _, secret := range []string{"ann", "a secret passage"} {
		if bytes.Contains(e.Value, []byte(secret)) || strings.Contains(e.Key, secret) || strings.Contains(e.ID, secret) {
			t.Fatalf("the sealed entry shows %q: %+v", secret, e)
		}
	}
	if e.Partition(16) != eventlog.PartitionFor("ann", 16) {
		t.Fatal("sealing moved the event out of its reader's partition")
	}
	rec, err := s.Open(ctx, e.Value)
	if err != nil || !bytes.Equal(rec.Event, plain) || rec.KeyID != e.Key {
		t.Fatalf("open: %+v %v", rec, err)
	}
	if rec, _ := s.Open(ctx, plain); !bytes.Equal(rec.Event, plain) || rec.KeyID != "" {
		t.Fatalf("an unsealed value must open as it is: %+v", rec)
	}
	tampered := append([]byte(nil), e.Value...)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.Open(ctx, tampered); err == nil {
		t.Fatal("a tampered record opened")
	}

	marker, found, err := s.StartErasure(ctx, "ann")
	if err != nil || !found || bytes.Contains(marker.Value, []byte("ann")) {
		t.Fatalf("marker: %+v %v %v", marker, found, err)
	}
	if m, err := s.Open(ctx, marker.Value); err != nil || !m.Marker || m.Reader != "ann" || m.KeyID != e.Key {
		t.Fatalf("opening the marker: %+v %v", m, err)
	}
	// New events while the erasure runs get a new key and survive it.
	after, _ := s.Seal(ctx, []eventlog.Entry{{ID: "ann-e2", Key: "ann", Value: plain}})
	if after[0].Key == e.Key {
		t.Fatal("an event after the erasure began was sealed with the erased key")
	}
	if err := s.Shred(ctx, e.Key); err != nil {
		t.Fatal(err)
	}
	// Another process that cached nothing sees the same.
	other := shred.New(keys)
	for _, sh := range []*shred.Shredder{s, other} {
		if rec, err := sh.Open(ctx, e.Value); err != nil || !rec.Erased || rec.Event != nil {
			t.Fatalf("a record sealed with a deleted key: %+v %v", rec, err)
		}
		if rec, err := sh.Open(ctx, after[0].Value); err != nil || !bytes.Equal(rec.Event, plain) {
			t.Fatalf("the event after the erasure: %+v %v", rec, err)
		}
	}
}

// Cost per event of sealing (ingest) and opening (processors), on the stored form of a typical
// event: go test ./shred -bench . -run XXX
func BenchmarkSeal(b *testing.B) {
	keys, _ := shred.OpenDirKeys(b.TempDir())
	s := shred.New(keys)
	s.CacheFor = time.Hour
	ctx := context.Background()
	entries := []eventlog.Entry{{ID: "g1-12345", Key: "reader-000042", Value: benchEvent}}
	b.SetBytes(int64(len(benchEvent)))
	for b.Loop() {
		if _, err := s.Seal(ctx, entries); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	keys, _ := shred.OpenDirKeys(b.TempDir())
	s := shred.New(keys)
	ctx := context.Background()
	sealed, _ := s.Seal(ctx, []eventlog.Entry{{ID: "g1-12345", Key: "reader-000042", Value: benchEvent}})
	b.SetBytes(int64(len(benchEvent)))
	for b.Loop() {
		if _, err := s.Open(ctx, sealed[0].Value); err != nil {
			b.Fatal(err)
		}
	}
}

var benchEvent = []byte(`{"id":"g1-12345","type":"page","reader":"reader-000042","book":"book-00017","time":"2026-11-20T08:00:00.123Z","device":"kindle-paperwhite","page":42,"pages":300,"duration_ms":61000,"session":"reader-000042-s7"}`)
