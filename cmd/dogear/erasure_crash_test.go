package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/state"
)

// TestErasureSurvivesACrash erases a reader over Kafka with sealed events, SIGKILLs the process
// right after the erasure was carried out, and restarts it. The reader's key is gone by then, so
// the log cannot replay the erasure: the state that comes back must already be without them.
func TestErasureSurvivesACrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it")
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	bin := buildBinary(t)
	dataDir, stateDir, keysDir := t.TempDir(), t.TempDir(), t.TempDir()
	start := func() (*exec.Cmd, string) {
		return startServe(t, bin, "dogear", "--roles", "ingest,process", "--log", "kafka://"+strings.Join(cluster.ListenAddrs(), ",")+"/events",
			"--partitions", "4", "--state", "partitioned://"+stateDir, "--keys", "dir://"+keysDir, "--group-session-timeout", "6s",
			"--data-dir", dataDir)
	}
	caughtUp := func(addr string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			var st processor.Status
			if resp, err := http.Get("http://" + addr + "/v1/processor"); err == nil {
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
			}
			if len(st.Partitions) == 4 && st.Lag == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the processor owns partitions %v with lag %d", st.Partitions, st.Lag)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	cmd, addr := start()
	// Enough events that most of the state's write-ahead log reaches the disk before the erasure.
	end := time.Now().Truncate(time.Hour)
	events := loadgen.New(loadgen.Config{Readers: 200, Books: 40, Seed: 5, Start: end.Add(-30 * 24 * time.Hour), End: end}).Batch(4000)
	target := events[0].Reader
	for i := 0; i < len(events); i += 500 {
		resp, err := http.Post("http://"+addr+"/v1/events", "application/x-ndjson", bytes.NewReader(loadgen.EncodeBody(events[i:min(i+500, len(events))], false)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("ingest: %s %s", resp.Status, body)
		}
	}
	caughtUp(addr)
	req, _ := http.NewRequest(http.MethodDelete, "http://"+addr+"/v1/readers/"+target, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"found":true`) {
		t.Fatalf("erase %s: %d %s", target, resp.StatusCode, body)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	cmd, addr = start()
	caughtUp(addr)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	st, err := state.OpenPartitioned(stateDir, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for p := range 4 {
		if _, err := st.Acquire(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	keys, ofTarget := 0, 0
	st.Scan(nil, nil, func(k, v []byte) error {
		keys++
		if bytes.Contains(k, []byte(target)) || bytes.Contains(v, []byte(target)) {
			ofTarget++
		}
		return nil
	})
	if keys == 0 || ofTarget > 0 {
		t.Fatalf("after a crash and restart, %d of the state's %d records still hold the erased %s", ofTarget, keys, target)
	}
}
