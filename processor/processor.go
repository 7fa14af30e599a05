// Package processor reads the event log partition by partition and folds each event into state
// exactly once, committing the state change and the partition's next offset in one atomic write.
package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/shred"
	"github.com/dogear-dev/dogear/state"
	"github.com/dogear-dev/dogear/tracing"
)

// BatchSize is how many records one state commit covers. Larger batches amortise the commit;
// smaller ones make fresh events visible sooner.
const BatchSize = 2000

var eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "dogear_processor_events_total",
	Help: "Log records processed, by result: applied, duplicate (event id applied before), corrupt (undecodable, skipped) or erased (sealed with an erased reader's key, skipped).",
}, []string{"result"})

// batchRecords is how many records each state commit covers: near BatchSize when processing
// is behind or lingers, a few when it keeps pace with a trickle.
var batchRecords = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "dogear_processor_batch_records",
	Help:    "Log records folded per state commit.",
	Buckets: prometheus.ExponentialBuckets(1, 4, 7), // 1 … 4096
})

// Config is what a processor is told besides its log and state.
type Config struct {
	// Group is the consumer group the processors of a deployment share (Kafka); the embedded
	// log gives its one process every partition.
	Group string
	// Mirrors are logs holding mirrored copies of the events (MirrorMaker 2 topics, partitioned
	// alike). A claimed partition is folded from the log and from each mirror; an event arriving
	// through two of them is applied once, since state deduplicates by event id.
	Mirrors []eventlog.Log
	// Shred opens sealed records and carries out erasure markers (distributed mode); nil when
	// the log holds events as they are.
	Shred *shred.Shredder
	// Canonical, when set, names the book an event's book id (an ISBN, an ASIN) stands for, so
	// that every name of one book folds into one (catalog.Catalog.Canonical).
	Canonical func(book string) string
	// Busy, when set, reports whether acknowledgements are waiting in this process (ingest
	// requests in flight): folding then leaves them a core.
	Busy func() bool
	// Linger, when set, lets a partition's records gather for up to this long after its last
	// batch before the next is read, unless a full batch (BatchSize) is there sooner: a commit
	// then covers many events, and a record several of them change (a book's aggregates, a
	// partition's counts) is written once instead of once for every few. Folded events become
	// visible up to Linger later. Records arriving after a pause longer than Linger are folded
	// at once, and a backlog batch after batch.
	Linger time.Duration
	// Tracer, when set, ends a span for each folded record that arrived with a trace context.
	Tracer trace.Tracer
	Logger *slog.Logger
}

// Processor folds the partitions its log assigns it into state. Partitions are folded
// concurrently, each by one goroutine, because every state key belongs to exactly one partition.
type Processor struct {
	cfg     Config
	log     eventlog.Log
	sources []eventlog.Log // log, then mirrors: source i of partition p commits to slot i×SlotStride+p
	store   state.Store
	parts   []partition
	// A batch is folded and committed holding a token: one of folding's, one fewer than the
	// cores (at least one), or the spare one, taken only while Config.Busy reports no
	// acknowledgements waiting. Folding is throughput work that lag absorbs; an acknowledgement
	// is what a client waits for, and with every core folding, a handler whose fsync had
	// completed waited behind the processors' goroutines for a turn.
	folding, spare chan struct{}
}

type partition struct {
	// mu is held while a batch is read, folded and committed, and by Erase.
	mu sync.Mutex
	// folder holds the partition's records between batches while a goroutine folds it (nil
	// when none does); guarded by mu.
	folder  *insights.Folder
	owned   atomic.Bool
	applied []atomic.Int64 // per source: the next offset, as committed
}

// readerEraser is a log that can delete a reader's records (the embedded log).
type readerEraser interface {
	EraseReader(ctx context.Context, reader string) (int, error)
	ErasedBefore(reader string) (int64, bool)
}

// uniqueLog is a log that refuses ids it already holds (eventlog.Pebble): each of its records is
// an event never stored before, so folding it needs neither a lookup of its id in state nor a
// record of it (insights.Folder.ApplyUnique). The lookup of an id that is not there was the
// costliest read of a fold: it searches every memtable and level.
type uniqueLog interface{ UniqueIDs() bool }

// New returns a processor of log into store.
func New(log eventlog.Log, store state.Store, cfg Config) *Processor {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Processor{cfg: cfg, log: log, sources: append([]eventlog.Log{log}, cfg.Mirrors...), store: store,
		parts: make([]partition, log.Partitions())}
	cores := runtime.GOMAXPROCS(0)
	p.folding = make(chan struct{}, max(1, cores-1))
	p.spare = make(chan struct{}, cores-cap(p.folding))
	for i := range p.parts {
		p.parts[i].applied = make([]atomic.Int64, len(p.sources))
	}
	return p
}

// Run folds the partitions the log assigns to this process until ctx ends, waiting for new
// records when caught up.
func (p *Processor) Run(ctx context.Context) error {
	return p.log.Claim(ctx, p.cfg.Group, func(ctx context.Context, part int) error {
		return p.partition(ctx, part, false)
	})
}

// CatchUp folds every partition up to its end as of the call, then returns.
func (p *Processor) CatchUp(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.parts))
	for part := range p.parts {
		wg.Go(func() { errs[part] = p.partition(ctx, part, true) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func slot(source, part int) int { return source*state.SlotStride + part }

// partition folds one partition from every source, until ctx ends or, with untilEnd, until each
// source's end as of the start.
func (p *Processor) partition(ctx context.Context, part int, untilEnd bool) error {
	pt := &p.parts[part]
	// The partition is this process's from its claim: until its state is acquired and its
	// offsets read, all of it counts as lag.
	for i := range pt.applied {
		pt.applied[i].Store(0)
	}
	pt.owned.Store(true)
	defer pt.owned.Store(false)
	store := p.store
	if h, ok := p.store.(state.Handoff); ok {
		var err error
		if store, err = h.Acquire(ctx, part); err != nil {
			return err
		}
		defer func() {
			if err := h.Release(part); err != nil {
				p.cfg.Logger.Error("releasing partition state", "partition", part, "err", err)
			}
		}()
	}
	offs, stops := make([]int64, len(p.sources)), make([]int64, len(p.sources))
	for i, src := range p.sources {
		off, err := store.Offset(slot(i, part))
		if err != nil {
			return err
		}
		offs[i] = off
		pt.applied[i].Store(off)
		if untilEnd {
			if stops[i], err = src.End(part); err != nil {
				return err
			}
		}
	}
	var w state.Writes
	tx := &overlay{store: store, Overlay: state.Overlay{Base: store, Writes: &w}}
	tx.folder = insights.NewFolder(tx, part)
	pt.mu.Lock()
	pt.folder = tx.folder
	pt.mu.Unlock()
	defer func() {
		pt.mu.Lock()
		pt.folder = nil
		pt.mu.Unlock()
	}()
	lastBatch := make([]time.Time, len(p.sources)) // when each source's last batch that folded anything began
	for {
		progressed, behind := false, false
		for i := range p.sources {
			if untilEnd && offs[i] >= stops[i] {
				continue
			}
			if !untilEnd {
				if err := p.linger(ctx, p.sources[i], part, offs[i], lastBatch[i]); err != nil {
					return err
				}
			}
			started := time.Now()
			next, err := p.batch(ctx, tx, part, i, offs[i])
			if err != nil {
				return err
			}
			if next > offs[i] {
				lastBatch[i] = started
			}
			progressed = progressed || next > offs[i]
			offs[i] = next
			behind = behind || !untilEnd || next < stops[i]
		}
		if !behind {
			return nil
		}
		if !progressed {
			if err := p.wait(ctx, part, offs); err != nil {
				return err
			}
		}
	}
}

// lingerPoll is how often a lingering partition looks whether a full batch is there.
const lingerPoll = 5 * time.Millisecond

// linger waits until a full batch of the partition is there from off, or until Linger has
// passed since last. It looks at the log's end, not Log.Wait: Kafka's Wait moves the
// partition's reader to the offset waited for, away from the batch to be read.
func (p *Processor) linger(ctx context.Context, src eventlog.Log, part int, off int64, last time.Time) error {
	deadline := last.Add(p.cfg.Linger)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil
		}
		// An error ends the linger and is left to the read that follows, which retries or
		// reports it as before.
		if end, err := src.End(part); err != nil || end-off >= BatchSize {
			return nil
		}
		t := time.NewTimer(min(wait, lingerPoll))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// batch reads, folds and commits one batch of a source's partition from offset off, and returns
// the offset to go on from.
func (p *Processor) batch(ctx context.Context, tx *overlay, part, source int, off int64) (int64, error) {
	pt := &p.parts[part]
	pt.mu.Lock()
	recs, err := p.sources[source].Read(ctx, part, off, BatchSize)
	if err != nil || len(recs) == 0 {
		pt.mu.Unlock()
		return off, err
	}
	started := time.Now()
	f, err := p.foldAndCommit(ctx, tx, part, source, recs)
	pt.mu.Unlock()
	if errors.Is(err, state.ErrNoSpace) {
		// Nothing was written; the same batch is read and applied again once space returns.
		p.cfg.Logger.Warn("state disk nearly full; processing paused", "partition", part)
		select {
		case <-ctx.Done():
			return off, ctx.Err()
		case <-time.After(time.Second):
			return off, nil
		}
	}
	if err != nil {
		return off, err
	}
	batchRecords.Observe(float64(f.n))
	p.traceFolds(ctx, part, recs[:f.n], started)
	return recs[f.n-1].Offset + 1, p.shredAfterCommit(ctx, f)
}

// foldAndCommit folds recs into tx and commits them with the offset after the last one folded,
// holding a folding token meanwhile.
func (p *Processor) foldAndCommit(ctx context.Context, tx *overlay, part, source int, recs []eventlog.Record) (folded, error) {
	token, err := p.takeToken(ctx)
	if err != nil {
		return folded{}, err
	}
	defer func() { <-token }()
	tx.Writes.Reset()
	f, err := p.fold(ctx, tx, part, p.sources[source], recs)
	if err == nil {
		next := recs[f.n-1].Offset + 1
		if err = tx.store.Commit(slot(source, part), next, tx.Writes); err == nil {
			p.parts[part].applied[source].Store(next)
		}
	}
	if err != nil {
		tx.folder.Forget() // it holds what the batch folded, which the store does not
	}
	return f, err
}

// takeToken waits for a folding token and returns the channel to give it back to.
func (p *Processor) takeToken(ctx context.Context) (chan struct{}, error) {
	for {
		select {
		case p.folding <- struct{}{}:
			return p.folding, nil
		default:
		}
		if p.cfg.Busy == nil || !p.cfg.Busy() {
			select {
			case p.spare <- struct{}{}:
				return p.spare, nil
			default:
			}
		}
		// Every token is taken, or the spare is kept for acknowledgements: wait for one, and
		// look at the spare again in a moment, since whether it is kept changes unannounced.
		select {
		case p.folding <- struct{}{}:
			return p.folding, nil
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// traceFolds ends, for each traced record of a committed batch, a span that continues the trace
// the record was appended under: the request that posted an event, seen through to its fold.
func (p *Processor) traceFolds(ctx context.Context, part int, recs []eventlog.Record, started time.Time) {
	if p.cfg.Tracer == nil {
		return
	}
	now := time.Now()
	for _, r := range recs {
		if r.Trace == nil {
			continue
		}
		_, span := p.cfg.Tracer.Start(tracing.Context(ctx, r.Trace), "dogear.fold", trace.WithTimestamp(started),
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.Int("messaging.destination.partition.id", part), attribute.Int64("messaging.kafka.offset", r.Offset),
				attribute.Int("dogear.batch.records", len(recs))))
		span.End(trace.WithTimestamp(now))
	}
}

// wait returns once any source may have a record of the partition past offs.
func (p *Processor) wait(ctx context.Context, part int, offs []int64) error {
	if len(p.sources) == 1 {
		return p.sources[0].Wait(ctx, part, offs[0])
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, len(p.sources))
	for i, src := range p.sources {
		go func() { done <- src.Wait(wctx, part, offs[i]) }()
	}
	err := <-done
	cancel()
	for range len(p.sources) - 1 {
		<-done
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// folded says how far fold got: n records, and the key to shred once they are committed.
type folded struct {
	n     int
	shred string
}

// fold applies a batch of one partition's records to tx, in order. It stops before an erasure
// marker (package shred) that is not the first record: an erasure scans committed state, so what
// precedes it must be committed first. A marker first in the batch is folded alone.
func (p *Processor) fold(ctx context.Context, tx *overlay, part int, src eventlog.Log, recs []eventlog.Record) (folded, error) {
	var applied, dups, corrupt, erasedN float64
	defer func() {
		eventsTotal.WithLabelValues("applied").Add(applied)
		eventsTotal.WithLabelValues("duplicate").Add(dups)
		eventsTotal.WithLabelValues("corrupt").Add(corrupt)
		eventsTotal.WithLabelValues("erased").Add(erasedN)
	}()
	folder := tx.folder
	defer folder.Flush() // into tx's writes, before batch commits them
	er, isEraser := src.(readerEraser)
	// With mirrors, one event can arrive through two sources: only state knows it was applied.
	ul, ok := src.(uniqueLog)
	unique := ok && ul.UniqueIDs() && len(p.sources) == 1
	for i := range recs {
		value := recs[i].Value
		if p.cfg.Shred != nil {
			r, err := p.cfg.Shred.Open(ctx, value)
			if err != nil {
				return folded{n: i}, err
			}
			switch {
			case r.Erased:
				erasedN++ // sealed with a deleted key: its reader was erased
				continue
			case r.Marker && i > 0:
				return folded{n: i}, nil
			case r.Marker:
				if _, err := insights.Erase(tx.store, tx.Writes, part, r.Reader); err != nil {
					return folded{}, err
				}
				folder.Forget()
				tx.Writes.MustBeDurable()
				return folded{n: 1, shred: r.KeyID}, nil
			}
			value = r.Event
		}
		e, err := event.Decode(value)
		if err != nil {
			// A record that was validated on the way in cannot fail to decode unless the log
			// was damaged; skipping it keeps every other reader's state going.
			p.cfg.Logger.Error("skipping undecodable log record", "partition", part, "offset", recs[i].Offset, "err", err)
			corrupt++
			continue
		}
		if isEraser {
			if before, erased := er.ErasedBefore(e.Reader); erased && recs[i].Offset < before {
				dups++ // a copy of an erased reader's event (a replay): never applied again
				continue
			}
		}
		if p.cfg.Canonical != nil && e.Book != "" {
			e.Book = p.cfg.Canonical(e.Book)
		}
		ok := true
		if unique {
			err = folder.ApplyUnique(&e)
		} else {
			ok, err = folder.Apply(&e)
		}
		if err != nil {
			return folded{}, err
		}
		if ok {
			applied++
		} else {
			dups++
		}
	}
	return folded{n: len(recs)}, nil
}

// shredAfterCommit deletes the key of an erasure marker whose erasure is committed, retrying for
// a while: until it is gone, the reader's records stay readable in the log.
func (p *Processor) shredAfterCommit(ctx context.Context, f folded) error {
	if f.shred == "" {
		return nil
	}
	var err error
	for try := range 10 {
		if err = p.cfg.Shred.Shred(ctx, f.shred); err == nil {
			return nil
		}
		p.cfg.Logger.Warn("deleting an erased reader's key failed; retrying", "key", f.shred, "try", try+1, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("deleting the key %s of an erased reader: %w", f.shred, err)
}

// Erase removes a reader from the log (when the log supports it) and from state, holding the
// reader's partition so that no batch is folded meanwhile; a batch read before still skips the
// reader's records, which the log reports erased. It reports whether the log or state held
// anything of the reader.
func (p *Processor) Erase(ctx context.Context, reader string) (bool, error) {
	part := eventlog.PartitionFor(reader, len(p.parts))
	pt := &p.parts[part]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	records := 0
	if er, ok := p.log.(readerEraser); ok {
		n, err := er.EraseReader(ctx, reader)
		if err != nil {
			return false, err
		}
		records = n
	}
	off, err := p.store.Offset(part)
	if err != nil {
		return false, err
	}
	var w state.Writes
	w.MustBeDurable()
	found, err := insights.Erase(p.store, &w, part, reader)
	if err != nil {
		return false, err
	}
	if pt.folder != nil {
		pt.folder.Forget()
	}
	return found || records > 0, p.store.Commit(part, off, &w)
}

// Status is which partitions a processor folds and how far behind the log it is.
type Status struct {
	Partitions []int `json:"partitions"`
	Lag        int64 `json:"processor_lag_events"`
}

// Status reports the partitions this process folds now and its total lag.
func (p *Processor) Status() Status {
	st := Status{Partitions: []int{}}
	for part, l := range p.Lag() {
		if p.parts[part].owned.Load() {
			st.Partitions = append(st.Partitions, part)
			st.Lag += l
		}
	}
	return st
}

// Lag is, per partition, how many records of the log and its mirrors are not yet folded into
// state; 0 for a partition this process does not fold.
func (p *Processor) Lag() []int64 {
	lag := make([]int64, len(p.parts))
	for part := range p.parts {
		pt := &p.parts[part]
		if !pt.owned.Load() {
			continue
		}
		for i, src := range p.sources {
			end, err := src.End(part)
			if err != nil {
				continue
			}
			lag[part] += max(0, end-pt.applied[i].Load())
		}
	}
	return lag
}

// TotalLag is the sum of Lag.
func (p *Processor) TotalLag() int64 {
	var n int64
	for _, l := range p.Lag() {
		n += l
	}
	return n
}

var lagDesc = prometheus.NewDesc("dogear_processor_lag_events",
	"Log records not yet folded into state, per partition.", []string{"partition"}, nil)

// Describe implements prometheus.Collector.
func (p *Processor) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

// Collect implements prometheus.Collector: lag is computed at scrape time, so it is never stale.
func (p *Processor) Collect(ch chan<- prometheus.Metric) {
	for part, l := range p.Lag() {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(l), strconv.Itoa(part))
	}
}

// overlay is a batch's view of its partition: the store it commits to, read through the batch's
// uncommitted writes.
type overlay struct {
	store state.Store
	state.Overlay
	folder *insights.Folder // folds into it
}

// Metrics are the package's collectors, for the registry of the process that uses it. They count
// process-wide, whichever registry exposes them.
var Metrics = []prometheus.Collector{eventsTotal, batchRecords}
