package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/dogear-dev/dogear/datadir"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/objstore"
	"github.com/dogear-dev/dogear/shred"
	"github.com/dogear-dev/dogear/state"
)

// backends are the external systems a process uses, embedded or distributed. Roles reach them
// only through their interfaces; the concrete types stay here.
type backends struct {
	log eventlog.Log
	// appendTo is what ingest appends to: log, or log sealing each event with its reader's key.
	appendTo eventlog.Log
	mirrors  []eventlog.Log
	state    state.Store     // nil when no role of the process needs state
	shredder *shred.Shredder // nil: events are not sealed
	// stores are the embedded log and state, for what only they can do (erasure by rewriting,
	// the disk check); nil over Kafka.
	stores *datadir.Stores
	// ping checks that the log answers (Kafka); nil for the embedded log.
	ping    func(context.Context) error
	closers []func() error
}

// openBackends opens what cfg names: the embedded log and state under the data directory, or
// Kafka, Cassandra (or partitioned state) and the key store.
func openBackends(ctx context.Context, cfg Config) (*backends, error) {
	b := &backends{}
	if cfg.embedded() {
		stores, err := datadir.Open(cfg.DataDir, datadir.Options{Partitions: cfg.Partitions, CacheBytes: cfg.CacheBytes, MinFreeBytes: cfg.MinFreeBytes})
		if err != nil {
			return nil, err
		}
		b.stores, b.log, b.appendTo, b.state = stores, stores.Log, stores.Log, stores.State
		b.closers = append(b.closers, stores.Close)
		return b, nil
	}
	if err := b.openDistributed(ctx, cfg); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *backends) openDistributed(ctx context.Context, cfg Config) error {
	kafka := func(topic string) (*eventlog.Kafka, error) {
		kcfg, err := eventlog.ParseKafkaURL(cfg.Log)
		if err != nil {
			return nil, err
		}
		if cfg.Partitions > 0 {
			kcfg.Partitions = cfg.Partitions
		}
		kcfg.SessionTimeout = cfg.SessionTimeout
		if topic != "" {
			kcfg.Topic, kcfg.CreateTopic = topic, false // MirrorMaker creates its topics
		}
		l, err := eventlog.OpenKafka(ctx, kcfg)
		if err == nil {
			b.closers = append(b.closers, l.Close)
		}
		return l, err
	}
	log, err := kafka("")
	if err != nil {
		return err
	}
	b.log, b.appendTo, b.ping = log, log, log.Ping
	for _, topic := range cfg.Mirrors {
		m, err := kafka(topic)
		if err != nil {
			return fmt.Errorf("mirror %s: %w", topic, err)
		}
		b.mirrors = append(b.mirrors, m)
	}
	if cfg.Keys != "" {
		keys, err := openKeys(cfg.Keys)
		if err != nil {
			return err
		}
		b.closers = append(b.closers, keys.Close)
		b.shredder = shred.New(keys)
		b.appendTo = shred.Log{Log: log, Shredder: b.shredder}
	}
	if cfg.State != "" {
		st, err := openState(cfg.State, cfg.CacheBytes)
		if err != nil {
			return err
		}
		b.closers = append(b.closers, st.Close)
		b.state = st
	}
	return nil
}

// openState opens a shared state URL.
func openState(url string, cacheBytes int64) (state.Store, error) {
	switch {
	case strings.HasPrefix(url, "cassandra://"):
		hosts, ks, err := state.ParseCassandraURL(url)
		if err != nil {
			return nil, err
		}
		return state.OpenCassandra(hosts, ks)
	case strings.HasPrefix(url, "partitioned://"):
		return state.OpenPartitioned(strings.TrimPrefix(url, "partitioned://"), cacheBytes)
	}
	return nil, fmt.Errorf("state %q: want cassandra://host1,host2/keyspace or partitioned:///dir", url)
}

// openKeys opens a key store URL.
func openKeys(url string) (shred.Keys, error) {
	switch {
	case strings.HasPrefix(url, "dir://"):
		return shred.OpenDirKeys(strings.TrimPrefix(url, "dir://"))
	case strings.HasPrefix(url, "cassandra://"):
		hosts, ks, err := state.ParseCassandraURL(url)
		if err != nil {
			return nil, err
		}
		return shred.OpenCassandraKeys(hosts, ks)
	}
	return nil, fmt.Errorf("keys %q: want dir:///path or cassandra://host1,host2/keyspace", url)
}

// objectStore opens url, or the data directory's folder when url is empty.
func objectStore(ctx context.Context, url, dataDir, folder string) (objstore.Store, error) {
	return objstore.Open(ctx, cmp.Or(url, filepath.Join(dataDir, folder)))
}

// close closes what was opened, last first.
func (b *backends) close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}
