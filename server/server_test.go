package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/dogear-dev/dogear/archive"
	"github.com/dogear-dev/dogear/datadir"
	"github.com/dogear-dev/dogear/ingest"
	"github.com/dogear-dev/dogear/internal/servertest"
	"github.com/dogear-dev/dogear/loadgen"
	"github.com/dogear-dev/dogear/maintenance"
	"github.com/dogear-dev/dogear/objstore"
	"github.com/dogear-dev/dogear/server"
)

func start(t *testing.T, mod func(*server.Config)) (*server.Server, string) {
	t.Helper()
	return servertest.Start(t, mod)
}

type reply struct {
	status int
	body   map[string]any
	resp   ingest.Response
	header http.Header
}

func post(t *testing.T, url string, body []byte, header map[string]string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/events", bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header}
	json.Unmarshal(raw, &r.body)
	json.Unmarshal(raw, &r.resp)
	return r
}

func get(t *testing.T, url string, v any) int {
	t.Helper()
	return servertest.GetJSON(t, url, v)
}

func ev(id, typ, extra string) string {
	return fmt.Sprintf(`{"id":%q,"type":%q,"reader":"ann","book":"b1","time":"2026-11-20T10:00:00Z"%s}`, id, typ, extra)
}

func waitProcessed(t *testing.T, srv *server.Server) {
	t.Helper()
	servertest.WaitProcessed(t, srv)
}

func TestIngestGoodAndBadInOneBatch(t *testing.T) {
	srv, url := start(t, nil)
	body := "[" + strings.Join([]string{
		ev("e1", "session", `,"duration_ms":600000`),
		ev("e2", "rating", `,"rating":"five"`),
		ev("e3", "progress", `,"position":0.5`),
		`{"id":"e4","type":"teleport","reader":"ann","book":"b1","time":"2026-11-20T10:00:00Z"}`,
		`{"id":"e5","type":"finish","book":"b1","time":"2026-11-20T10:00:00Z"}`,
	}, ",\n") + "]"
	r := post(t, url, []byte(body), nil)
	if r.status != 200 || r.resp.Accepted != 2 || len(r.resp.Refused) != 3 {
		t.Fatalf("status %d %+v", r.status, r.resp)
	}
	want := []ingest.Refusal{
		{Index: 1, Line: 2, ID: "e2", Field: "rating", Code: "wrong_json_type"},
		{Index: 3, Line: 4, ID: "e4", Field: "type", Code: "unknown_type"},
		{Index: 4, Line: 5, ID: "e5", Field: "reader", Code: "missing_field"},
	}
	for i, w := range want {
		got := r.resp.Refused[i]
		got.Reason = ""
		if got != w {
			t.Errorf("refusal %d = %+v, want %+v", i, r.resp.Refused[i], w)
		}
	}
	waitProcessed(t, srv)
	var ins map[string]any
	get(t, url+"/v1/readers/ann/insights?as_of=2026-11-20T12:00:00Z", &ins)
	if ins["total_reading_minutes"] != 10.0 || ins["events"] != 2.0 {
		t.Fatalf("the good events' effect is missing or the bad ones leaked: %v", ins)
	}
	// Resending the same batch changes nothing.
	r = post(t, url, []byte(body), nil)
	if r.resp.Accepted != 2 || r.resp.Duplicates != 2 {
		t.Fatalf("resend: %+v", r.resp)
	}
	waitProcessed(t, srv)
	get(t, url+"/v1/readers/ann/insights?as_of=2026-11-20T12:00:00Z", &ins)
	if ins["total_reading_minutes"] != 10.0 || ins["events"] != 2.0 {
		t.Fatalf("resend changed insights: %v", ins)
	}
}

func TestIngestFormatsAndCompression(t *testing.T) {
	srv, url := start(t, nil)
	nd := ev("n1", "finish", "") + "\n" + "{not json\n" + ev("n2", "shelve", "") + "\n"
	r := post(t, url, []byte(nd), nil)
	if r.status != 200 || r.resp.Accepted != 2 || len(r.resp.Refused) != 1 || r.resp.Refused[0].Line != 2 || r.resp.Refused[0].Code != "malformed_json" {
		t.Fatalf("ndjson with a broken line: %d %+v", r.status, r.resp)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(ev("g1", "finish", "")))
	zw.Close()
	if r := post(t, url, gz.Bytes(), map[string]string{"Content-Encoding": "gzip"}); r.status != 200 || r.resp.Accepted != 1 {
		t.Fatalf("gzip: %d %v", r.status, r.body)
	}
	enc, _ := zstd.NewWriter(nil)
	z := enc.EncodeAll([]byte("["+ev("z1", "finish", "")+"]"), nil)
	if r := post(t, url, z, map[string]string{"Content-Encoding": "zstd"}); r.status != 200 || r.resp.Accepted != 1 {
		t.Fatalf("zstd: %d %v", r.status, r.body)
	}
	// A truncated gzip stream is refused whole with a clear message, and nothing is stored.
	truncated := gz.Bytes()[:gz.Len()-6]
	r = post(t, url, truncated, map[string]string{"Content-Encoding": "gzip"})
	if r.status != 400 || !strings.Contains(r.body["error"].(string), "truncated or corrupt") {
		t.Fatalf("truncated gzip: %d %v", r.status, r.body)
	}
	r = post(t, url, []byte("hello"), map[string]string{"Content-Encoding": "br"})
	if r.status != 415 {
		t.Fatalf("unsupported encoding: %d %v", r.status, r.body)
	}
	r = post(t, url, []byte(`[`+ev("t1", "finish", "")+`,{"id":`), nil)
	if r.status != 400 || r.body["offset"] == nil || r.body["line"] != 1.0 {
		t.Fatalf("truncated array: %d %v", r.status, r.body)
	}
	r = post(t, url, []byte("  \n"), nil)
	if r.status != 400 || !strings.Contains(r.body["error"].(string), "no events") {
		t.Fatalf("empty body: %d %v", r.status, r.body)
	}
	r = post(t, url, []byte("{\"id\":\"u1\",\"type\":\"highlight\",\"reader\":\"ann\",\"book\":\"b1\",\"time\":\"2026-11-20T10:00:00Z\",\"text\":\"\xc3\x28\"}"), nil)
	if r.status != 400 || r.resp.Refused[0].Code != "invalid_utf8" || r.resp.Refused[0].Field != "text" {
		t.Fatalf("invalid utf-8: %d %v", r.status, r.body)
	}
	waitProcessed(t, srv)
	var st map[string]any
	get(t, url+"/v1/stats", &st)
	if got := st["totals"].(map[string]any)["events"]; got != 4.0 {
		t.Fatalf("events in state = %v, want 4 (n1 n2 g1 z1)", got)
	}
}

func TestIngestLimits(t *testing.T) {
	_, url := start(t, func(c *server.Config) {
		c.Ingest.MaxBodyBytes = 4096
		c.Ingest.MaxEvents = 3
	})
	big := bytes.Repeat([]byte(" "), 5000)
	if r := post(t, url, big, nil); r.status != 413 {
		t.Fatalf("oversized body: %d %v", r.status, r.body)
	}
	// A small gzip body that inflates past the limit (a zip bomb) is refused too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("\n"), 100_000))
	zw.Close()
	if r := post(t, url, gz.Bytes(), map[string]string{"Content-Encoding": "gzip"}); r.status != 413 || !strings.Contains(r.body["error"].(string), "decompressed") {
		t.Fatalf("gzip bomb: %d %v", r.status, r.body)
	}
	four := strings.Repeat(ev("x", "finish", "")+"\n", 4)
	if r := post(t, url, []byte(four), nil); r.status != 413 || !strings.Contains(r.body["error"].(string), "at most 3") {
		t.Fatalf("too many events: %d %v", r.status, r.body)
	}
}

func TestOverloadAnswers429(t *testing.T) {
	_, url := start(t, func(c *server.Config) { c.Ingest.MaxInFlight = 1 })
	// Hold the only slot with a request whose body never finishes arriving.
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[")
	time.Sleep(100 * time.Millisecond)
	r := post(t, url, []byte(ev("o1", "finish", "")), nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("with the slot taken: %d %v", r.status, r.body)
	}
}

// TestSlowClientsDoNotBlockOthers: many stalled connections (slowloris) leave the server
// answering everyone else.
func TestSlowClientsDoNotBlockOthers(t *testing.T) {
	_, url := start(t, nil)
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")) // headers never finished
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := post(t, url, []byte(ev(fmt.Sprintf("s%d", i), "finish", "")), nil)
			if r.status != 200 {
				t.Errorf("normal client behind slow ones: %d", r.status)
			}
		}(i)
	}
	wg.Wait()
}

func TestQueryErrors(t *testing.T) {
	_, url := start(t, nil)
	var body map[string]any
	if s := get(t, url+"/v1/readers/nobody/insights", &body); s != 404 {
		t.Fatalf("unknown reader: %d", s)
	}
	if s := get(t, url+"/v1/trending?as_of=yesterday", &body); s != 400 || body["field"] != "as_of" {
		t.Fatalf("bad as_of: %d %v", s, body)
	}
	if s := get(t, url+"/v1/trending?n=0", &body); s != 400 || body["field"] != "n" {
		t.Fatalf("bad n: %d %v", s, body)
	}
	if s := get(t, url+"/healthz", nil); s != 200 {
		t.Fatalf("healthz %d", s)
	}
	if s := get(t, url+"/readyz", nil); s != 200 {
		t.Fatalf("readyz %d", s)
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"dogear_processor_lag_events", "dogear_ingest_request_seconds", "dogear_eventlog_fsync_seconds"} {
		if !bytes.Contains(m, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestRebuildReproducesInsights(t *testing.T) {
	dir := t.TempDir()
	srv, url := start(t, func(c *server.Config) { c.DataDir = dir })
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	gen := loadgen.New(loadgen.Config{Readers: 30, Books: 20, Seed: 4, Start: end.Add(-40 * 24 * time.Hour), End: end})
	events := gen.Batch(4000)
	for i := 0; i < len(events); i += 500 {
		if r := post(t, url, loadgen.EncodeBody(events[i:i+500], false), nil); r.status != 200 {
			t.Fatalf("ingest: %d %v", r.status, r.body)
		}
	}
	waitProcessed(t, srv)
	answers := func(url string) string {
		var b strings.Builder
		for _, path := range []string{"/v1/readers/reader-000003/insights", "/v1/readers/reader-000017/insights",
			"/v1/books/book-00001/stats", "/v1/trending?n=20", "/v1/stats"} {
			resp, err := http.Get(url + path + sep(path) + "as_of=2026-10-20T00:00:00Z")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(&b, resp.Body)
			resp.Body.Close()
		}
		return b.String()
	}
	before := answers(url)
	srv.Shutdown(context.Background())

	quiet, o := slog.New(slog.NewTextHandler(io.Discard, nil)), datadir.Options{CacheBytes: 16 << 20}
	dataDir := dir
	if diff, err := maintenance.Verify(context.Background(), dataDir, o, quiet); err != nil || diff != "" {
		t.Fatalf("live state differs from a rebuild: %q %v", diff, err)
	}
	if err := maintenance.Rebuild(context.Background(), dataDir, o, quiet); err != nil {
		t.Fatal(err)
	}
	_, url = start(t, func(c *server.Config) { c.DataDir = dir })
	if after := answers(url); after != before {
		t.Fatalf("insights changed after rebuild:\nbefore %s\nafter  %s", before, after)
	}
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// A clean shutdown archives what was acknowledged since the archiver's last run.
func TestShutdownFlushesTheArchive(t *testing.T) {
	dir := t.TempDir()
	srv, url := start(t, func(c *server.Config) { c.DataDir, c.ArchiveInterval = dir, time.Hour })
	time.Sleep(100 * time.Millisecond) // the archiver's first run, on an empty log, is over
	if r := post(t, url, []byte(ev("flush-1", "finish", "")+"\n"+ev("flush-2", "finish", "")), nil); r.status != 200 {
		t.Fatalf("ingest: %d %v", r.status, r.body)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	store, err := objstore.Open(context.Background(), filepath.Join(dir, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := store.List(context.Background(), "dt=")
	rows := 0
	for _, f := range files {
		data, _ := store.Get(context.Background(), f)
		r, err := archive.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		rows += len(r)
	}
	if rows != 2 {
		t.Fatalf("after a clean shutdown the archive holds %d of the 2 acknowledged events", rows)
	}
}
