package main

import (
	"bufio"
	"bytes"
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
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/processor"
	"github.com/dogear-dev/dogear/shred"
	"github.com/dogear-dev/dogear/state"
)

// TestScaleOutOverKafka runs one ingest process and three processor processes in one consumer
// group on Kafka's wire protocol (franz-go's kfake cluster), with events sealed by their readers'
// keys. In the middle of the stream it exports one reader and erases them, and kills a processor
// with SIGKILL. It checks that the export held exactly that reader's events, that nothing of the
// erased reader can be read back from the topic, and that the final state equals a single
// embedded process fed the same events without that reader's.
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
	shared, keysDir := t.TempDir(), t.TempDir()
	keysURL := "dir://" + keysDir
	start := func(role string, extra ...string) (*exec.Cmd, string) {
		return startServe(t, bin, role, append([]string{"--roles", role, "--log", logURL, "--partitions", fmt.Sprint(partitions),
			"--data-dir", t.TempDir()}, extra...)...)
	}
	_, ingestAddr := start("ingest", "--keys", keysURL)
	var procs []*exec.Cmd
	var procAddrs []string
	for i := 0; i < 3; i++ {
		c, a := start("process", "--state", "partitioned://"+shared, "--group-session-timeout", "6s", "--keys", keysURL)
		procs, procAddrs = append(procs, c), append(procAddrs, a)
	}

	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := loadgen.New(loadgen.Config{Readers: 300, Books: 60, Seed: 21, Start: end.Add(-30 * 24 * time.Hour), End: end}).Batch(12000)
	// One reader is exported and erased at event 4000; their events after it are not sent.
	const target, passage = "reader-000007", "a passage only reader 7 highlighted 0c4e"
	var sentOfTarget []event.Event
	for i, e := range events {
		if e.Reader == target {
			events[i].Type, events[i].Text = event.Highlight, passage
			break
		}
	}
	for i := 0; i < len(events); i += 400 {
		if i == 4000 {
			exportAndErase(t, ingestAddr, target, sentOfTarget)
			kept := events[:i:i]
			for _, e := range events[i:] {
				if e.Reader != target {
					kept = append(kept, e)
				}
			}
			events = kept
		}
		for _, e := range events[i:min(i+400, len(events))] {
			if e.Reader == target {
				sentOfTarget = append(sentOfTarget, e)
			}
		}
		if i == 6000 {
			// Mid-stream, once the victim owns partitions and has folded some of them.
			for deadline := time.Now().Add(20 * time.Second); ; {
				var st processor.Status
				if resp, err := http.Get("http://" + procAddrs[1] + "/v1/processor"); err == nil {
					json.NewDecoder(resp.Body).Decode(&st)
					resp.Body.Close()
				}
				if len(st.Partitions) > 0 {
					t.Logf("killing a processor that owns partitions %v (lag %d)", st.Partitions, st.Lag)
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the third processor never got partitions")
				}
				time.Sleep(100 * time.Millisecond)
			}
			procs[1].Process.Signal(syscall.SIGKILL)
		}
		body := loadgen.EncodeBody(events[i:min(i+400, len(events))], false)
		resp, err := http.Post("http://"+ingestAddr+"/v1/events", "application/x-ndjson", strings.NewReader(string(body)))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("ingest batch %d: %v %v", i/400, err, resp.Status)
		}
		resp.Body.Close()
	}

	// Wait until the two survivors own every partition and have folded everything.
	live := []string{procAddrs[0], procAddrs[2]}
	for deadline := time.Now().Add(30 * time.Second); ; {
		owned, lag := map[int]bool{}, int64(0)
		for _, a := range live {
			var st processor.Status
			if resp, err := http.Get("http://" + a + "/v1/processor"); err == nil {
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
			}
			for _, p := range st.Partitions {
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
	for p := range partitions {
		if _, err := got.Acquire(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	// The reference: one embedded process, the same events.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	elog, _ := eventlog.OpenPebble(t.TempDir(), partitions, 16<<20)
	defer elog.Close()
	var entries []eventlog.Entry
	for _, e := range events {
		if e.Reader != target {
			entries = append(entries, eventlog.Entry{ID: e.ID, Key: e.Reader, Value: e.Encode()})
		}
	}
	if _, err := elog.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	ref, _ := state.OpenPebble(t.TempDir(), 16<<20)
	defer ref.Close()
	// Seen as a plain Log, the embedded log is folded as Kafka's is, recording each event's id.
	if err := processor.New(struct{ eventlog.Log }{elog}, ref, processor.Config{Logger: quiet}).CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff, err := state.Diff(got, ref); err != nil || diff != "" {
		t.Fatalf("scaled-out state differs from one embedded process without the erased reader: %s %v", diff, err)
	}
	noCopyInTopic(t, cluster.ListenAddrs(), keysURL, target, passage)
}

// startServe runs `dogear serve` with args on a free loopback port until the test ends, and
// waits until it answers; its log is printed, under name, if the test fails.
func startServe(t *testing.T, bin, name string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, append([]string{"serve", "--addr", addr}, args...)...)
	log := &lockedWriter{w: &strings.Builder{}}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s %s log:\n%s", name, addr, log.String())
		}
	})
	waitHealthy(t, addr)
	return cmd, addr
}

// exportAndErase exports the reader through the ingest role, checks that the export holds exactly
// the events sent for them, and erases them; the answer comes once the processor of their
// partition carried the erasure out.
func exportAndErase(t *testing.T, addr, reader string, sent []event.Event) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/readers/" + reader + "/export")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("export: %v %v", err, resp.Status)
	}
	want := map[string]bool{}
	for _, e := range sent {
		want[e.ID] = true
	}
	got := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Kind  string      `json:"kind"`
			Event event.Event `json:"event"`
		}
		json.Unmarshal(sc.Bytes(), &line)
		if line.Kind != "event" || line.Event.Reader != reader || !want[line.Event.ID] {
			t.Fatalf("the export holds what was not sent for %s: %s", reader, sc.Bytes())
		}
		got[line.Event.ID] = true
	}
	resp.Body.Close()
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("export of %s: %d of the %d events sent", reader, len(got), len(want))
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+addr+"/v1/readers/"+reader, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"found":true`) {
		t.Fatalf("erase %s: %d %s", reader, resp.StatusCode, body)
	}
}

// noCopyInTopic reads every record of the topic: none holds the reader's id or passage in its
// bytes, and none of them opens to an event of the reader with the keys that remain.
func noCopyInTopic(t *testing.T, brokers []string, keysURL, reader, passage string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	keys, err := shred.OpenDirKeys(strings.TrimPrefix(keysURL, "dir://"))
	if err != nil {
		t.Fatal(err)
	}
	shredder := shred.New(keys)
	ctx := context.Background()
	seen, erased := 0, 0
	for {
		// Until a poll finds nothing new for 3 seconds: the whole topic has been read.
		pollCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if fetches.NumRecords() == 0 {
			break
		}
		fetches.EachRecord(func(r *kgo.Record) {
			seen++
			for _, h := range r.Headers {
				r.Key = append(r.Key, h.Value...)
			}
			for _, secret := range []string{reader, passage} {
				if bytes.Contains(r.Value, []byte(secret)) || bytes.Contains(r.Key, []byte(secret)) {
					t.Fatalf("record %d/%d holds %q", r.Partition, r.Offset, secret)
				}
			}
			opened, err := shredder.Open(ctx, r.Value)
			if err != nil {
				t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
			}
			if opened.Erased {
				erased++
			}
			if opened.Event != nil {
				if e, _ := event.Decode(opened.Event); e.Reader == reader {
					t.Fatalf("record %d/%d still opens to an event of the erased reader", r.Partition, r.Offset)
				}
			}
		})
	}
	if erased == 0 {
		t.Fatalf("read %d records and none was the erased reader's: the check proved nothing", seen)
	}
	t.Logf("%d records in the topic, %d of them the erased reader's and unreadable", seen, erased)
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
