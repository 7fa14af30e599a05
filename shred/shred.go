// Package shred seals each reader's events with a key of the reader's own (AES-256-GCM) before they
// enter a distributed log, so that deleting the key erases every copy at once: crypto-shredding.
package shred

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dogear-dev/dogear/eventlog"
)

// Key is one reader's key. ID is random and says nothing of the reader: it is what Kafka records
// carry instead of the reader id. Erasing is set once an erasure began: nothing new is sealed
// with the key, and processors delete it when they reach the erasure marker.
type Key struct {
	ID      string
	Secret  []byte // 32 bytes
	Erasing bool
}

// ErrNoKey: the reader has no key, or the key with that id was deleted (the reader was erased).
var ErrNoKey = errors.New("shred: no such key")

// Keys is the seam to the key store: a directory on one host (DirKeys) or Cassandra
// (CassandraKeys). keystest is the conformance suite both pass.
type Keys interface {
	// Active returns the reader's key for sealing new events, creating one when the reader has
	// none or theirs is being erased. Processes racing to create a reader's first key agree on one.
	Active(ctx context.Context, reader string) (Key, error)
	// Lookup returns the reader's current key, active or erasing; ErrNoKey when there is none.
	Lookup(ctx context.Context, reader string) (Key, error)
	// Get returns the key with this id; ErrNoKey once it is deleted.
	Get(ctx context.Context, id string) (Key, error)
	// StartErasure marks the reader's key erasing and returns it; ErrNoKey when there is none.
	StartErasure(ctx context.Context, reader string) (Key, error)
	// Delete deletes the key, and the reader's link to it: what it sealed can never be read again.
	Delete(ctx context.Context, id string) error
	Close() error
}

// NewKey makes a key with a random id and secret.
func NewKey() Key {
	id := make([]byte, 16)
	secret := make([]byte, 32)
	rand.Read(id)
	rand.Read(secret)
	return Key{ID: hex.EncodeToString(id), Secret: secret}
}

// ReaderHash names a reader in a key store: a SHA-256 of the id, so the store holds no reader id.
func ReaderHash(reader string) string {
	h := sha256.Sum256([]byte("dogear-reader\x00" + reader))
	return hex.EncodeToString(h[:])
}

// Sealed record layout: magic (4 bytes), key id (16 bytes), nonce (12), AES-256-GCM ciphertext of
// the event's stored form with the magic and key id as additional data. An erasure marker has the
// same layout with its own magic; its plaintext is the reader id.
var (
	magicEvent  = []byte("dgS1")
	magicMarker = []byte("dgE1")
)

const headerLen = 4 + 16 + 12

func seal(k Key, aead cipher.AEAD, magic, plain []byte) ([]byte, error) {
	id, err := hex.DecodeString(k.ID)
	if err != nil || len(id) != 16 {
		return nil, fmt.Errorf("shred: key id %q is not 16 bytes of hex", k.ID)
	}
	out := make([]byte, headerLen, headerLen+len(plain)+aead.Overhead())
	copy(out, magic)
	copy(out[4:], id)
	rand.Read(out[20:headerLen])
	return aead.Seal(out, out[20:headerLen], plain, out[:20]), nil
}

func gcm(secret []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Record is what a stored value holds, once opened.
type Record struct {
	Event  []byte // the event's stored form; nil for a marker or an erased record
	KeyID  string // the key it is sealed with; "" for a value stored unsealed
	Marker bool   // an erasure marker for KeyID; Event is nil and Reader names the reader
	Reader string // for a marker, the reader to erase
	Erased bool   // sealed with a key that was deleted: unreadable, to be skipped
}

// Shredder seals and opens records with the keys of a store, caching keys briefly: a reader's
// active key for CacheFor (another process's erasure is seen within that time), keys by id until
// an erasure marker for them is opened.
type Shredder struct {
	Keys     Keys
	CacheFor time.Duration

	mu     sync.Mutex
	active map[string]cachedKey // by reader
	byID   map[string]cachedKey
}

// cachedKey is a key with its cipher, made once: making an AES-GCM cipher costs as much as
// sealing an event.
type cachedKey struct {
	key   Key
	aead  cipher.AEAD
	until time.Time
}

func newCached(k Key, ttl time.Duration) (cachedKey, error) {
	aead, err := gcm(k.Secret)
	return cachedKey{key: k, aead: aead, until: time.Now().Add(ttl)}, err
}

// New returns a Shredder over keys, with a 10 s cache of active keys.
func New(keys Keys) *Shredder {
	return &Shredder{Keys: keys, CacheFor: 10 * time.Second, active: map[string]cachedKey{}, byID: map[string]cachedKey{}}
}

const maxCached = 100_000

func (s *Shredder) activeKey(ctx context.Context, reader string) (cachedKey, error) {
	s.mu.Lock()
	c, ok := s.active[reader]
	s.mu.Unlock()
	if ok && time.Now().Before(c.until) {
		return c, nil
	}
	k, err := s.Keys.Active(ctx, reader)
	if err != nil {
		return cachedKey{}, err
	}
	return s.remember(s.active, reader, k, s.CacheFor)
}

// remember caches k under name in m (emptied when full: refilling costs a lookup per reader).
func (s *Shredder) remember(m map[string]cachedKey, name string, k Key, ttl time.Duration) (cachedKey, error) {
	c, err := newCached(k, ttl)
	if err != nil {
		return cachedKey{}, err
	}
	s.mu.Lock()
	if len(m) >= maxCached {
		clear(m)
	}
	m[name] = c
	s.mu.Unlock()
	return c, nil
}

// Seal turns entries (keyed by reader) into sealed ones: the value sealed with the reader's key,
// the key replaced by the key's id, no event id (a client's ids may name the reader; processors
// deduplicate by the id inside the sealed event), and the partition still chosen by the reader.
func (s *Shredder) Seal(ctx context.Context, entries []eventlog.Entry) ([]eventlog.Entry, error) {
	out := make([]eventlog.Entry, len(entries))
	for i, e := range entries {
		c, err := s.activeKey(ctx, e.Key)
		if err != nil {
			return nil, fmt.Errorf("the key of a reader: %w", err)
		}
		v, err := seal(c.key, c.aead, magicEvent, e.Value)
		if err != nil {
			return nil, err
		}
		out[i] = eventlog.Entry{Key: c.key.ID, PartitionBy: e.Key, Value: v}
	}
	return out, nil
}

// Marker is the log entry that erases a reader whose key (now erasing) is k: the processor that
// owns the reader's partition erases them from state when it reaches it, then deletes the key.
func Marker(k Key, reader string) (eventlog.Entry, error) {
	aead, err := gcm(k.Secret)
	if err != nil {
		return eventlog.Entry{}, err
	}
	v, err := seal(k, aead, magicMarker, []byte(reader))
	return eventlog.Entry{ID: "erase-" + k.ID, Key: k.ID, PartitionBy: reader, Value: v}, err
}

// Open reads a stored value: an unsealed event as it is, a sealed one decrypted, a marker, or
// Erased when its key is gone.
func (s *Shredder) Open(ctx context.Context, value []byte) (Record, error) {
	if len(value) < headerLen || !(bytes.HasPrefix(value, magicEvent) || bytes.HasPrefix(value, magicMarker)) {
		return Record{Event: value}, nil
	}
	id := hex.EncodeToString(value[4:20])
	c, err := s.key(ctx, id)
	if errors.Is(err, ErrNoKey) {
		return Record{KeyID: id, Erased: true}, nil
	}
	if err != nil {
		return Record{}, err
	}
	plain, err := c.aead.Open(nil, value[20:headerLen], value[headerLen:], value[:20])
	if err != nil {
		return Record{}, fmt.Errorf("shred: record sealed with key %s does not open: %w", id, err)
	}
	if bytes.HasPrefix(value, magicMarker) {
		return Record{KeyID: id, Marker: true, Reader: string(plain)}, nil
	}
	return Record{Event: plain, KeyID: id}, nil
}

// key returns the key with this id. Found keys are kept until Shred: a key's secret never
// changes, and only its erasure (which Shred does, in the processor that owns the reader's
// partition) ends its use.
func (s *Shredder) key(ctx context.Context, id string) (cachedKey, error) {
	s.mu.Lock()
	c, ok := s.byID[id]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	k, err := s.Keys.Get(ctx, id)
	if err != nil {
		return cachedKey{}, err
	}
	return s.remember(s.byID, id, k, 0)
}

// Shred deletes a key whose marker was applied, and forgets it.
func (s *Shredder) Shred(ctx context.Context, id string) error {
	s.mu.Lock()
	delete(s.byID, id)
	for r, c := range s.active {
		if c.key.ID == id {
			delete(s.active, r)
		}
	}
	s.mu.Unlock()
	return s.Keys.Delete(ctx, id)
}

// StartErasure begins erasing a reader: their key turns erasing (new events get a new key) and
// the marker to append to the log is returned. found is false when the reader has no key.
func (s *Shredder) StartErasure(ctx context.Context, reader string) (marker eventlog.Entry, found bool, err error) {
	k, err := s.Keys.StartErasure(ctx, reader)
	if errors.Is(err, ErrNoKey) {
		return eventlog.Entry{}, false, nil
	}
	if err != nil {
		return eventlog.Entry{}, false, err
	}
	s.mu.Lock()
	delete(s.active, reader)
	s.mu.Unlock()
	marker, err = Marker(k, reader)
	return marker, true, err
}

// Log seals every appended entry before it reaches the log underneath; reads return the sealed
// values, which Shredder.Open reads.
type Log struct {
	eventlog.Log
	Shredder *Shredder
}

// Append implements eventlog.Log.
func (l Log) Append(ctx context.Context, entries []eventlog.Entry) ([]bool, error) {
	sealed, err := l.Shredder.Seal(ctx, entries)
	if err != nil {
		return nil, err
	}
	return l.Log.Append(ctx, sealed)
}
