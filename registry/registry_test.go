package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dogear-dev/dogear/objstore/objstoretest"
	"github.com/dogear-dev/dogear/recommend"
	"github.com/dogear-dev/dogear/registry"
)

// TestRegistryOnS3 keeps models in a real S3-compatible server (gofakes3), through the same
// client as the archive: versions, promotion, rollback, and the serving version after a restart.
func TestRegistryOnS3(t *testing.T) {
	ctx := context.Background()
	store := objstoretest.Stores(t)["s3"]
	reg, err := registry.Open(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if m, v := reg.Serving(); m != nil || v != 0 {
		t.Fatal("a new registry serves a model")
	}
	inter := []recommend.Interaction{{Reader: "a", Book: "x", Weight: 1}, {Reader: "a", Book: "y", Weight: 1}, {Reader: "b", Book: "x", Weight: 1}}
	for i := 1; i <= 2; i++ {
		v, err := reg.Save(recommend.TrainArtifact(inter, recommend.ModelParams{Kind: "rp3beta", K: i, Alpha: 0.5}), registry.Metrics{Reason: "test"})
		if err != nil || v != i {
			t.Fatalf("save %d: %v %v", i, v, err)
		}
	}
	if err := reg.Promote(2); err != nil {
		t.Fatal(err)
	}
	if err := reg.Promote(1); err != nil { // roll back
		t.Fatal(err)
	}
	if err := reg.Promote(7); !errors.Is(err, registry.ErrNoVersion) {
		t.Fatalf("promote a missing version: %v", err)
	}
	again, err := registry.Open(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	m, v := again.Serving()
	if v != 1 || m == nil || m.Params.K != 1 {
		t.Fatalf("after reopening: serving %d", v)
	}
	list, err := again.List()
	if err != nil || len(list) != 2 || list[0].Version != 2 || !list[1].Serving {
		t.Fatalf("list %+v %v", list, err)
	}
}
