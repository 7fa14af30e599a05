package objstore_test

import (
	"testing"

	"github.com/dogear-dev/dogear/objstore/objstoretest"
)

func TestConformance(t *testing.T) {
	for name, s := range objstoretest.Stores(t) {
		t.Run(name, func(t *testing.T) { objstoretest.Run(t, s) })
	}
}
