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

	"github.com/dogear-dev/dogear/server"
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

// The embedded process reports every check, and is not ready while processors lag beyond the
// bound.
func TestReadyzReportsLag(t *testing.T) {
	srv, url := start(t, func(c *server.Config) { c.ReadyMaxLag = 1 })
	if code, checks := readyz(t, url); code != 200 || checks["processors"] != "ok" || checks["disk"] != "ok" || checks["running"] != "ok" {
		t.Fatalf("idle: %d %v", code, checks)
	}
	var b strings.Builder
	for i := range 20_000 {
		fmt.Fprintf(&b, `{"id":"l%d","type":"finish","reader":"r%d","book":"b1","time":"2026-11-20T10:00:00Z"}`+"\n", i, i)
	}
	sawLag := false
	for range 5 {
		if r := post(t, url, []byte(b.String()), nil); r.status != 200 {
			t.Fatalf("ingest: %d", r.status)
		}
		// Right after 20,000 events are acknowledged, processors are usually still behind.
		if code, checks := readyz(t, url); code == 503 && strings.Contains(checks["processors"], "events behind the log") {
			sawLag = true
			break
		}
		b.Reset()
		for i := range 20_000 {
			fmt.Fprintf(&b, `{"id":"l%d-%d","type":"finish","reader":"r%d","book":"b1","time":"2026-11-20T10:00:00Z"}`+"\n", i, time.Now().UnixNano(), i)
		}
	}
	if !sawLag {
		t.Skip("processors kept up with every batch: this machine is too fast to catch them behind")
	}
	waitProcessed(t, srv)
	if code, checks := readyz(t, url); code != 200 {
		t.Fatalf("caught up: %d %v", code, checks)
	}
}
