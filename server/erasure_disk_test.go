package server_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/server"
)

var eraseEvents = flag.Int("erase.events", 200_000, "events in the data directory of TestErasureLeavesNoByteWhileRunning")

// filesHolding lists the files under dir that contain any of the needles, with where.
func filesHolding(t *testing.T, dir string, needles ...[]byte) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // files come and go while the server runs
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, n := range needles {
			if i := bytes.Index(b, n); i >= 0 {
				found = append(found, fmt.Sprintf("%s holds %q at byte %d", strings.TrimPrefix(path, dir), n, i))
			}
		}
		return nil
	})
	return found
}

// An erasure leaves no byte of the reader anywhere in the data directory — log, state, kosync,
// archive, models; keys and values; tables, write-ahead logs and manifests — while the server
// keeps running and other readers' traffic keeps arriving, on a data directory of a realistic
// size (go test -run ErasureLeaves -erase.events 800000 for a larger one).
func TestErasureLeavesNoByteWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a large data directory")
	}
	dir := t.TempDir()
	srv, url := start(t, func(c *server.Config) { c.DataDir, c.CacheBytes = dir, 32<<20 })
	cfg := loadgen.DefaultConfig()
	cfg.Readers, cfg.Books, cfg.Seed = 3000, 800, 11
	gen := loadgen.New(cfg)
	// One generated reader becomes the one to erase, under an id and with a passage nobody else has.
	const stand, target, passage = "reader-000042", "erase-me-7f3a91", "a passage only she highlighted 5be0"
	body := func(n int) []byte {
		var buf bytes.Buffer
		loadgen.EncodeNDJSON(&buf, gen.Batch(n))
		return bytes.ReplaceAll(buf.Bytes(), []byte(stand), []byte(target))
	}
	postOK := func(b []byte) {
		if r := post(t, url, b, nil); r.status != 200 {
			t.Fatalf("ingest: %d %v", r.status, r.body)
		}
	}
	for sent := 0; sent < *eraseEvents; sent += 10_000 {
		postOK(body(10_000))
	}
	postOK([]byte(fmt.Sprintf(`{"id":"secret-1","type":"highlight","reader":%q,"book":"book-00001","time":"2026-11-20T10:00:00Z","text":%q}`, target, passage)))
	req, _ := http.NewRequest(http.MethodPost, url+"/kosync/users/create", strings.NewReader(`{"username":"`+target+`","password":"k"}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("kosync register: %v", err)
	}
	waitProcessed(t, srv)
	if _, err := srv.Archiver().RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Trainer().TrainOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if held := filesHolding(t, dir, []byte(target), []byte(passage)); len(held) == 0 {
		t.Fatal("the reader is nowhere on disk before the erasure: the test would prove nothing")
	}

	// Other readers keep sending while the reader is erased. The generator drops the stand-in's
	// events from now on: new events of the erased id would be new data, rightly kept.
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var buf bytes.Buffer
			for _, e := range gen.Batch(2000) {
				if e.Reader != stand {
					loadgen.EncodeNDJSON(&buf, []event.Event{e})
				}
			}
			post(t, url, buf.Bytes(), nil)
		}
	}()
	began := time.Now()
	if s, body := call(t, "DELETE", url+"/v1/readers/"+target, "", ""); s != 200 {
		t.Fatalf("erase: %d %s", s, body)
	}
	took := time.Since(began)
	held := filesHolding(t, dir, []byte(target), []byte(passage))
	close(stop)
	traffic.Wait()
	t.Logf("erasure of one reader from %d events took %v", *eraseEvents, took)
	if len(held) > 0 {
		t.Fatalf("after the erasure answered, with the server running:\n%s", strings.Join(held, "\n"))
	}
}
