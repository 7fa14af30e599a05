package state

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// Cassandra is the scale-out Store (schema: deploy/cassandra/schema.cql). It is verified only
// where a Cassandra server was available: the conformance suite runs against it when
// DOGEAR_TEST_CASSANDRA=host:port is set; no Cassandra or ScyllaDB server can run on the machines
// this project is built on, so CI only compiles it.
//
// Keys are grouped by their first two \x00-separated components (the Cassandra partition), and
// ordered within a group, so the prefix scans dogear makes read one partition in order. A Commit
// is one LOGGED BATCH of absolute values plus the partition's next offset: Cassandra applies all of
// it or, after a coordinator failure, replays it from its batch log; a failed Commit is retried
// with the same values, which is idempotent.
type Cassandra struct {
	s *gocql.Session
}

// ParseCassandraURL reads cassandra://host1,host2/keyspace.
func ParseCassandraURL(u string) (hosts []string, keyspace string, err error) {
	rest, ok := strings.CutPrefix(u, "cassandra://")
	h, ks, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || h == "" || ks == "" {
		return nil, "", fmt.Errorf("state URL %q: want cassandra://host1,host2/keyspace", u)
	}
	return strings.Split(h, ","), ks, nil
}

// OpenCassandra connects to the cluster; the keyspace and tables must exist (schema.cql).
func OpenCassandra(hosts []string, keyspace string) (*Cassandra, error) {
	s, err := CassandraSession(hosts, keyspace)
	if err != nil {
		return nil, err
	}
	return &Cassandra{s: s}, nil
}

// CassandraSession connects to the keyspace the way every dogear table is used: QUORUM reads and
// writes, SERIAL for lightweight transactions, 10 s timeouts.
func CassandraSession(hosts []string, keyspace string) (*gocql.Session, error) {
	c := gocql.NewCluster(hosts...)
	c.Keyspace = keyspace
	c.Consistency = gocql.Quorum
	c.SerialConsistency = gocql.Serial
	c.Timeout = 10 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cassandra %v/%s: %w", hosts, keyspace, err)
	}
	return s, nil
}

// group is a key's scan group: up to (not including) its second \x00.
func group(k []byte) []byte {
	first := bytes.IndexByte(k, 0)
	if first < 0 {
		return k
	}
	second := bytes.IndexByte(k[first+1:], 0)
	if second < 0 {
		return k
	}
	return k[:first+1+second]
}

// Get implements Store.
func (c *Cassandra) Get(key []byte) ([]byte, bool, error) {
	var v []byte
	err := c.s.Query(`SELECT value FROM state WHERE grp = ? AND key = ?`, group(key), key).Scan(&v)
	if errors.Is(err, gocql.ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// Scan implements Store. A range inside one group is one ordered partition read; a wider range
// (whole-store comparisons, rebuild checks) lists the groups first.
func (c *Cassandra) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	gl := group(lower)
	if upper != nil && bytes.HasPrefix(lower, gl) && bytes.Compare(upper, PrefixEnd(gl)) <= 0 && bytes.Contains(lower, []byte{0}) {
		return c.scanGroup(gl, lower, upper, fn)
	}
	var groups [][]byte
	it := c.s.Query(`SELECT DISTINCT grp FROM state`).Iter()
	var g []byte
	for it.Scan(&g) {
		groups = append(groups, append([]byte(nil), g...))
	}
	if err := it.Close(); err != nil {
		return err
	}
	sort.Slice(groups, func(i, j int) bool { return bytes.Compare(groups[i], groups[j]) < 0 })
	for _, g := range groups {
		if upper != nil && bytes.Compare(g, upper) >= 0 {
			break
		}
		if end := PrefixEnd(g); end != nil && bytes.Compare(end, lower) <= 0 {
			continue
		}
		if err := c.scanGroup(g, lower, upper, fn); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func (c *Cassandra) scanGroup(g, lower, upper []byte, fn func(key, value []byte) error) error {
	q := c.s.Query(`SELECT key, value FROM state WHERE grp = ? AND key >= ?`, g, lower)
	if upper != nil {
		q = c.s.Query(`SELECT key, value FROM state WHERE grp = ? AND key >= ? AND key < ?`, g, lower, upper)
	}
	it := q.PageSize(5000).Iter()
	var k, v []byte
	for it.Scan(&k, &v) {
		if err := fn(k, v); err != nil {
			it.Close()
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return it.Close()
}

// Commit implements Store. Every commit is durable once a quorum of replicas acknowledged it,
// which is what Writes.MustBeDurable asks for.
func (c *Cassandra) Commit(partition int, offset int64, w *Writes) error {
	b := c.s.NewBatch(gocql.LoggedBatch)
	err := w.Each(func(k string, v []byte, del bool) error {
		key := []byte(k)
		if del {
			b.Query(`DELETE FROM state WHERE grp = ? AND key = ?`, group(key), key)
		} else {
			b.Query(`INSERT INTO state (grp, key, value) VALUES (?, ?, ?)`, group(key), key, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.Query(`INSERT INTO offsets (log_partition, next_offset) VALUES (?, ?)`, partition, offset)
	for attempt := 0; ; attempt++ {
		err := c.s.ExecuteBatch(b)
		if err == nil || attempt == 4 {
			return err
		}
		time.Sleep(time.Duration(1<<attempt) * 100 * time.Millisecond)
	}
}

// Offset implements Store.
func (c *Cassandra) Offset(partition int) (int64, error) {
	var off int64
	err := c.s.Query(`SELECT next_offset FROM offsets WHERE log_partition = ?`, partition).Scan(&off)
	if errors.Is(err, gocql.ErrNotFound) {
		return 0, nil
	}
	return off, err
}

// Close implements Store.
func (c *Cassandra) Close() error {
	c.s.Close()
	return nil
}
