// Package objstoretest gives tests the object stores dogear runs on — a local folder, and S3 on a
// real S3-compatible server in-process (gofakes3) through the production aws-sdk-go-v2 code — and
// the conformance suite both must pass.
package objstoretest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/dogear-dev/dogear/objstore"
)

// Stores returns a fresh folder store and a fresh S3 store (bucket "dogear"), by name.
func Stores(t testing.TB) map[string]objstore.Store {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("dogear"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	s3, err := objstore.Open(context.Background(), "s3://dogear/prefix?endpoint="+srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := objstore.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return map[string]objstore.Store{"dir": dir, "s3": s3}
}

// Run checks one store: whole overwrites, sorted listing by prefix, deletes, ErrNotFound.
func Run(t *testing.T, s objstore.Store) {
	ctx := context.Background()
	if _, err := s.Get(ctx, "nope"); err != objstore.ErrNotFound {
		t.Fatalf("missing object: %v", err)
	}
	for _, k := range []string{"dt=2026-01-02/hour=03/a", "dt=2026-01-02/hour=03/b", "_cursors/p00001"} {
		if err := s.Put(ctx, k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	s.Put(ctx, "dt=2026-01-02/hour=03/a", []byte("replaced"))
	if b, err := s.Get(ctx, "dt=2026-01-02/hour=03/a"); err != nil || string(b) != "replaced" {
		t.Fatalf("get after overwrite: %q %v", b, err)
	}
	keys, err := s.List(ctx, "dt=")
	if err != nil || fmt.Sprint(keys) != "[dt=2026-01-02/hour=03/a dt=2026-01-02/hour=03/b]" {
		t.Fatalf("list: %v %v", keys, err)
	}
	if err := s.Delete(ctx, "dt=2026-01-02/hour=03/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "dt=2026-01-02/hour=03/a"); err != objstore.ErrNotFound {
		t.Fatalf("after delete: %v", err)
	}
}
