package ingest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dogear-dev/dogear/eventlog"
	"github.com/dogear-dev/dogear/ingest"
)

// FuzzIngestBody throws arbitrary bodies, raw or claimed to be gzip or zstd, at the real handler
// over a real log: the answer is always a 2xx or 4xx, never a 5xx or a crash.
func FuzzIngestBody(f *testing.F) {
	log, err := eventlog.OpenPebble(f.TempDir(), 2, 8<<20)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { log.Close() })
	cfg := ingest.DefaultConfig()
	cfg.MaxBodyBytes = 1 << 16
	h := ingest.New(log, ingest.NewGate(cfg), slog.New(slog.NewTextHandler(io.Discard, nil)))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"id":"f1","type":"finish","reader":"r","book":"b","time":"2026-01-01T00:00:00Z"}`))
	zw.Close()
	f.Add([]byte(`[{"id":"f1","type":"finish","reader":"r","book":"b","time":"2026-01-01T00:00:00Z"}]`), uint8(0))
	f.Add(gz.Bytes(), uint8(1))
	f.Add(gz.Bytes()[:10], uint8(1))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58}, uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, enc uint8) {
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Encoding", []string{"", "gzip", "zstd"}[enc%3])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 || rec.Code < 200 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.String())
		}
	})
}
