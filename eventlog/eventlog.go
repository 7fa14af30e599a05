// Package eventlog is dogear's durable, partitioned event log: events keyed by reader, appended
// with group-committed fsync, read back in order per partition by offset, as in Kafka.
package eventlog

import (
	"context"
	"errors"
	"hash/fnv"

	"github.com/prometheus/client_golang/prometheus"
)

// Entry is one event to append: its id (the dedup key), its key (the reader, which picks the
// partition) and its stored bytes. PartitionBy, when set, picks the partition instead of Key: a
// sealed entry (package shred) is keyed by its key's id but stays in its reader's partition.
type Entry struct {
	ID          string
	Key         string
	PartitionBy string
	Value       []byte
}

// Partition is the partition of the entry among partitions.
func (e Entry) Partition(partitions int) int {
	if e.PartitionBy != "" {
		return PartitionFor(e.PartitionBy, partitions)
	}
	return PartitionFor(e.Key, partitions)
}

// Record is one stored event as read back. Trace is the W3C trace context (traceparent,
// tracestate) the event was appended under, when that append was traced and the log carries it
// (Kafka, in record headers); processors continue that trace.
type Record struct {
	Partition int
	Offset    int64
	Value     []byte
	Trace     map[string]string
}

// Log is the seam between ingest and processors. Implementations: Pebble (embedded) and Kafka.
type Log interface {
	// Partitions is the fixed number of partitions.
	Partitions() int
	// Append stores entries durably and returns only once they survive a crash. dup[i] is true
	// when entry i's id was already in the log (it was not written again). An implementation
	// that cannot know (Kafka) reports false and relies on processors deduplicating by id.
	Append(ctx context.Context, entries []Entry) (dup []bool, err error)
	// Read returns up to max records of a partition starting at offset from, in offset order.
	// It returns an empty slice, not an error, when there is nothing at from yet.
	Read(ctx context.Context, partition int, from int64, max int) ([]Record, error)
	// End is the offset the next record of the partition will get.
	End(partition int) (int64, error)
	// Wait returns once the partition may hold a record at offset from, or with ctx's error.
	Wait(ctx context.Context, partition int, from int64) error
	// Claim joins group and runs fold for each partition the group assigns to this process,
	// each in its own goroutine, until ctx ends; a partition's fold context ends when the
	// partition is taken away, and no other member gets it before that fold has returned. The
	// embedded log assigns every partition to its one process. Claim returns nil once ctx ends
	// and every fold returned, or the first error a fold returned (which ends the others).
	Claim(ctx context.Context, group string, fold FoldFunc) error
	Close() error
}

// ErrClosed is returned by operations on a closed log.
var ErrClosed = errors.New("eventlog: closed")

// ErrNoSpace is returned by Append when the disk is full; nothing of that append was stored.
var ErrNoSpace = errors.New("eventlog: no space left on device")

// PartitionFor maps a reader to a partition. Every Log implementation uses it, so that an event's
// partition, and so the processor that owns the reader's state, is the same in every mode.
// FNV-1a is stable across versions and platforms.
func PartitionFor(key string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(partitions))
}

var (
	syncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "dogear_eventlog_fsync_seconds",
		Help:    "Time to durably commit one group of appends (write and fsync).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	groupEvents = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "dogear_eventlog_group_commit_events",
		Help:    "Events made durable by one fsync (group commit size).",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10),
	})
	groupRequests = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "dogear_eventlog_group_commit_requests",
		Help:    "Append calls sharing one fsync.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})
)

// Metrics are the package's collectors, for the registry of the process that uses it. They count
// process-wide, whichever registry exposes them.
var Metrics = []prometheus.Collector{syncSeconds, groupEvents, groupRequests}
