package bolt

import (
	"path/filepath"
	"testing"

	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Backend {
			s, err := Open(filepath.Join(t.TempDir(), "relay.db"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}
