package eventlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
//	b <u16 part> <u64 off>  -> a batch of the partition's events, the first at off (batchrecord.go)
//	i <event id>            -> <u16 part> <u64 off>   (the dedup index)
//	n <u16 part>            -> <u64 next offset>      (offsets are never reused)
//	x <sha256(reader)>      -> <u64 end of the reader's partition when erased>
//
// Logs written before batches stored one event per key, l <u16 part> <u64 off>; OpenPebble
// rewrites them into batches once.
var partitionsKey = []byte("m/partitions")

func batchKey(p int, off int64) []byte {
	k := make([]byte, 11)
	k[0] = 'b'
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	binary.BigEndian.PutUint64(k[3:], uint64(off))
	return k
}

func batchKeyOffset(k []byte) int64 { return int64(binary.BigEndian.Uint64(k[3:])) }

func idKey(id string) []byte { return appendIDKey(nil, id) }

func appendIDKey(b []byte, id string) []byte { return append(append(b, 'i'), id...) }

// Pebble is the embedded Log. One writer goroutine group-commits: appends that arrive while an
// fsync is under way wait for the next one and then share it, so the fsync rate stays bounded
// and throughput grows with concurrency.
type Pebble struct {
	dir   string
	cache int64
	// MinFreeBytes: appends are refused with ErrNoSpace while the disk has less free space.
	// Pebble treats a failed write-ahead-log write as fatal, so dogear must never let one fail
	// for lack of space: it stops taking events before the disk is full.
	MinFreeBytes int64
	// dbMu guards db: every use holds it shared; Scrub closes and reopens db holding it alone.
	dbMu  sync.RWMutex
	db    *pebble.DB
	parts int
	end   []atomic.Int64

	ids *idFilter // only the writer goroutine uses it once open

	erasedMu sync.RWMutex
	erased   map[string]int64 // sha256(reader) -> partition end offset when the reader was erased

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
	db, err := pebbledb.Open(dir, cacheBytes, pebbledb.DefaultMemTableBytes)
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
		dir: dir, cache: cacheBytes, erased: map[string]int64{},
		db: db, parts: partitions, end: make([]atomic.Int64, partitions),
		reqs: make(chan *appendReq, 1024), closed: make(chan struct{}), done: make(chan struct{}),
		changed: make(chan struct{}),
	}
	if err := l.migratePerEventKeys(); err != nil {
		db.Close()
		return nil, fmt.Errorf("eventlog: rewriting %s into batches: %w", dir, err)
	}
	var total int64
	for p := 0; p < partitions; p++ {
		end, err := l.scanEnd(p)
		if err != nil {
			db.Close()
			return nil, err
		}
		l.end[p].Store(end)
		total += end
	}
	if err := l.loadIDs(uint(total)); err != nil {
		db.Close()
		return nil, err
	}
	if err := l.loadErasures(); err != nil {
		db.Close()
		return nil, err
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

func endKey(p int) []byte { return binary.BigEndian.AppendUint16([]byte("n"), uint16(p)) }

func (l *Pebble) scanEnd(p int) (int64, error) {
	var stored int64
	if v, closer, err := l.db.Get(endKey(p)); err == nil {
		stored = int64(binary.BigEndian.Uint64(v))
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return 0, err
	}
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: batchKey(p, 0), UpperBound: batchKey(p+1, 0)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return stored, it.Error()
	}
	last := int64(-1)
	err = eachBatchEvent(it.Value(), batchKeyOffset(it.Key()), func(e batchEvent) bool { last = e.offset; return true })
	return max(stored, last+1), err
}

// migratePerEventKeys rewrites a log stored one event per key, as dogear stored it before batch
// records, into batches of up to maxBatchEvents consecutive events of a partition. Each commit
// holds whole batches with the deletes of their old keys, so a crash midway loses nothing and
// the next open goes on where it stopped.
func (l *Pebble) migratePerEventKeys() error {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte("l"), UpperBound: []byte("m")})
	if err != nil {
		return err
	}
	defer it.Close()
	b := l.db.NewBatch()
	defer func() { b.Close() }()
	var pb pendingBatch
	part, moved := -1, 0
	var probe struct {
		ID     string `json:"id"`
		Reader string `json:"reader"`
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		p, off := int(binary.BigEndian.Uint16(k[1:])), int64(binary.BigEndian.Uint64(k[3:]))
		if p != part || pb.count == maxBatchEvents {
			pb.flush(b, part)
			part = p
			if b.Len() > 32<<20 {
				if err := b.Commit(pebble.Sync); err != nil {
					return err
				}
				b.Close()
				b = l.db.NewBatch()
			}
		}
		if pb.count == 0 {
			pb.first = off
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		probe.ID, probe.Reader = "", ""
		_ = json.Unmarshal(v, &probe) // a sealed event (package shred) has no readable reader: shredding its key erases it
		pb.events = appendBatchEvent(pb.events, off-pb.first, probe.ID, probe.Reader, v)
		pb.count++
		if err := b.Delete(k, nil); err != nil {
			return err
		}
		moved++
	}
	if err := it.Error(); err != nil {
		return err
	}
	if moved == 0 {
		return nil
	}
	pb.flush(b, part)
	return b.Commit(pebble.Sync)
}

// loadIDs fills the id filter with every id of the dedup index; expected sizes it.
func (l *Pebble) loadIDs(expected uint) error {
	l.ids = newIDFilter(expected)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte("i"), UpperBound: []byte("j")})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		l.ids.add(string(it.Key()[1:]))
	}
	return it.Error()
}

// Partitions implements Log.
func (l *Pebble) Partitions() int { return l.parts }

// End implements Log.
func (l *Pebble) End(p int) (int64, error) { return l.end[p].Load(), nil }

// Wait implements Log.
func (l *Pebble) Wait(ctx context.Context, p int, from int64) error {
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if l.end[p].Load() > from {
			return nil
		}
		select {
		case <-changed:
		case <-l.closed:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Claim implements Log: the embedded log has one process, which gets every partition.
func (l *Pebble) Claim(ctx context.Context, _ string, fold FoldFunc) error {
	c, ctx := newClaims(ctx, fold, nil)
	for p := range l.parts {
		c.start(p)
	}
	<-ctx.Done()
	return c.stopAll()
}

// UniqueIDs reports that the log holds each event id once: Append refuses ids it holds.
func (l *Pebble) UniqueIDs() bool { return true }

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
	scratch := &groupScratch{seen: make(map[string]struct{}), next: make([]int64, l.parts), batches: make([]pendingBatch, l.parts)}
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
		err := l.commit(group, n, scratch)
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

// pendingBatch is a partition's batch record being built by one commit.
type pendingBatch struct {
	first  int64
	count  int
	events []byte
}

// flush adds the batch record to b and empties pb.
func (pb *pendingBatch) flush(b *pebble.Batch, p int) {
	if pb.count == 0 {
		return
	}
	var header [1 + binary.MaxVarintLen64]byte
	h := appendBatchHeader(header[:0], pb.count)
	op := b.SetDeferred(11, len(h)+len(pb.events))
	copy(op.Key, batchKey(p, pb.first))
	copy(op.Value, h)
	copy(op.Value[len(h):], pb.events)
	op.Finish()
	pb.count, pb.events = 0, pb.events[:0]
}

// groupScratch is what the writer reuses from one group commit to the next.
type groupScratch struct {
	seen    map[string]struct{} // the group's ids
	next    []int64             // each partition's next offset
	batches []pendingBatch      // each partition's batch record
	ids     []idEntry           // the group's id index entries
	idKeys  []byte              // their keys, one after another
}

// idEntry is an id index entry: the id's key, and its partition and offset.
type idEntry struct {
	key []byte
	val [10]byte
}

func (l *Pebble) commit(group []*appendReq, n int, scratch *groupScratch) error {
	seen, next, batches := scratch.seen, scratch.next, scratch.batches
	if l.MinFreeBytes > 0 {
		if free, err := pebbledb.FreeBytes(l.dir); err == nil && free < l.MinFreeBytes {
			return ErrNoSpace
		}
	}
	clear(seen)
	for p := range next {
		next[p] = l.end[p].Load()
		batches[p].count, batches[p].events = 0, batches[p].events[:0]
	}
	l.dbMu.RLock()
	defer l.dbMu.RUnlock()
	b := l.db.NewBatch()
	defer b.Close()
	ids, idKeys := scratch.ids[:0], scratch.idKeys[:0]
	written := 0
	for _, r := range group {
		for i, e := range r.entries {
			if _, ok := seen[e.ID]; ok {
				r.dup[i] = true
				continue
			}
			seen[e.ID] = struct{}{}
			// The keys share one buffer kept from group to group, not an allocation each. A
			// key taken before the buffer grows keeps the old array, which nothing writes again.
			start := len(idKeys)
			idKeys = appendIDKey(idKeys, e.ID)
			ik := idKeys[start:len(idKeys):len(idKeys)]
			if l.ids.add(e.ID) {
				if _, closer, err := l.db.Get(ik); err == nil {
					closer.Close()
					r.dup[i] = true
					continue
				} else if !errors.Is(err, pebble.ErrNotFound) {
					return err
				}
			}
			p := e.Partition(l.parts)
			off := next[p]
			next[p]++
			pb := &batches[p]
			if pb.count == 0 {
				pb.first = off
			}
			reader := e.Key
			if e.PartitionBy != "" {
				reader = e.PartitionBy
			}
			pb.events = appendBatchEvent(pb.events, off-pb.first, e.ID, reader, e.Value)
			if pb.count++; pb.count == maxBatchEvents {
				pb.flush(b, p)
			}
			ids = append(ids, idEntry{key: ik})
			binary.BigEndian.PutUint16(ids[len(ids)-1].val[:], uint16(p))
			binary.BigEndian.PutUint64(ids[len(ids)-1].val[2:], uint64(off))
			written++
		}
	}
	for p := range batches {
		batches[p].flush(b, p)
	}
	// In key order: a memtable inserts a batch's keys in order, and searches for each from where
	// the last one went when it lies near. Ids that devices make at random (UUIDs) are otherwise
	// each searched for from the top of the skiplist, on the one goroutine that writes.
	slices.SortFunc(ids, func(a, b idEntry) int { return bytes.Compare(a.key, b.key) })
	for i := range ids {
		if err := b.Set(ids[i].key, ids[i].val[:], nil); err != nil {
			return err
		}
	}
	scratch.ids, scratch.idKeys = ids, idKeys
	if written == 0 {
		return nil
	}
	// The next offset of each partition is stored too: erasure can delete a partition's last
	// records, and offsets must never be reused (processors have applied up to them).
	for p := range next {
		if next[p] != l.end[p].Load() {
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], uint64(next[p]))
			if err := b.Set(endKey(p), v[:], nil); err != nil {
				return err
			}
		}
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
	l.dbMu.RLock()
	defer l.dbMu.RUnlock()
	// Up to the end, not from+max: erasure leaves gaps in the offsets, which reads skip.
	it, err := l.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: batchKey(p, 0), UpperBound: batchKey(p, end)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	recs := make([]Record, 0, min(int64(max), end-from))
	// The batch holding from is the last one keyed at or before it.
	ok := it.SeekLT(batchKey(p, from+1))
	if !ok {
		ok = it.First()
	}
	for ; ok && len(recs) < max; ok = it.Next() {
		// One copy per batch, which the batch's records share.
		v := append([]byte(nil), it.Value()...)
		err := eachBatchEvent(v, batchKeyOffset(it.Key()), func(e batchEvent) bool {
			if e.offset >= from && len(recs) < max {
				recs = append(recs, Record{Partition: p, Offset: e.offset, Value: e.value})
			}
			return len(recs) < max
		})
		if err != nil {
			return nil, fmt.Errorf("eventlog: partition %d, batch at offset %d: %w", p, batchKeyOffset(it.Key()), err)
		}
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
	l.dbMu.Lock()
	defer l.dbMu.Unlock()
	return l.db.Close()
}

// erasedKey is where an erasure is recorded: under a hash of the reader, so that the record of
// an erasure does not itself keep the reader's id.
func erasedKey(reader string) []byte {
	h := sha256.Sum256([]byte(reader))
	return append([]byte("x"), h[:]...)
}

func (l *Pebble) loadErasures() error {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte("x"), UpperBound: []byte("y")})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		l.erased[string(it.Key()[1:])] = int64(binary.BigEndian.Uint64(it.Value()))
	}
	return it.Error()
}

// ErasedBefore reports whether the reader was erased and, if so, the partition offset at the
// time: records of the reader before it must not be applied (replays of older copies).
func (l *Pebble) ErasedBefore(reader string) (int64, bool) {
	l.erasedMu.RLock()
	defer l.erasedMu.RUnlock()
	if len(l.erased) == 0 {
		return 0, false // no hash for each folded event of a log that never erased anyone
	}
	h := sha256.Sum256([]byte(reader))
	off, ok := l.erased[string(h[:])]
	return off, ok
}

// EraseReader deletes every record of the reader (all in one partition) and their dedup index
// entries, and records the erasure. It returns how many records were deleted. The bytes are gone
// from disk only after Scrub.
func (l *Pebble) EraseReader(ctx context.Context, reader string) (int, error) {
	p := PartitionFor(reader, l.parts)
	l.dbMu.RLock()
	defer l.dbMu.RUnlock()
	b := l.db.NewBatch()
	defer b.Close()
	it, err := l.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: batchKey(p, 0), UpperBound: batchKey(p+1, 0)})
	if err != nil {
		return 0, err
	}
	n := 0
	var kept []byte
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return n, err
		}
		first := batchKeyOffset(it.Key())
		kept = kept[:0]
		count, erased := 0, 0
		err = eachBatchEvent(v, first, func(e batchEvent) bool {
			if string(e.reader) == reader {
				b.Delete(idKey(string(e.id)), nil)
				erased++
			} else {
				kept = appendBatchEvent(kept, e.offset-first, string(e.id), string(e.reader), e.value)
				count++
			}
			return true
		})
		if err != nil {
			it.Close()
			return n, fmt.Errorf("eventlog: partition %d, batch at offset %d: %w", p, first, err)
		}
		switch {
		case erased == 0:
		case count == 0:
			b.Delete(it.Key(), nil)
		default:
			b.Set(it.Key(), append(appendBatchHeader(nil, count), kept...), nil)
		}
		n += erased
	}
	if err := it.Close(); err != nil {
		return n, err
	}
	end := l.end[p].Load()
	var val [8]byte
	binary.BigEndian.PutUint64(val[:], uint64(end))
	b.Set(erasedKey(reader), val[:], nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return n, err
	}
	l.erasedMu.Lock()
	l.erased[string(erasedKey(reader)[1:])] = end
	l.erasedMu.Unlock()
	return n, nil
}

// Scrub makes erased records physically gone from the store's files (pebbledb.Rewrite) while
// appends and reads wait.
func (l *Pebble) Scrub() error {
	l.dbMu.Lock()
	defer l.dbMu.Unlock()
	db, err := pebbledb.Rewrite(l.db, l.dir, l.cache, pebbledb.DefaultMemTableBytes)
	if db != nil {
		l.db = db
	}
	return err
}
