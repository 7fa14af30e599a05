package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/server"
	"github.com/dogear-dev/dogear/state"
)

// readyz returns /readyz's status and its checks.
func readyz(t *testing.T, url string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Checks
}

func freePorts(t *testing.T, n int) []int {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
	return ports
}

// An ingest role whose Kafka brokers stop answering is not ready, says why, and is ready again
// once they are back.
func TestReadyzFollowsKafka(t *testing.T) {
	ports := freePorts(t, 3)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.Ports(ports...))
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Partitions = t.TempDir(), "127.0.0.1:0", 4
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Roles = []string{"ingest"}
	cfg.Log = "kafka://" + strings.Join(cluster.ListenAddrs(), ",") + "/events"
	srv, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	url := "http://" + srv.Addr()
	if code, checks := readyz(t, url); code != 200 || checks["kafka"] != "ok" {
		t.Fatalf("with Kafka up: %d %v", code, checks)
	}
	cluster.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, checks := readyz(t, url)
		if code == 503 && strings.Contains(checks["kafka"], "Kafka does not answer") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with Kafka down: %d %v", code, checks)
		}
	}
	if cluster, err = kfake.NewCluster(kfake.NumBrokers(3), kfake.Ports(ports...), kfake.SeedTopics(4, "events")); err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, checks := readyz(t, url)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kafka is back, /readyz still says %d %v", code, checks)
		}
	}
}

// The embedded process reports every check.
func TestReadyzEmbeddedChecks(t *testing.T) {
	_, url := start(t, nil)
	if code, checks := readyz(t, url); code != 200 || checks["processors"] != "ok" || checks["disk"] != "ok" || checks["running"] != "ok" {
		t.Fatalf("idle: %d %v", code, checks)
	}
}

// A process role that cannot fold a partition it was given (another process still holds the
// partition's state) lags, and is not ready until the state is let go and it catches up.
func TestReadyzFollowsLag(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	logURL := "kafka://" + strings.Join(cluster.ListenAddrs(), ",") + "/events"
	kcfg, _ := eventlog.ParseKafkaURL(logURL)
	kcfg.Partitions, kcfg.Replication = 2, 1
	log, err := eventlog.OpenKafka(t.Context(), kcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var entries []eventlog.Entry
	for i := range 50 {
		e := event.Event{ID: fmt.Sprintf("e%d", i), Type: event.Finish, Reader: fmt.Sprintf("r%d", i), Book: "b1", Time: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)}
		entries = append(entries, eventlog.Entry{ID: e.ID, Key: e.Reader, Value: e.Encode()})
	}
	if _, err := log.Append(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	holder, err := state.OpenPartitioned(stateDir, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.Acquire(t.Context(), 0); err != nil {
		t.Fatal(err)
	}

	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Partitions, cfg.ReadyMaxLag = t.TempDir(), "127.0.0.1:0", 2, 1
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Roles, cfg.Log, cfg.State = []string{"process"}, logURL, "partitioned://"+stateDir
	srv, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	url := "http://" + srv.Addr()
	until(t, "partition 0 held elsewhere, /readyz did not report the lag", func() bool {
		code, checks := readyz(t, url)
		return code == 503 && strings.Contains(checks["processors"], "events behind the log")
	})
	if err := holder.Release(0); err != nil {
		t.Fatal(err)
	}
	until(t, "partition 0 let go, the process did not turn ready", func() bool {
		code, _ := readyz(t, url)
		return code == 200 && srv.Processor().TotalLag() == 0
	})
}

func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// Configurations that cannot work are refused before anything opens, naming the setting to change.
func TestStartRefusesUnworkableRoles(t *testing.T) {
	for _, c := range []struct {
		mod  func(*server.Config)
		want string
	}{
		{func(c *server.Config) { c.Roles = []string{"ingest", "search"} }, `roles: unknown role "search"`},
		{func(c *server.Config) { c.Roles = []string{"api"} }, "roles apart need shared backends"},
		{func(c *server.Config) { c.Keys = "dir:///tmp/keys" }, "go with a log on Kafka"},
		{func(c *server.Config) { c.Roles, c.Log = []string{"process"}, "kafka://127.0.0.1:1/events" }, "need state"},
		{func(c *server.Config) {
			c.Roles, c.Log, c.State = []string{"api"}, "kafka://127.0.0.1:1/events", "partitioned:///tmp/p"
		}, "need shared state"},
		{func(c *server.Config) {
			c.Roles, c.Log, c.Keys = []string{"archive"}, "kafka://127.0.0.1:1/events", "dir:///tmp/keys"
		}, "plain Parquet"},
	} {
		cfg := server.DefaultConfig()
		cfg.DataDir, cfg.Addr = t.TempDir(), "127.0.0.1:0"
		c.mod(&cfg)
		srv, err := server.Start(cfg)
		if err == nil {
			srv.Shutdown(t.Context())
			t.Fatalf("started with roles %v log %q state %q keys %q", cfg.Roles, cfg.Log, cfg.State, cfg.Keys)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Fatalf("refused with %q, want it to say %q", err, c.want)
		}
	}
}
