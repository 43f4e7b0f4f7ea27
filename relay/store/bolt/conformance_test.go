package bolt

import (
	"path/filepath"
	"testing"

	bbolt "go.etcd.io/bbolt"

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
		Dump: func(t *testing.T, b store.Backend) []string {
			var out []string
			err := b.(*Store).db.View(func(tx *bbolt.Tx) error {
				return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
					return bk.ForEach(func(k, v []byte) error {
						out = append(out, string(name)+" "+string(k)+" "+string(v))
						return nil
					})
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
	})
}
