package loadgen_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/dogear-dev/dogear/loadgen"
)

// --events N sends exactly N events, also when N is not a whole number of batches.
func TestSendStopsAtExactlyMaxEvents(t *testing.T) {
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			received.Add(1)
		}
		w.Write([]byte(`{"accepted":0,"duplicates":0,"refused":[]}`))
	}))
	defer srv.Close()
	for _, max := range []int64{10, 500, 1234} {
		received.Store(0)
		gen := loadgen.New(loadgen.DefaultConfig())
		res, err := loadgen.Send(context.Background(), loadgen.SendConfig{URL: srv.URL, MaxEvents: max, Batch: 500, Concurrency: 4},
			func(n int) ([]byte, int) { return loadgen.EncodeBody(gen.Batch(n), false), n })
		if err != nil {
			t.Fatal(err)
		}
		if received.Load() != max || res.Events != max {
			t.Fatalf("--events %d: server received %d, result says %d", max, received.Load(), res.Events)
		}
	}
}
