package eventlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/dogear-dev/dogear/internal/pebbledb"
)

// DefaultPartitions is the partition count of a new embedded log. It bounds how many processors
// can work in parallel, here and after a move to Kafka with the same count.
const DefaultPartitions = 16

// maxGroupEvents caps one group commit so that one huge group cannot delay every waiting request.
const maxGroupEvents = 256 << 10

// Key layout of the embedded log's Pebble store:
//
//	m/partitions            -> decimal partition count, fixed at creation
//	l <u16 part> <u64 off>  -> stored event
//	i <event id>            -> <u16 part> <u64 off>   (the dedup index)
var partitionsKey = []byte("m/partitions")

func logKey(p int, off int64) []byte {
	k := make([]byte, 11)
	k[0] = 'l'
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	binary.BigEndian.PutUint64(k[3:], uint64(off))
	return k
}

func idKey(id string) []byte { return append([]byte{'i'}, id...) }

// Pebble is the embedded Log. One writer goroutine group-commits: appends that arrive while an
// fsync is under way wait for the next one and then share it, so the fsync rate stays bounded
// and throughput grows with concurrency.
type Pebble struct {
	db    *pebble.DB
	parts int
	end   []atomic.Int64

	reqs   chan *appendReq
	closed chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	changed chan struct{}
}

type appendReq struct {
	entries []Entry
	dup     []bool
	err     chan error
}

// OpenPebble opens or creates the embedded log in dir. partitions 0 means the stored count, or
// DefaultPartitions for a new log; a different non-zero count than the stored one is an error,
// since moving events between partitions would break per-reader ordering.
func OpenPebble(dir string, partitions int, cacheBytes int64) (*Pebble, error) {
	db, err := pebbledb.Open(dir, cacheBytes)
	if err != nil {
		return nil, err
	}
	stored, err := getPartitions(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	switch {
	case stored == 0:
		if partitions == 0 {
			partitions = DefaultPartitions
		}
		if partitions < 1 || partitions > 65535 {
			db.Close()
			return nil, fmt.Errorf("eventlog: partitions must be from 1 to 65535, got %d", partitions)
		}
		if err := db.Set(partitionsKey, []byte(strconv.Itoa(partitions)), pebble.Sync); err != nil {
			db.Close()
			return nil, err
		}
	case partitions != 0 && partitions != stored:
		db.Close()
		return nil, fmt.Errorf("eventlog: %s was created with %d partitions, not %d; the count cannot change", dir, stored, partitions)
	default:
		partitions = stored
	}
	l := &Pebble{
		db: db, parts: partitions, end: make([]atomic.Int64, partitions),
		reqs: make(chan *appendReq, 1024), closed: make(chan struct{}), done: make(chan struct{}),
		changed: make(chan struct{}),
	}
	for p := 0; p < partitions; p++ {
		end, err := l.scanEnd(p)
		if err != nil {
			db.Close()
			return nil, err
		}
		l.end[p].Store(end)
	}
	go l.writer()
	return l, nil
}

func getPartitions(db *pebble.DB) (int, error) {
	v, closer, err := db.Get(partitionsKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return strconv.Atoi(string(v))
}

func (l *Pebble) scanEnd(p int) (int64, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: logKey(p, 0), UpperBound: logKey(p+1, 0)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	return int64(binary.BigEndian.Uint64(it.Key()[3:])) + 1, nil
}

// Partitions implements Log.
func (l *Pebble) Partitions() int { return l.parts }

// End implements Log.
func (l *Pebble) End(p int) (int64, error) { return l.end[p].Load(), nil }

// Changed implements Log.
func (l *Pebble) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Append implements Log.
func (l *Pebble) Append(ctx context.Context, entries []Entry) ([]bool, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	r := &appendReq{entries: entries, dup: make([]bool, len(entries)), err: make(chan error, 1)}
	select {
	case l.reqs <- r:
	case <-l.closed:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued, wait for the outcome even if ctx ends: the caller must not report a failure
	// for events that may already be durable (a retry would be deduplicated anyway).
	var err error
	select {
	case err = <-r.err:
	case <-l.done:
		select {
		case err = <-r.err:
		default:
			err = ErrClosed // queued after the writer's last look
		}
	}
	if err != nil {
		return nil, err
	}
	return r.dup, nil
}

func (l *Pebble) writer() {
	defer close(l.done)
	seen := make(map[string]struct{})
	next := make([]int64, l.parts)
	for {
		var first *appendReq
		select {
		case first = <-l.reqs:
		case <-l.closed:
			l.failPending()
			return
		}
		group := []*appendReq{first}
		n := len(first.entries)
	drain:
		for n < maxGroupEvents {
			select {
			case r := <-l.reqs:
				group = append(group, r)
				n += len(r.entries)
			default:
				break drain
			}
		}
		err := l.commit(group, n, seen, next)
		for _, r := range group {
			r.err <- err
		}
	}
}

func (l *Pebble) failPending() {
	for {
		select {
		case r := <-l.reqs:
			r.err <- ErrClosed
		default:
			return
		}
	}
}

func (l *Pebble) commit(group []*appendReq, n int, seen map[string]struct{}, next []int64) error {
	clear(seen)
	for p := range next {
		next[p] = l.end[p].Load()
	}
	b := l.db.NewBatch()
	defer b.Close()
	var val [10]byte
	written := 0
	for _, r := range group {
		for i, e := range r.entries {
			if _, ok := seen[e.ID]; ok {
				r.dup[i] = true
				continue
			}
			seen[e.ID] = struct{}{}
			ik := idKey(e.ID)
			if _, closer, err := l.db.Get(ik); err == nil {
				closer.Close()
				r.dup[i] = true
				continue
			} else if !errors.Is(err, pebble.ErrNotFound) {
				return err
			}
			p := PartitionFor(e.Key, l.parts)
			off := next[p]
			next[p]++
			binary.BigEndian.PutUint16(val[:], uint16(p))
			binary.BigEndian.PutUint64(val[2:], uint64(off))
			if err := b.Set(logKey(p, off), e.Value, nil); err != nil {
				return err
			}
			if err := b.Set(ik, val[:], nil); err != nil {
				return err
			}
			written++
		}
	}
	if written == 0 {
		return nil
	}
	start := time.Now()
	if err := b.Commit(pebble.Sync); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return ErrNoSpace
		}
		return err
	}
	syncSeconds.Observe(time.Since(start).Seconds())
	groupEvents.Observe(float64(n))
	groupRequests.Observe(float64(len(group)))
	for p := range next {
		l.end[p].Store(next[p])
	}
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	return nil
}

// Read implements Log.
func (l *Pebble) Read(ctx context.Context, p int, from int64, max int) ([]Record, error) {
	end := l.end[p].Load()
	if from >= end {
		return nil, nil
	}
	if from+int64(max) < end {
		end = from + int64(max)
	}
	it, err := l.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: logKey(p, from), UpperBound: logKey(p, end)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	recs := make([]Record, 0, end-from)
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		recs = append(recs, Record{
			Partition: p,
			Offset:    int64(binary.BigEndian.Uint64(it.Key()[3:])),
			Value:     append([]byte(nil), v...),
		})
	}
	return recs, it.Error()
}

// Close implements Log. Appends waiting for the writer fail with ErrClosed.
func (l *Pebble) Close() error {
	select {
	case <-l.closed:
		return nil
	default:
	}
	close(l.closed)
	<-l.done
	return l.db.Close()
}
