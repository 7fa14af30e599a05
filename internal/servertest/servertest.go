// Package servertest starts real dogear servers on loopback for tests and waits on them, so
// every package's tests drive the same thing a user runs.
package servertest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/dogear-dev/dogear/server"
)

// Start runs a server in a fresh data directory on a free loopback port, with 4 partitions, small
// caches, no background training or archiving and cheap kosync hashing; mod adjusts the config.
// It returns the server and its base URL, and shuts it down when the test ends.
func Start(t testing.TB, mod func(*server.Config)) (*server.Server, string) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.CacheBytes, cfg.Partitions = t.TempDir(), "127.0.0.1:0", 16<<20, 4
	cfg.TrainInterval, cfg.ArchiveInterval = 0, 0
	cfg.Kosync.BcryptCost = bcrypt.MinCost
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv, "http://" + srv.Addr()
}

// WaitProcessed waits until processors have folded everything in the log.
func WaitProcessed(t testing.TB, srv *server.Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); srv.Processor().TotalLag() > 0; {
		if time.Now().After(deadline) {
			t.Fatal("processors did not catch up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// GetJSON GETs url, decodes a JSON body into v (when not nil) and returns the status.
func GetJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}
