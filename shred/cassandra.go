package shred

import (
	"context"
	"errors"

	"github.com/gocql/gocql"

	"github.com/dogear-dev/dogear/state"
)

// CassandraKeys keeps keys in Cassandra (tables shred_keys and reader_keys of
// deploy/cassandra/schema.cql), for processes on many hosts. A reader's first key is created with
// a lightweight transaction (INSERT IF NOT EXISTS), so racing processes agree on one. Like the
// Cassandra state store it is verified only where a Cassandra server was available
// (DOGEAR_TEST_CASSANDRA); none can run on the machines this project is built on.
//
// A deleted key leaves a Cassandra tombstone until gc_grace_seconds pass and a compaction runs:
// set gc_grace_seconds on shred_keys as short as repairs allow.
type CassandraKeys struct{ s *gocql.Session }

// OpenCassandraKeys connects to the cluster; the keyspace and tables must exist.
func OpenCassandraKeys(hosts []string, keyspace string) (*CassandraKeys, error) {
	s, err := state.CassandraSession(hosts, keyspace)
	if err != nil {
		return nil, err
	}
	return &CassandraKeys{s: s}, nil
}

// Get implements Keys.
func (c *CassandraKeys) Get(ctx context.Context, id string) (Key, error) {
	k := Key{ID: id}
	err := c.s.Query(`SELECT secret, erasing FROM shred_keys WHERE key_id = ?`, id).WithContext(ctx).Scan(&k.Secret, &k.Erasing)
	if errors.Is(err, gocql.ErrNotFound) {
		return Key{}, ErrNoKey
	}
	return k, err
}

// Lookup implements Keys.
func (c *CassandraKeys) Lookup(ctx context.Context, reader string) (Key, error) {
	var id string
	err := c.s.Query(`SELECT key_id FROM reader_keys WHERE reader_hash = ?`, ReaderHash(reader)).WithContext(ctx).Scan(&id)
	if errors.Is(err, gocql.ErrNotFound) {
		return Key{}, ErrNoKey
	}
	if err != nil {
		return Key{}, err
	}
	return c.Get(ctx, id)
}

// Active implements Keys.
func (c *CassandraKeys) Active(ctx context.Context, reader string) (Key, error) {
	hash := ReaderHash(reader)
	for {
		var curID string
		err := c.s.Query(`SELECT key_id FROM reader_keys WHERE reader_hash = ?`, hash).WithContext(ctx).Scan(&curID)
		if err != nil && !errors.Is(err, gocql.ErrNotFound) {
			return Key{}, err
		}
		if err == nil {
			cur, gerr := c.Get(ctx, curID)
			if gerr == nil && !cur.Erasing {
				return cur, nil
			}
			if gerr != nil && !errors.Is(gerr, ErrNoKey) {
				return Key{}, gerr
			}
		}
		k := NewKey()
		if err := c.s.Query(`INSERT INTO shred_keys (key_id, secret, erasing, reader_hash) VALUES (?, ?, false, ?)`,
			k.ID, k.Secret, hash).WithContext(ctx).Exec(); err != nil {
			return Key{}, err
		}
		var applied bool
		if curID == "" {
			applied, err = c.s.Query(`INSERT INTO reader_keys (reader_hash, key_id) VALUES (?, ?) IF NOT EXISTS`, hash, k.ID).
				WithContext(ctx).MapScanCAS(map[string]any{})
		} else {
			applied, err = c.s.Query(`UPDATE reader_keys SET key_id = ? WHERE reader_hash = ? IF key_id = ?`, k.ID, hash, curID).
				WithContext(ctx).MapScanCAS(map[string]any{})
		}
		if err != nil {
			return Key{}, err
		}
		if applied {
			return k, nil
		}
		// Another process linked a key first: drop ours and use theirs.
		if err := c.s.Query(`DELETE FROM shred_keys WHERE key_id = ?`, k.ID).WithContext(ctx).Exec(); err != nil {
			return Key{}, err
		}
	}
}

// StartErasure implements Keys.
func (c *CassandraKeys) StartErasure(ctx context.Context, reader string) (Key, error) {
	k, err := c.Lookup(ctx, reader)
	if err != nil {
		return Key{}, err
	}
	k.Erasing = true
	return k, c.s.Query(`UPDATE shred_keys SET erasing = true WHERE key_id = ?`, k.ID).WithContext(ctx).Exec()
}

// Delete implements Keys.
func (c *CassandraKeys) Delete(ctx context.Context, id string) error {
	var hash string
	err := c.s.Query(`SELECT reader_hash FROM shred_keys WHERE key_id = ?`, id).WithContext(ctx).Scan(&hash)
	if errors.Is(err, gocql.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := c.s.Query(`DELETE FROM reader_keys WHERE reader_hash = ? IF key_id = ?`, hash, id).
		WithContext(ctx).MapScanCAS(map[string]any{}); err != nil {
		return err
	}
	return c.s.Query(`DELETE FROM shred_keys WHERE key_id = ?`, id).WithContext(ctx).Exec()
}

// Close implements Keys.
func (c *CassandraKeys) Close() error {
	c.s.Close()
	return nil
}
