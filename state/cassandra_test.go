package state_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/dogear-dev/dogear/state"
	"github.com/dogear-dev/dogear/state/storetest"
)

// TestCassandraConformance runs the state-store suite against a real Cassandra (or ScyllaDB)
// when DOGEAR_TEST_CASSANDRA=host:port names one. No such server can run on this project's
// machines, so CI skips it; see docs/distributed.md.
func TestCassandraConformance(t *testing.T) {
	addr := os.Getenv("DOGEAR_TEST_CASSANDRA")
	if addr == "" {
		t.Skip("DOGEAR_TEST_CASSANDRA not set: no Cassandra server to test against")
	}
	schema, err := os.ReadFile("../deploy/cassandra/schema.cql")
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		ks := fmt.Sprintf("dogear_test_%d", time.Now().UnixNano())
		boot := gocql.NewCluster(addr)
		s, err := boot.CreateSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cql := strings.ReplaceAll(string(schema), "dogear", ks)
		cql = strings.ReplaceAll(cql, "'class': 'NetworkTopologyStrategy', 'replication_factor': 3", "'class': 'SimpleStrategy', 'replication_factor': 1")
		for _, stmt := range strings.Split(cql, ";") {
			var lines []string
			for _, l := range strings.Split(stmt, "\n") {
				if !strings.HasPrefix(strings.TrimSpace(l), "--") {
					lines = append(lines, l)
				}
			}
			if q := strings.TrimSpace(strings.Join(lines, "\n")); q != "" {
				if err := s.Query(q).Exec(); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
		}
		return func(t *testing.T) state.Store {
			c, err := state.OpenCassandra([]string{addr}, ks)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	})
}

func TestParseCassandraURL(t *testing.T) {
	hosts, ks, err := state.ParseCassandraURL("cassandra://c1:9042,c2:9042/dogear")
	if err != nil || len(hosts) != 2 || ks != "dogear" {
		t.Fatalf("%v %q %v", hosts, ks, err)
	}
	if _, _, err := state.ParseCassandraURL("cassandra://c1"); err == nil {
		t.Fatal("accepted a URL without a keyspace")
	}
}
