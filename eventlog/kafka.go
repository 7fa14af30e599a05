package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dogear-dev/dogear/tracing"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaConfig selects a Kafka topic as the event log.
type KafkaConfig struct {
	Brokers []string
	Topic   string
	// Partitions and Replication are used when the topic is created at start-up (CreateTopic);
	// an existing topic must already have Partitions partitions.
	Partitions  int
	Replication int
	CreateTopic bool
	// SessionTimeout is how long the consumer group waits for a silent member before giving its
	// partitions to others (0: Kafka's default, 45 s).
	SessionTimeout time.Duration
}

// ParseKafkaURL reads kafka://broker1,broker2/topic.
func ParseKafkaURL(u string) (KafkaConfig, error) {
	rest, ok := strings.CutPrefix(u, "kafka://")
	brokers, topic, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || brokers == "" || topic == "" {
		return KafkaConfig{}, fmt.Errorf("log URL %q: want kafka://broker1,broker2/topic", u)
	}
	return KafkaConfig{Brokers: strings.Split(brokers, ","), Topic: topic, Partitions: DefaultPartitions, Replication: 3, CreateTopic: true}, nil
}

// Kafka is the distributed Log: a topic whose records are keyed by reader and placed in the
// partition PartitionFor chooses, so that every mode partitions alike. Appends are acknowledged
// only after all in-sync replicas have the records (acks=all, idempotent producer).
type Kafka struct {
	cfg   KafkaConfig
	prod  *kgo.Client
	admin *kadm.Client

	mu        sync.Mutex
	readers   map[int]*partitionReader
	ends      map[int32]int64
	endsAt    time.Time
	closeOnce sync.Once
}

// partitionReader consumes one partition directly (no group), for Read.
type partitionReader struct {
	mu   sync.Mutex
	cl   *kgo.Client
	next int64 // the offset the client will return next
	buf  []*kgo.Record
}

// OpenKafka connects to the cluster and, when allowed, creates the topic.
func OpenKafka(ctx context.Context, cfg KafkaConfig) (*Kafka, error) {
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), kgo.AllowAutoTopicCreation())
	if err != nil {
		return nil, err
	}
	k := &Kafka{cfg: cfg, prod: prod, admin: kadm.NewClient(prod), readers: map[int]*partitionReader{}}
	if err := k.ensureTopic(ctx); err != nil {
		prod.Close()
		return nil, err
	}
	return k, nil
}

func (k *Kafka) ensureTopic(ctx context.Context) error {
	if k.cfg.CreateTopic {
		repl := int16(max(1, k.cfg.Replication))
		_, err := k.admin.CreateTopic(ctx, int32(k.cfg.Partitions), repl, map[string]*string{"retention.ms": ptr("-1")}, k.cfg.Topic)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", k.cfg.Topic, err)
		}
	}
	details, err := k.admin.ListTopics(ctx, k.cfg.Topic)
	if err != nil {
		return err
	}
	td, ok := details[k.cfg.Topic]
	if !ok || td.Err != nil {
		return fmt.Errorf("topic %s does not exist and was not created (%v)", k.cfg.Topic, td.Err)
	}
	if n := len(td.Partitions); n != k.cfg.Partitions {
		return fmt.Errorf("topic %s has %d partitions, dogear is configured for %d: partition counts cannot change", k.cfg.Topic, n, k.cfg.Partitions)
	}
	return nil
}

func ptr(s string) *string { return &s }

// Partitions implements Log.
func (k *Kafka) Partitions() int { return k.cfg.Partitions }

// Append implements Log. Kafka cannot tell a resent event id, so dup is always false and
// processors deduplicate by id in state.
func (k *Kafka) Append(ctx context.Context, entries []Entry) ([]bool, error) {
	recs := make([]*kgo.Record, len(entries))
	// A traced append (one ingest request) puts its trace context on each of its records, so the
	// processor that folds them continues the request's trace in another process.
	trace := tracing.Headers(ctx)
	for i, e := range entries {
		recs[i] = &kgo.Record{Key: []byte(e.Key), Value: e.Value, Partition: int32(e.Partition(k.cfg.Partitions))}
		if e.ID != "" { // sealed entries (package shred) carry none
			recs[i].Headers = []kgo.RecordHeader{{Key: "id", Value: []byte(e.ID)}}
		}
		for h, v := range trace {
			recs[i].Headers = append(recs[i].Headers, kgo.RecordHeader{Key: h, Value: []byte(v)})
		}
	}
	start := time.Now()
	if err := k.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, err
	}
	syncSeconds.Observe(time.Since(start).Seconds())
	groupEvents.Observe(float64(len(entries)))
	k.mu.Lock()
	k.endsAt = time.Time{} // the cached end offsets are stale now
	k.mu.Unlock()
	return make([]bool, len(entries)), nil
}

// Read implements Log. When nothing is buffered it fetches once, waiting up to 200 ms for records.
func (k *Kafka) Read(ctx context.Context, p int, from int64, max int) ([]Record, error) {
	pr, err := k.reader(p, from)
	if err != nil {
		return nil, err
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.seek(k.cfg.Topic, p, from)
	if len(pr.buf) == 0 {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := pr.fetch(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
	}
	var out []Record
	for len(pr.buf) > 0 && len(out) < max {
		r := pr.buf[0]
		pr.buf = pr.buf[1:]
		if r.Offset < from {
			continue
		}
		out = append(out, Record{Partition: p, Offset: r.Offset, Value: r.Value, Trace: traceOf(r)})
		pr.next = r.Offset + 1
	}
	return out, nil
}

// Wait implements Log: it fetches (a long poll on the brokers) until a record at from or later is
// buffered for the next Read. Each poll lasts at most a second, so that a Read of the same
// partition (an export) is not held up behind it.
func (k *Kafka) Wait(ctx context.Context, p int, from int64) error {
	pr, err := k.reader(p, from)
	if err != nil {
		return err
	}
	for {
		pr.mu.Lock()
		pr.seek(k.cfg.Topic, p, from)
		if len(pr.buf) > 0 {
			pr.mu.Unlock()
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := pr.fetch(pctx)
		cancel()
		pr.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
}

// seek moves the reader to from unless it is there already. Callers hold pr.mu.
func (pr *partitionReader) seek(topic string, p int, from int64) {
	if from != pr.next {
		pr.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{topic: {int32(p): {Epoch: -1, Offset: from}}})
		pr.next, pr.buf = from, nil
	}
}

// fetch polls once and buffers what came. Callers hold pr.mu.
func (pr *partitionReader) fetch(ctx context.Context) error {
	fetches := pr.cl.PollRecords(ctx, 10_000)
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, fe := range fetches.Errors() {
		switch {
		case errors.Is(fe.Err, kgo.ErrClientClosed):
			return ErrClosed
		case !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled):
			return fe.Err
		}
	}
	pr.buf = append(pr.buf, fetches.Records()...)
	return nil
}

func (k *Kafka) reader(p int, from int64) (*partitionReader, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if pr, ok := k.readers[p]; ok {
		return pr, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{k.cfg.Topic: {int32(p): kgo.NewOffset().At(from)}}),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	pr := &partitionReader{cl: cl, next: from}
	k.readers[p] = pr
	return pr, nil
}

// dropReader closes partition p's reader, once its partition went to another member.
func (k *Kafka) dropReader(p int) {
	k.mu.Lock()
	pr, ok := k.readers[p]
	delete(k.readers, p)
	k.mu.Unlock()
	if ok {
		pr.cl.Close()
	}
}

// Claim implements Log with a Kafka consumer group that only manages membership: its client never
// fetches (the topic is paused), since each claimed partition is read through Read. The
// cooperative-sticky balancer moves only the partitions that must move, and kgo calls the revoke
// callback, which waits for the partitions' folds to return, before they are given away.
func (k *Kafka) Claim(ctx context.Context, group string, fold FoldFunc) error {
	c, ctx := newClaims(ctx, fold, k.dropReader)
	ours := func(m map[string][]int32) []int {
		var ps []int
		for _, p := range m[k.cfg.Topic] {
			ps = append(ps, int(p))
		}
		return ps
	}
	revoke := func(_ context.Context, _ *kgo.Client, m map[string][]int32) { c.stop(ours(m)...) }
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.cfg.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(k.cfg.Topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			for _, p := range ours(m) {
				c.start(p)
			}
		}),
		kgo.OnPartitionsRevoked(revoke), kgo.OnPartitionsLost(revoke),
	}
	if t := k.cfg.SessionTimeout; t > 0 {
		opts = append(opts, kgo.SessionTimeout(t), kgo.HeartbeatInterval(t/5))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	cl.PauseFetchTopics(k.cfg.Topic)
	<-ctx.Done()
	cl.Close() // leaves the group, which revokes what is left
	return c.stopAll()
}

// End implements Log, from the brokers' end offsets (cached for 100 ms: processors and metrics
// ask often).
func (k *Kafka) End(p int) (int64, error) {
	k.mu.Lock()
	fresh := time.Since(k.endsAt) < 100*time.Millisecond && k.ends != nil
	k.mu.Unlock()
	if !fresh {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		offs, err := k.admin.ListEndOffsets(ctx, k.cfg.Topic)
		if err != nil {
			return 0, err
		}
		ends := map[int32]int64{}
		offs.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
		k.mu.Lock()
		k.ends, k.endsAt = ends, time.Now()
		k.mu.Unlock()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ends[int32(p)], nil
}

// Ping checks that the cluster answers and has the topic, within ctx.
func (k *Kafka) Ping(ctx context.Context) error {
	details, err := k.admin.ListTopics(ctx, k.cfg.Topic)
	if err != nil {
		return err
	}
	if td, ok := details[k.cfg.Topic]; !ok || td.Err != nil {
		return fmt.Errorf("topic %s is not there (%v)", k.cfg.Topic, td.Err)
	}
	return nil
}

// Close implements Log.
func (k *Kafka) Close() error {
	k.closeOnce.Do(func() {
		k.mu.Lock()
		for _, pr := range k.readers {
			pr.cl.Close()
		}
		k.mu.Unlock()
		k.prod.Close()
	})
	return nil
}

// traceOf is the trace context in a record's headers; nil for an untraced record.
func traceOf(r *kgo.Record) map[string]string {
	var m map[string]string
	for _, h := range r.Headers {
		if h.Key == "traceparent" || h.Key == "tracestate" {
			if m == nil {
				m = map[string]string{}
			}
			m[h.Key] = string(h.Value)
		}
	}
	return m
}
