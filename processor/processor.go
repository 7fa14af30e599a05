// Package processor reads the event log partition by partition and folds each event into state
// exactly once, committing the state change and the partition's next offset in one atomic write.
package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/insights"
	"github.com/dogear-dev/dogear/shred"
	"github.com/dogear-dev/dogear/state"
)

// BatchSize is how many records one state commit covers. Larger batches amortise the commit;
// smaller ones make fresh events visible sooner.
const BatchSize = 2000

var eventsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "dogear_processor_events_total",
	Help: "Log records processed, by result: applied, duplicate (event id applied before), corrupt (undecodable, skipped) or erased (sealed with an erased reader's key, skipped).",
}, []string{"result"})

// Processor folds the log into state. Partitions are processed concurrently, each by one
// goroutine, because every state key belongs to exactly one partition.
type Processor struct {
	log     eventlog.Log
	store   state.Store
	applied []atomic.Int64 // next offset per partition, as committed
	logger  *slog.Logger
	erase   []chan eraseReq // per partition, served between batches
	// shred opens sealed records and carries out erasure markers (distributed mode); nil when
	// the log holds events as they are.
	shred *shred.Shredder
	// Canonical, when set, names the book an event's book id (an ISBN, an ASIN) stands for, so
	// that every name of one book folds into one (catalog.Catalog.Canonical).
	Canonical func(book string) string
}

type eraseReq struct {
	reader string
	done   chan erased
}

// erased is what an erasure found: whether anything of the reader was held, and any error.
type erased struct {
	found bool
	err   error
}

// readerEraser is a log that can delete a reader's records (the embedded log).
type readerEraser interface {
	EraseReader(ctx context.Context, reader string) (int, error)
	ErasedBefore(reader string) (int64, bool)
}

// New returns a processor of log into store.
func New(log eventlog.Log, store state.Store, logger *slog.Logger) (*Processor, error) {
	p := &Processor{log: log, store: store, applied: make([]atomic.Int64, log.Partitions()), logger: logger,
		erase: make([]chan eraseReq, log.Partitions())}
	for part := range p.applied {
		p.erase[part] = make(chan eraseReq)
		off, err := store.Offset(part)
		if err != nil {
			return nil, err
		}
		p.applied[part].Store(off)
	}
	return p, nil
}

// Run processes every partition until ctx ends, waiting for new records when caught up.
func (p *Processor) Run(ctx context.Context) error { return p.each(ctx, false) }

// CatchUp processes every partition up to its end as of the call, then returns.
func (p *Processor) CatchUp(ctx context.Context) error { return p.each(ctx, true) }

func (p *Processor) each(ctx context.Context, untilEnd bool) error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.applied))
	for part := range p.applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[part] = p.partition(ctx, part, untilEnd)
		}()
	}
	wg.Wait()
	err := errors.Join(errs...)
	if errors.Is(err, context.Canceled) && !untilEnd {
		return nil
	}
	return err
}

func (p *Processor) partition(ctx context.Context, part int, untilEnd bool) error {
	off := p.applied[part].Load()
	stop := int64(-1)
	if untilEnd {
		end, err := p.log.End(part)
		if err != nil {
			return err
		}
		stop = end
	}
	var w state.Writes
	tx := &overlay{store: p.store, w: &w}
	// The poll timer covers logs whose Changed channel cannot see every append (another process
	// writing to Kafka).
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		if stop >= 0 && off >= stop {
			return nil
		}
		select {
		case req := <-p.erase[part]:
			req.done <- p.eraseReader(ctx, part, off, req.reader)
			continue
		default:
		}
		changed := p.log.Changed()
		recs, err := p.log.Read(ctx, part, off, BatchSize)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
			case <-poll.C:
			case req := <-p.erase[part]:
				req.done <- p.eraseReader(ctx, part, off, req.reader)
			}
			continue
		}
		w.Reset()
		f, err := p.fold(ctx, tx, part, recs)
		if err != nil {
			return err
		}
		next := recs[f.n-1].Offset + 1
		if err := p.store.Commit(part, next, &w); errors.Is(err, state.ErrNoSpace) {
			// Nothing was written; the same batch is read and applied again once space returns.
			p.logger.Warn("state disk nearly full; processing paused", "partition", part)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		} else if err != nil {
			return err
		}
		if err := p.shredAfterCommit(ctx, f); err != nil {
			return err
		}
		off = next
		p.applied[part].Store(off)
	}
}

// folded says how far fold got: n records, and the key to shred once they are committed.
type folded struct {
	n     int
	shred string
}

// fold applies a batch of one partition's records to tx, in order. It stops before an erasure
// marker (package shred) that is not the first record: an erasure scans committed state, so what
// precedes it must be committed first. A marker first in the batch is folded alone.
func (p *Processor) fold(ctx context.Context, tx *overlay, part int, recs []eventlog.Record) (folded, error) {
	var applied, dups, corrupt, erasedN float64
	defer func() {
		eventsTotal.WithLabelValues("applied").Add(applied)
		eventsTotal.WithLabelValues("duplicate").Add(dups)
		eventsTotal.WithLabelValues("corrupt").Add(corrupt)
		eventsTotal.WithLabelValues("erased").Add(erasedN)
	}()
	er, isEraser := p.log.(readerEraser)
	for i := range recs {
		value := recs[i].Value
		if p.shred != nil {
			r, err := p.shred.Open(ctx, value)
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
				if _, err := insights.Erase(p.store, tx.w, part, r.Reader); err != nil {
					return folded{}, err
				}
				return folded{n: 1, shred: r.KeyID}, nil
			}
			value = r.Event
		}
		e, err := event.Unmarshal(value)
		if err != nil {
			// A record that was validated on the way in cannot fail to decode unless the log
			// was damaged; skipping it keeps every other reader's state going.
			p.logger.Error("skipping undecodable log record", "partition", part, "offset", recs[i].Offset, "err", err)
			corrupt++
			continue
		}
		if isEraser {
			if before, erased := er.ErasedBefore(e.Reader); erased && recs[i].Offset < before {
				dups++ // a copy of an erased reader's event (a replay): never applied again
				continue
			}
		}
		if p.Canonical != nil && e.Book != "" {
			e.Book = p.Canonical(e.Book)
		}
		ok, err := insights.Apply(tx, part, &e)
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
		if err = p.shred.Shred(ctx, f.shred); err == nil {
			return nil
		}
		p.logger.Warn("deleting an erased reader's key failed; retrying", "key", f.shred, "try", try+1, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("deleting the key %s of an erased reader: %w", f.shred, err)
}

// Erase removes a reader from the log (when the log supports it) and from state, in the
// goroutine that owns the reader's partition, so no batch in flight can bring them back. Run must
// be running. It reports whether the log or state held anything of the reader.
func (p *Processor) Erase(ctx context.Context, reader string) (bool, error) {
	req := eraseReq{reader: reader, done: make(chan erased, 1)}
	part := eventlog.PartitionFor(reader, len(p.applied))
	select {
	case p.erase[part] <- req:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	res := <-req.done
	return res.found, res.err
}

func (p *Processor) eraseReader(ctx context.Context, part int, off int64, reader string) erased {
	records := 0
	if er, ok := p.log.(readerEraser); ok {
		n, err := er.EraseReader(ctx, reader)
		if err != nil {
			return erased{err: err}
		}
		records = n
	}
	var w state.Writes
	found, err := insights.Erase(p.store, &w, part, reader)
	if err != nil {
		return erased{err: err}
	}
	return erased{found: found || records > 0, err: p.store.Commit(part, off, &w)}
}

// Lag is, per partition, how many log records are not yet folded into state.
func (p *Processor) Lag() []int64 {
	lag := make([]int64, len(p.applied))
	for part := range p.applied {
		end, err := p.log.End(part)
		if err != nil {
			continue
		}
		lag[part] = max(0, end-p.applied[part].Load())
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

// overlay lets a batch read its own uncommitted writes.
type overlay struct {
	store state.Store
	w     *state.Writes
}

func (o *overlay) Get(k []byte) ([]byte, bool, error) {
	if v, found, del := o.w.Lookup(k); found {
		return v, !del, nil
	}
	return o.store.Get(k)
}
func (o *overlay) Put(k, v []byte) { o.w.Put(k, v) }
func (o *overlay) Delete(k []byte) { o.w.Delete(k) }
