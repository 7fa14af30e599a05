package processor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/shred"
	"github.com/dogear-dev/dogear/state"
)

// GroupConfig makes processors members of a Kafka consumer group.
type GroupConfig struct {
	Brokers []string
	Group   string
	// Topics: the local events topic first, then mirrored copies (MirrorMaker 2). The same
	// event arriving through two topics is applied once: state deduplicates by event id.
	Topics         []string
	Partitions     int
	SessionTimeout time.Duration
}

// PartitionOwner hands partition state to and from a group member (state.Partitioned). With a
// shared store (Cassandra) it is nil: every member sees every partition.
type PartitionOwner interface {
	Acquire(p int, timeout time.Duration) (*state.Pebble, error)
	Release(p int) error
}

// Group is a consumer-group processor; Status tells what it owns and how far behind it is.
type Group struct {
	cfg    GroupConfig
	store  state.Store
	owner  PartitionOwner
	log    *eventlog.Kafka // for end offsets
	logger *slog.Logger
	shred  *shred.Shredder // nil: events are not sealed

	mu    sync.Mutex
	owned map[string][]int32
}

// NewGroup prepares a member; log gives end offsets for Status. shredder, when not nil, opens
// sealed events and carries out erasure markers.
func NewGroup(cfg GroupConfig, store state.Store, owner PartitionOwner, log *eventlog.Kafka, shredder *shred.Shredder, logger *slog.Logger) *Group {
	return &Group{cfg: cfg, store: store, owner: owner, log: log, shred: shredder, logger: logger}
}

// GroupStatus is what a member owns and how many records of it are not yet folded.
type GroupStatus struct {
	Owned map[string][]int32 `json:"owned"`
	Lag   int64              `json:"processor_lag_events"`
}

// Status reports the member's partitions and lag on the local topic.
func (g *Group) Status() GroupStatus {
	g.mu.Lock()
	owned := map[string][]int32{}
	for t, ps := range g.owned {
		owned[t] = append([]int32(nil), ps...)
	}
	g.mu.Unlock()
	st := GroupStatus{Owned: owned}
	if g.log == nil {
		return st
	}
	for _, p := range owned[g.cfg.Topics[0]] {
		end, err := g.log.End(int(p))
		if err != nil {
			continue
		}
		off, err := g.store.Offset(int(p))
		if err != nil {
			continue
		}
		st.Lag += max(0, end-off)
	}
	return st
}

// Run processes until ctx ends.
func (g *Group) Run(ctx context.Context) error {
	return runGroup(ctx, g.cfg, g.store, g.owner, g.shred, g.logger, func(owned map[string][]int32) {
		g.mu.Lock()
		g.owned = owned
		g.mu.Unlock()
	})
}

// RunGroup processes the partitions the group assigns to this member until ctx ends.
//
// The partition is the unit of ownership. The range balancer gives a member the same partition
// numbers of every topic, so one member folds all of a reader's events. On assignment the member
// starts each partition at the offset stored with its state (not at the group's committed offset,
// which is never relied on); rebalances wait until the batch in hand is committed
// (BlockRebalanceOnPoll), so no two members ever write a partition's state at once.
func RunGroup(ctx context.Context, cfg GroupConfig, store state.Store, owner PartitionOwner, logger *slog.Logger) error {
	return runGroup(ctx, cfg, store, owner, nil, logger, nil)
}

func runGroup(ctx context.Context, cfg GroupConfig, store state.Store, owner PartitionOwner, shredder *shred.Shredder, logger *slog.Logger, onOwned func(map[string][]int32)) error {
	owned := map[string][]int32{}
	report := func() {
		if onOwned != nil {
			cp := map[string][]int32{}
			for t, ps := range owned {
				cp[t] = append([]int32(nil), ps...)
			}
			onOwned(cp)
		}
	}
	topicIndex := map[string]int{}
	for i, t := range cfg.Topics {
		topicIndex[t] = i
	}
	slot := func(topic string, p int32) int { return topicIndex[topic]*state.SlotStride + int(p) }
	var setupErr error
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumerGroup(cfg.Group), kgo.ConsumeTopics(cfg.Topics...),
		kgo.Balancers(kgo.RangeBalancer()), kgo.BlockRebalanceOnPoll(), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
			offsets := map[string]map[int32]kgo.EpochOffset{}
			for topic, parts := range assigned {
				offsets[topic] = map[int32]kgo.EpochOffset{}
				for _, p := range parts {
					if owner != nil {
						if _, err := owner.Acquire(int(p), 2*time.Minute); err != nil {
							setupErr = err
							return
						}
					}
					off, err := store.Offset(slot(topic, p))
					if err != nil {
						setupErr = err
						return
					}
					offsets[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: off}
				}
			}
			cl.SetOffsets(offsets)
			for topic, parts := range assigned {
				owned[topic] = append(owned[topic], parts...)
			}
			report()
			logger.Info("partitions assigned", "partitions", fmt.Sprint(assigned))
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
			forget(owned, lost)
			report()
			release(owner, logger)(ctx, cl, lost)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
			forget(owned, lost)
			report()
			release(owner, logger)(ctx, cl, lost)
		}),
	}
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout), kgo.HeartbeatInterval(cfg.SessionTimeout/5))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer func() {
		// Leaving the group revokes our partitions, which waits for rebalances to be allowed.
		cl.AllowRebalance()
		cl.Close()
	}()
	p := &Processor{store: store, logger: logger, shred: shredder}
	var w state.Writes
	tx := &overlay{store: store, w: &w}
	for {
		fetches := cl.PollRecords(ctx, BatchSize)
		if ctx.Err() != nil {
			return nil
		}
		if setupErr != nil {
			return setupErr
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			logger.Warn("fetch error; retrying", "err", ferr)
		}
		var commitErr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if commitErr != nil || len(fp.Records) == 0 {
				return
			}
			recs := make([]eventlog.Record, len(fp.Records))
			for i, r := range fp.Records {
				recs[i] = eventlog.Record{Partition: int(r.Partition), Offset: r.Offset, Value: r.Value}
			}
			for len(recs) > 0 && commitErr == nil {
				w.Reset()
				f, err := p.fold(ctx, tx, int(fp.Partition), recs)
				if err != nil {
					commitErr = err
					return
				}
				if commitErr = store.Commit(slot(fp.Topic, fp.Partition), recs[f.n-1].Offset+1, &w); commitErr == nil {
					commitErr = p.shredAfterCommit(ctx, f)
				}
				recs = recs[f.n:]
			}
		})
		if commitErr != nil {
			return commitErr
		}
		cl.AllowRebalance()
	}
}

func release(owner PartitionOwner, logger *slog.Logger) func(context.Context, *kgo.Client, map[string][]int32) {
	return func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
		if owner == nil {
			return
		}
		done := map[int32]bool{}
		for _, parts := range lost {
			for _, p := range parts {
				if !done[p] {
					done[p] = true
					if err := owner.Release(int(p)); err != nil {
						logger.Error("releasing partition state", "partition", p, "err", err)
					}
				}
			}
		}
	}
}

func forget(owned, lost map[string][]int32) {
	for topic, parts := range lost {
		gone := map[int32]bool{}
		for _, p := range parts {
			gone[p] = true
		}
		kept := owned[topic][:0]
		for _, p := range owned[topic] {
			if !gone[p] {
				kept = append(kept, p)
			}
		}
		owned[topic] = kept
	}
}
