// Package keystest is the conformance suite every shred.Keys implementation must pass: one key
// per reader, agreed on by racing processes, replaced while erasing, gone once deleted.
package keystest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/dogear-dev/dogear/shred"
)

// Run runs the suite. open returns a store over the same storage each time it is called (as
// several processes would open it).
func Run(t *testing.T, open func(t *testing.T) shred.Keys) {
	ctx := context.Background()
	t.Run("OneKeyPerReader", func(t *testing.T) {
		a, b := open(t), open(t)
		defer a.Close()
		defer b.Close()
		keys := make([]shred.Key, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				store := a
				if i%2 == 1 {
					store = b
				}
				k, err := store.Active(ctx, "ann")
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			}()
		}
		wg.Wait()
		for _, k := range keys[1:] {
			if k.ID != keys[0].ID || !bytes.Equal(k.Secret, keys[0].Secret) {
				t.Fatalf("racing processes made different keys for one reader: %s and %s", keys[0].ID, k.ID)
			}
		}
		if got, err := b.Get(ctx, keys[0].ID); err != nil || !bytes.Equal(got.Secret, keys[0].Secret) || len(got.Secret) != 32 {
			t.Fatalf("Get by id: %+v %v", got, err)
		}
		if other, _ := a.Active(ctx, "bob"); other.ID == keys[0].ID {
			t.Fatal("two readers share a key")
		}
	})
	t.Run("ErasureReplacesThenDeletes", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		if _, err := s.StartErasure(ctx, "nobody"); !errors.Is(err, shred.ErrNoKey) {
			t.Fatalf("erasing a reader without a key: %v", err)
		}
		old, _ := s.Active(ctx, "cy")
		erasing, err := s.StartErasure(ctx, "cy")
		if err != nil || erasing.ID != old.ID || !erasing.Erasing {
			t.Fatalf("StartErasure: %+v %v", erasing, err)
		}
		if k, _ := s.Get(ctx, old.ID); !k.Erasing {
			t.Fatal("the key is not marked erasing")
		}
		fresh, err := s.Active(ctx, "cy")
		if err != nil || fresh.ID == old.ID {
			t.Fatalf("new events during an erasure must get a new key: %+v %v", fresh, err)
		}
		if err := s.Delete(ctx, old.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, old.ID); !errors.Is(err, shred.ErrNoKey) {
			t.Fatalf("a deleted key is still readable: %v", err)
		}
		if k, err := s.Lookup(ctx, "cy"); err != nil || k.ID != fresh.ID {
			t.Fatalf("deleting the old key must keep the new one: %+v %v", k, err)
		}
		if err := s.Delete(ctx, fresh.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(ctx, "cy"); !errors.Is(err, shred.ErrNoKey) {
			t.Fatalf("a reader whose key was deleted still has one: %v", err)
		}
		if err := s.Delete(ctx, fresh.ID); err != nil {
			t.Fatalf("deleting twice: %v", err)
		}
	})
}
