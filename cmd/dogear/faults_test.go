package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postBatch sends n finish events with ids prefix-i and reports the status and Retry-After.
func postBatch(t *testing.T, addr, prefix string, n int) (int, string) {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"id":"%s-%d","type":"session","reader":"r%d","book":"b%d","time":"2026-11-20T10:00:00Z","duration_ms":60000,"text":"%s"}`+"\n",
			prefix, i, i%50, i%20, strings.Repeat("x", 200))
	}
	resp, err := http.Post("http://"+addr+"/v1/events", "application/x-ndjson", strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// logIDs returns how many times each event id is in the log, via `dogear dump`.
func logIDs(t *testing.T, bin, dir string) map[string]int {
	t.Helper()
	out, err := exec.Command(bin, "dump", "--data-dir", dir).Output()
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	ids := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Event struct{ ID string } `json:"event"`
		}
		json.Unmarshal(sc.Bytes(), &rec)
		ids[rec.Event.ID]++
	}
	return ids
}

func stopAndCheck(t *testing.T, bin, dir string, cmd *exec.Cmd, acked []string) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("shutdown: %v\n%s", err, tail(cmd))
	}
	ids := logIDs(t, bin, dir)
	for _, id := range acked {
		if ids[id] != 1 {
			t.Fatalf("acknowledged event %s is in the log %d times", id, ids[id])
		}
	}
	if out, err := exec.Command(bin, "rebuild", "--check", "--data-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("state differs from a rebuild: %v\n%s", err, out)
	}
}

func ackedIDs(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// TestDiskFullRefusesThenRecovers puts the data directory on a small tmpfs, fills the disk
// until ingest must refuse, and frees it again.
func TestDiskFullRefusesThenRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the real binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", "-l", mnt).Run()
	bin := buildBinary(t)
	dir := filepath.Join(mnt, "data")
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--addr", addr, "--cache-mb", "16", "--min-free-mb", "150")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, addr)
	var acked []string
	if s, _ := postBatch(t, addr, "before", 500); s != 200 {
		t.Fatalf("ingest with space: %d", s)
	}
	acked = append(acked, ackedIDs("before", 500)...)

	// Leave ~100 MB free: below the 150 MB floor.
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	free := int64(st.Bavail) * int64(st.Bsize)
	filler := filepath.Join(mnt, "filler")
	if out, err := exec.Command("fallocate", "-l", fmt.Sprint(free-100<<20), filler).CombinedOutput(); err != nil {
		t.Fatalf("fallocate: %v %s", err, out)
	}
	s, retry := postBatch(t, addr, "full", 500)
	if s != 503 || retry == "" {
		t.Fatalf("ingest on a full disk: %d (Retry-After %q), want 503 with Retry-After", s, retry)
	}
	os.Remove(filler)
	if s, _ := postBatch(t, addr, "after", 500); s != 200 {
		t.Fatalf("ingest after space returned: %d", s)
	}
	acked = append(acked, ackedIDs("after", 500)...)
	waitLag0(t, addr)
	stopAndCheck(t, bin, dir, cmd, acked)
	if ids := logIDs(t, bin, dir); ids["full-0"] != 0 {
		t.Fatal("an event refused with 503 is in the log")
	}
}

// TestTornWriteAtLogEnd kills the server, then leaves a torn, partially written record at the
// end of the newest write-ahead log, as a power cut in the middle of a write would. The restart
// must detect it, recover everything acknowledged, and go on.
func TestTornWriteAtLogEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the real binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := startProcess(t, bin, dir, addr)
	var acked []string
	for i := 0; i < 5; i++ {
		prefix := fmt.Sprintf("torn%d", i)
		if s, _ := postBatch(t, addr, prefix, 300); s != 200 {
			t.Fatalf("ingest: %d", s)
		}
		acked = append(acked, ackedIDs(prefix, 300)...)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	logs, _ := filepath.Glob(filepath.Join(dir, "log", "*.log"))
	if len(logs) == 0 {
		t.Fatal("no write-ahead log found")
	}
	sort.Strings(logs)
	newest := logs[len(logs)-1]
	f, err := os.OpenFile(newest, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A chunk header promising 4000 bytes (wrong checksum) followed by only part of them.
	torn := append([]byte{0xde, 0xad, 0xbe, 0xef, 0xa0, 0x0f, 0x01}, bytes.Repeat([]byte{0x5a}, 700)...)
	f.Write(torn)
	f.Close()

	addr = freeAddr(t)
	cmd = startProcess(t, bin, dir, addr)
	if s, _ := postBatch(t, addr, "after-torn", 300); s != 200 {
		t.Fatalf("ingest after recovery: %d", s)
	}
	acked = append(acked, ackedIDs("after-torn", 300)...)
	waitLag0(t, addr)
	stopAndCheck(t, bin, dir, cmd, acked)
}

func waitHealthy(t *testing.T, addr string) {
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitLag0(t *testing.T, addr string) {
	for deadline := time.Now().Add(60 * time.Second); ; {
		var st struct {
			Lag int64 `json:"processor_lag_events"`
		}
		if resp, err := http.Get("http://" + addr + "/v1/stats"); err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Lag == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("processors did not catch up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail is the end of a process's standard error, when the test captured it.
func tail(cmd *exec.Cmd) string {
	b, ok := cmd.Stderr.(*bytes.Buffer)
	if !ok {
		return ""
	}
	s := b.String()
	if len(s) > 12000 {
		s = s[len(s)-12000:]
	}
	return s
}
