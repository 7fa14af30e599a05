package state_test

import (
	"testing"

	"github.com/dogear-dev/dogear/state"
	"github.com/dogear-dev/dogear/state/storetest"
)

func TestPebbleConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func(t *testing.T) state.Store {
			s, err := state.OpenPebble(dir, 8<<20)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}
