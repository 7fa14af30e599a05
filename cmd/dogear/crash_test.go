package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/loadgen"
)

var crashTrials = flag.Int("crash.trials", 5, "SIGKILL trials in TestCrashLosesNoAcknowledgedEvent")

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildBinary compiles dogear once per test binary: the crash, fault and scale-out tests need
// real processes to kill.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dogear-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "dogear")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startProcess(t *testing.T, bin, dir, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--addr", addr, "--cache-mb", "32", "--partitions", "4")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("server did not come up: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashLosesNoAcknowledgedEvent starts the real binary, drives sustained ingest from several
// clients, SIGKILLs it at a random moment, restarts it, and repeats. At the end every
// acknowledged event must be in the log exactly once (no id twice at all), and the state must
// equal a rebuild from the log.
func TestCrashLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	acked := map[string]bool{}
	var ackedMu sync.Mutex
	gcfg := loadgen.DefaultConfig()
	gcfg.Readers, gcfg.Books = 500, 100
	gen := loadgen.New(gcfg)
	var genMu sync.Mutex

	for trial := 0; trial < *crashTrials; trial++ {
		addr := freeAddr(t)
		cmd := startProcess(t, bin, dir, addr)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for c := 0; c < 4; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 10 * time.Second}
				for ctx.Err() == nil {
					genMu.Lock()
					batch := gen.Batch(50 + rng.IntN(200))
					genMu.Unlock()
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/events", bytes.NewReader(loadgen.EncodeBody(batch, false)))
					resp, err := client.Do(req)
					if err != nil {
						continue // killed mid-request: not acknowledged, may or may not be stored
					}
					var r struct {
						Accepted int               `json:"accepted"`
						Refused  []json.RawMessage `json:"refused"`
					}
					json.NewDecoder(resp.Body).Decode(&r)
					resp.Body.Close()
					if resp.StatusCode == 200 && r.Accepted == len(batch) {
						ackedMu.Lock()
						for _, e := range batch {
							acked[e.ID] = true
						}
						ackedMu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		cancel()
		wg.Wait()
	}
	if len(acked) == 0 {
		t.Fatal("no batch was acknowledged before the kills; the test proves nothing")
	}

	// One last clean start lets processors catch up after the last kill, then a clean stop.
	addr := freeAddr(t)
	cmd := startProcess(t, bin, dir, addr)
	waitLag0(t, addr)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("clean shutdown: %v", err)
	}

	out, err := exec.Command(bin, "dump", "--data-dir", dir).Output()
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	count := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Event struct {
				ID string `json:"id"`
			} `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("dump line %q: %v", sc.Text(), err)
		}
		count[rec.Event.ID]++
	}
	lost, twice := 0, 0
	for id := range acked {
		if count[id] == 0 {
			lost++
		}
	}
	for _, n := range count {
		if n > 1 {
			twice++
		}
	}
	t.Logf("%d trials: %d events acknowledged, %d in the log, lost %d, stored twice %d", *crashTrials, len(acked), len(count), lost, twice)
	if lost > 0 || twice > 0 {
		t.Fatalf("lost %d acknowledged events; %d ids stored more than once", lost, twice)
	}
	if out, err := exec.Command(bin, "rebuild", "--check", "--data-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("state differs from a rebuild after crashes: %v\n%s", err, out)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}
