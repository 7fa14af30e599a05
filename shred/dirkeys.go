package shred

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dogear-dev/dogear/internal/atomicfile"
)

// DirKeys keeps keys as files in a directory that every process of one host shares (the key
// store for --state partitioned://): keys/ID holds a key, readers/HASH names the reader's current
// key. Creating a reader's first key is a hard link, which fails for the second of two racing
// processes, so they agree. Across hosts, use CassandraKeys.
type DirKeys struct{ dir string }

type keyFile struct {
	Secret     []byte `json:"secret"`
	Erasing    bool   `json:"erasing,omitempty"`
	ReaderHash string `json:"reader"`
}

// OpenDirKeys opens (creating) the key directory.
func OpenDirKeys(dir string) (*DirKeys, error) {
	for _, sub := range []string{"keys", "readers"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	return &DirKeys{dir: dir}, nil
}

func (d *DirKeys) keyPath(id string) string      { return filepath.Join(d.dir, "keys", id) }
func (d *DirKeys) readerPath(hash string) string { return filepath.Join(d.dir, "readers", hash) }

// Get implements Keys.
func (d *DirKeys) Get(_ context.Context, id string) (Key, error) {
	if !validID(id) {
		return Key{}, ErrNoKey
	}
	b, err := os.ReadFile(d.keyPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return Key{}, ErrNoKey
	}
	if err != nil {
		return Key{}, err
	}
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Key{}, fmt.Errorf("key %s: %w", id, err)
	}
	return Key{ID: id, Secret: f.Secret, Erasing: f.Erasing}, nil
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Lookup implements Keys.
func (d *DirKeys) Lookup(ctx context.Context, reader string) (Key, error) {
	id, err := os.ReadFile(d.readerPath(ReaderHash(reader)))
	if errors.Is(err, os.ErrNotExist) {
		return Key{}, ErrNoKey
	}
	if err != nil {
		return Key{}, err
	}
	return d.Get(ctx, string(id))
}

// Active implements Keys.
func (d *DirKeys) Active(ctx context.Context, reader string) (Key, error) {
	for {
		cur, err := d.Lookup(ctx, reader)
		if err == nil && !cur.Erasing {
			return cur, nil
		}
		if err != nil && !errors.Is(err, ErrNoKey) {
			return Key{}, err
		}
		hash := ReaderHash(reader)
		k := NewKey()
		b, _ := json.Marshal(keyFile{Secret: k.Secret, ReaderHash: hash})
		if err := atomicfile.Write(d.keyPath(k.ID), b, 0o600); err != nil {
			return Key{}, err
		}
		link := d.readerPath(hash)
		if err == nil { // replacing an erasing key: one erasure at a time, no race to lose
			return k, atomicfile.Write(link, []byte(k.ID), 0o600)
		}
		tmp := link + "." + k.ID
		if err := os.WriteFile(tmp, []byte(k.ID), 0o600); err != nil {
			return Key{}, err
		}
		lerr := os.Link(tmp, link)
		os.Remove(tmp)
		if lerr == nil {
			return k, nil
		}
		os.Remove(d.keyPath(k.ID)) // another process linked first: use theirs
		if !errors.Is(lerr, os.ErrExist) {
			return Key{}, lerr
		}
	}
}

// StartErasure implements Keys.
func (d *DirKeys) StartErasure(ctx context.Context, reader string) (Key, error) {
	k, err := d.Lookup(ctx, reader)
	if err != nil {
		return Key{}, err
	}
	k.Erasing = true
	b, _ := json.Marshal(keyFile{Secret: k.Secret, Erasing: true, ReaderHash: ReaderHash(reader)})
	return k, atomicfile.Write(d.keyPath(k.ID), b, 0o600)
}

// Delete implements Keys.
func (d *DirKeys) Delete(_ context.Context, id string) error {
	if !validID(id) {
		return ErrNoKey
	}
	b, err := os.ReadFile(d.keyPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var f keyFile
	json.Unmarshal(b, &f)
	if cur, err := os.ReadFile(d.readerPath(f.ReaderHash)); err == nil && string(cur) == id {
		if err := os.Remove(d.readerPath(f.ReaderHash)); err != nil {
			return err
		}
	}
	return os.Remove(d.keyPath(id))
}

// Close implements Keys.
func (d *DirKeys) Close() error { return nil }
