package processor_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/state"
)

// quiet is the logger of the package's processors: tests read state, not logs.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// openStores opens an embedded log of the given partitions and a state store, each in a
// folder of its own, closed when the test ends.
func openStores(t *testing.T, partitions int) (*eventlog.Pebble, *state.Pebble) {
	t.Helper()
	log, err := eventlog.OpenPebble(t.TempDir(), partitions, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	st, err := state.OpenPebble(t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return log, st
}

func entries(t *testing.T, n int, seed uint64) []eventlog.Entry {
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	evs := loadgen.New(loadgen.Config{Readers: 30, Books: 15, Seed: seed, Start: end.Add(-20 * 24 * time.Hour), End: end}).Batch(n)
	out := make([]eventlog.Entry, len(evs))
	for i := range evs {
		out[i] = eventlog.Entry{ID: evs[i].ID, Key: evs[i].Reader, Value: evs[i].Encode()}
	}
	return out
}

// TestMirroredDuplicatesCountOnce feeds the same events through a local topic and a mirrored
// one (as MirrorMaker 2 would), plus some only through one of them, to a consumer-group processor
// reading both: the state equals folding each event once.
func TestMirroredDuplicatesCountOnce(t *testing.T) {
	ctx := context.Background()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	open := func(topic string) *eventlog.Kafka {
		l, err := eventlog.OpenKafka(ctx, eventlog.KafkaConfig{Brokers: cluster.ListenAddrs(), Topic: topic, Partitions: 4, Replication: 3, CreateTopic: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	local, mirror := open("events"), open("us.events")
	all := entries(t, 2000, 5)
	if _, err := local.Append(ctx, all[:1500]); err != nil {
		t.Fatal(err)
	}
	if _, err := mirror.Append(ctx, all[500:]); err != nil { // 1000 in both, 500 only mirrored
		t.Fatal(err)
	}

	// The reference: every event once, through one topic. Both fold with Apply, which records ids.
	once := open("once")
	if _, err := once.Append(ctx, all); err != nil {
		t.Fatal(err)
	}
	ref := foldTopics(t, once)
	st := foldTopics(t, local, mirror)
	if diff, err := state.Diff(st, ref); err != nil || diff != "" {
		t.Fatalf("mirrored copies changed state: %s %v", diff, err)
	}
}

// foldTopics folds logs, the first the local one and the others mirrors, into a new store with a
// consumer-group processor, and returns the store once it has folded them to their ends.
func foldTopics(t *testing.T, local eventlog.Log, mirrors ...eventlog.Log) state.Store {
	t.Helper()
	st, err := state.OpenPebble(t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- processor.New(local, st, processor.Config{Group: "processors", Mirrors: mirrors, Logger: quiet}).Run(ctx)
	}()
	topics := map[int]eventlog.Log{0: local}
	for i, m := range mirrors {
		topics[i+1] = m
	}
	waitOffsets(t, st, topics)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return st
}

// waitOffsets waits until state's offsets reach the end of every partition of every log, each
// committing to the slots of its source number.
func waitOffsets(t *testing.T, st state.Store, topics map[int]eventlog.Log) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		behind := false
		for ti, l := range topics {
			for p := 0; p < l.Partitions(); p++ {
				end, _ := l.End(p)
				off, _ := st.Offset(ti*state.SlotStride + p)
				if off < end {
					behind = true
				}
			}
		}
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the processor did not catch up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
