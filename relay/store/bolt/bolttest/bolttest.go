// Package bolttest opens bolt stores for other packages' tests.
package bolttest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// Open opens a bolt store in a temporary directory of tb, closed (and the
// close checked) when tb ends.
func Open(tb testing.TB) *bolt.Store {
	tb.Helper()
	st, err := bolt.Open(filepath.Join(tb.TempDir(), "relay.db"), bolt.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := st.Close(context.Background()); err != nil {
			tb.Error(err)
		}
	})
	return st
}
