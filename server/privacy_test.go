package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dogear-dev/dogear/archive"
	"github.com/dogear-dev/dogear/datadir"
	"github.com/dogear-dev/dogear/event"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/maintenance"
	"github.com/dogear-dev/dogear/server"
	"github.com/dogear-dev/dogear/state"
)

const (
	secretReader  = "erase-me-7f3a9c"
	secretPassage = "UNIQUE-PASSAGE-q8z7"
)

// history is other readers' events plus the reader to be erased, who reads the same books.
func history() (others, target []event.Event) {
	end := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	others = loadgen.New(loadgen.Config{Readers: 25, Books: 8, Seed: 11, Start: end.Add(-40 * 24 * time.Hour), End: end}).Batch(2500)
	for i, e := range loadgen.New(loadgen.Config{Readers: 1, Books: 8, Seed: 12, Start: end.Add(-40 * 24 * time.Hour), End: end}).Batch(300) {
		e.ID, e.Reader = fmt.Sprintf("secret-%d", i), secretReader
		if e.Type == event.Highlight {
			e.Text = secretPassage
		}
		target = append(target, e)
	}
	return others, target
}

func postAll(t *testing.T, url string, events []event.Event) {
	t.Helper()
	for i := 0; i < len(events); i += 700 {
		if r := post(t, url, loadgen.EncodeBody(events[i:min(i+700, len(events))], false), nil); r.status != 200 {
			t.Fatalf("post: %d %v", r.status, r.body)
		}
	}
}

func TestExportAndErasure(t *testing.T) {
	others, target := history()
	dirA := t.TempDir()
	a, urlA := start(t, func(c *server.Config) { c.DataDir = dirA })
	mixed := append(append([]event.Event(nil), others[:1200]...), target...)
	mixed = append(mixed, others[1200:]...)
	postAll(t, urlA, mixed)
	// The reader also syncs a KOReader device.
	req, _ := http.NewRequest(http.MethodPost, urlA+"/kosync/users/create", strings.NewReader(`{"username":"`+secretReader+`","password":"k"}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("kosync register: %v", err)
	}
	waitProcessed(t, a)
	if _, err := a.Trainer().TrainOnce(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Export: every event of the reader, then insights and the rest.
	resp, err := http.Get(urlA + "/v1/readers/" + secretReader + "/export")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("export: %v %v", err, resp.Status)
	}
	kinds := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var line struct {
			Kind  string `json:"kind"`
			Event struct {
				Reader string `json:"reader"`
			} `json:"event"`
		}
		json.Unmarshal(sc.Bytes(), &line)
		kinds[line.Kind]++
		if line.Kind == "event" && line.Event.Reader != secretReader {
			t.Fatalf("export holds another reader's event: %s", sc.Bytes())
		}
	}
	resp.Body.Close()
	if kinds["event"] != len(target) || kinds["insights"] != 1 || kinds["books"] != 1 || kinds["recommendations"] != 1 || kinds["kosync"] != 1 {
		t.Fatalf("export kinds %v, want %d events and one of each other kind", kinds, len(target))
	}

	archived := func() int {
		n := 0
		files, _ := a.Archiver().Store.List(context.Background(), "dt=")
		for _, f := range files {
			data, _ := a.Archiver().Store.Get(context.Background(), f)
			rows, err := archive.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.Reader == secretReader {
					n++
				}
			}
		}
		return n
	}
	if _, err := a.Archiver().RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := archived(); n != len(target) {
		t.Fatalf("%d of the reader's %d events archived before erasure", n, len(target))
	}

	req, _ = http.NewRequest(http.MethodDelete, urlA+"/v1/readers/"+secretReader, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("erase: %v %v", err, resp.Status)
	}
	if s := get(t, urlA+"/v1/readers/"+secretReader+"/insights", nil); s != 404 {
		t.Fatalf("insights after erasure: %d", s)
	}
	if n := archived(); n != 0 {
		t.Fatalf("%d of the reader's rows still in the Parquet archive", n)
	}

	// B never saw the reader: A's state must now be the same, key for key.
	b, urlB := start(t, nil)
	postAll(t, urlB, others)
	waitProcessed(t, b)
	if diff, err := state.Diff(a.State(), b.State()); err != nil || diff != "" {
		t.Fatalf("state after erasure differs from state without the reader: %s %v", diff, err)
	}
	for _, path := range []string{"/v1/stats", "/v1/trending?n=20", "/v1/books/book-00001/stats"} {
		var ra, rb bytes.Buffer
		for _, x := range []struct {
			url string
			buf *bytes.Buffer
		}{{urlA, &ra}, {urlB, &rb}} {
			resp, err := http.Get(x.url + path + sep(path) + "as_of=2026-11-01T00:00:00Z")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(x.buf, resp.Body)
			resp.Body.Close()
		}
		if ra.String() != rb.String() {
			t.Fatalf("%s after erasure:\n%s\nwithout the reader:\n%s", path, ra.String(), rb.String())
		}
	}

	// No byte of the reader is left in any file of A's data directory.
	a.Shutdown(context.Background())
	filepath.Walk(dirA, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, _ := os.ReadFile(path)
		for _, s := range []string{secretReader, secretPassage} {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s still holds %q", path, s)
			}
		}
		return nil
	})

	// A rebuild from the log does not bring the reader back.
	quiet, o := slog.New(slog.NewTextHandler(io.Discard, nil)), datadir.Options{CacheBytes: 16 << 20}
	dataDir := dirA
	if diff, err := maintenance.Verify(context.Background(), dataDir, o, quiet); err != nil || diff != "" {
		t.Fatalf("verify after erasure: %q %v", diff, err)
	}
	if err := maintenance.Rebuild(context.Background(), dataDir, o, quiet); err != nil {
		t.Fatal(err)
	}
	_, urlA2 := start(t, func(c *server.Config) { c.DataDir = dirA })
	if s := get(t, urlA2+"/v1/readers/"+secretReader+"/insights", nil); s != 404 {
		t.Fatalf("the reader came back after a rebuild: %d", s)
	}
}
