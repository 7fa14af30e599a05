package processor

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dogear-dev/dogear/eventlog"
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

// RunGroup processes the partitions the group assigns to this member until ctx ends.
//
// The partition is the unit of ownership. The range balancer gives a member the same partition
// numbers of every topic, so one member folds all of a reader's events. On assignment the member
// starts each partition at the offset stored with its state (not at the group's committed offset,
// which is never relied on); rebalances wait until the batch in hand is committed
// (BlockRebalanceOnPoll), so no two members ever write a partition's state at once.
func RunGroup(ctx context.Context, cfg GroupConfig, store state.Store, owner PartitionOwner, logger *slog.Logger) error {
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
			logger.Info("partitions assigned", "partitions", fmt.Sprint(assigned))
		}),
		kgo.OnPartitionsRevoked(release(owner, logger)),
		kgo.OnPartitionsLost(release(owner, logger)),
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
	p := &Processor{store: store, logger: logger}
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
			w.Reset()
			if err := p.fold(tx, int(fp.Partition), recs); err != nil {
				commitErr = err
				return
			}
			commitErr = store.Commit(slot(fp.Topic, fp.Partition), recs[len(recs)-1].Offset+1, &w)
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
