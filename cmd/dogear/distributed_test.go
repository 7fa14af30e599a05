package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/state"
)

// TestScaleOutOverKafka runs one ingest process and three processor processes in one consumer
// group on Kafka's wire protocol (franz-go's kfake cluster), kills a processor with SIGKILL in the
// middle of the stream, and checks that the final state equals a single embedded process fed the
// same events.
func TestScaleOutOverKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs four processes")
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	bin := buildBinary(t)
	const partitions = 8
	logURL := "kafka://" + strings.Join(cluster.ListenAddrs(), ",") + "/events"
	shared := t.TempDir()
	start := func(role string, extra ...string) (*exec.Cmd, string) {
		addr := freeAddr(t)
		args := append([]string{"serve", "--roles", role, "--log", logURL, "--partitions", fmt.Sprint(partitions),
			"--addr", addr, "--data-dir", t.TempDir()}, extra...)
		cmd := exec.Command(bin, args...)
		var logbuf strings.Builder
		cmd.Stderr = &lockedWriter{w: &logbuf}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s %s log:\n%s", role, addr, cmd.Stderr.(*lockedWriter).String())
			}
		})
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitHealthy(t, addr)
		return cmd, addr
	}
	_, ingestAddr := start("ingest")
	var procs []*exec.Cmd
	var procAddrs []string
	for i := 0; i < 3; i++ {
		c, a := start("process", "--state", "partitioned://"+shared, "--group-session-timeout", "6s")
		procs, procAddrs = append(procs, c), append(procAddrs, a)
	}

	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := loadgen.New(loadgen.Config{Readers: 300, Books: 60, Seed: 21, Start: end.Add(-30 * 24 * time.Hour), End: end}).Batch(12000)
	for i := 0; i < len(events); i += 400 {
		if i == 6000 {
			// Mid-stream, once the victim owns partitions and has folded some of them.
			for deadline := time.Now().Add(20 * time.Second); ; {
				var st processor.GroupStatus
				if resp, err := http.Get("http://" + procAddrs[1] + "/v1/processor"); err == nil {
					json.NewDecoder(resp.Body).Decode(&st)
					resp.Body.Close()
				}
				if len(st.Owned["events"]) > 0 {
					t.Logf("killing a processor that owns partitions %v (lag %d)", st.Owned["events"], st.Lag)
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the third processor never got partitions")
				}
				time.Sleep(100 * time.Millisecond)
			}
			procs[1].Process.Signal(syscall.SIGKILL)
		}
		body := loadgen.EncodeBody(events[i:i+400], false)
		resp, err := http.Post("http://"+ingestAddr+"/v1/events", "application/x-ndjson", strings.NewReader(string(body)))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("ingest batch %d: %v %v", i/400, err, resp.Status)
		}
		resp.Body.Close()
	}

	// Wait until the two survivors own every partition and have folded everything.
	live := []string{procAddrs[0], procAddrs[2]}
	for deadline := time.Now().Add(30 * time.Second); ; {
		owned, lag := map[int32]bool{}, int64(0)
		for _, a := range live {
			var st processor.GroupStatus
			if resp, err := http.Get("http://" + a + "/v1/processor"); err == nil {
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
			}
			for _, p := range st.Owned["events"] {
				owned[p] = true
			}
			lag += st.Lag
		}
		if len(owned) == partitions && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("survivors own %d of %d partitions with lag %d", len(owned), partitions, lag)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, i := range []int{0, 2} {
		procs[i].Process.Signal(syscall.SIGTERM)
		procs[i].Wait()
	}

	got, err := state.OpenPartitioned(shared, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if err := got.AcquireAll(partitions); err != nil {
		t.Fatal(err)
	}
	// The reference: one embedded process, the same events.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	elog, _ := eventlog.OpenPebble(t.TempDir(), partitions, 16<<20)
	defer elog.Close()
	var entries []eventlog.Entry
	for _, e := range events {
		entries = append(entries, eventlog.Entry{ID: e.ID, Key: e.Reader, Value: e.Marshal()})
	}
	if _, err := elog.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	ref, _ := state.OpenPebble(t.TempDir(), 16<<20)
	defer ref.Close()
	proc, _ := processor.New(elog, ref, quiet)
	if err := proc.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff, err := state.Diff(got, ref); err != nil || diff != "" {
		t.Fatalf("scaled-out state differs from one embedded process: %s %v", diff, err)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
