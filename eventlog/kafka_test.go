package eventlog_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/eventlog/logtest"
)

var topicSeq atomic.Int64

// TestKafkaConformance runs the event-log suite against Kafka's wire protocol: franz-go's
// in-process three-broker cluster (kfake), through the same client code used in production.
func TestKafkaConformance(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	logtest.Run(t, func(t *testing.T) logtest.Opener {
		topic := fmt.Sprintf("events-%d", topicSeq.Add(1))
		return func(t *testing.T) eventlog.Log {
			l, err := eventlog.OpenKafka(context.Background(), eventlog.KafkaConfig{
				Brokers: cluster.ListenAddrs(), Topic: topic, Partitions: 4, Replication: 3, CreateTopic: true, SessionTimeout: 6 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}, logtest.Options{SharedByProcesses: true})
}

func TestKafkaRefusesOtherPartitionCount(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := eventlog.KafkaConfig{Brokers: cluster.ListenAddrs(), Topic: "t", Partitions: 4, Replication: 1, CreateTopic: true}
	l, err := eventlog.OpenKafka(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	cfg.Partitions = 8
	if _, err := eventlog.OpenKafka(context.Background(), cfg); err == nil {
		t.Fatal("opened a 4-partition topic as 8 partitions")
	}
}

func TestParseKafkaURL(t *testing.T) {
	c, err := eventlog.ParseKafkaURL("kafka://b1:9092,b2:9092/reading-events")
	if err != nil || len(c.Brokers) != 2 || c.Topic != "reading-events" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := eventlog.ParseKafkaURL("kafka://b1"); err == nil {
		t.Fatal("accepted a URL without a topic")
	}
}
