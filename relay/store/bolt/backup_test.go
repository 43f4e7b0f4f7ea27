package bolt

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// TestWritesGoOnDuringABackup: a backup holds one read transaction for as
// long as the copy takes (a big store to a slow disk or client: minutes).
// A commit that grows the file past bbolt's memory map must remap it, and
// a remap waits for every read transaction to end: with bbolt's default
// map, accepts stalled until the backup finished once the store outgrew
// its map. relayd maps the store with room to grow (initialMmapSize).
func TestWritesGoOnDuringABackup(t *testing.T) {
	s := openTest(t)
	addLeaseable(t, s, relay.PriorityHigh, "first")
	pr, pw := io.Pipe()
	backup := make(chan error, 1)
	go func() {
		_, err := s.Backup(context.Background(), pw, nil)
		pw.CloseWithError(err)
		backup <- err
	}()
	// The backup's read transaction is open once its first bytes arrive;
	// it stays open while nobody reads the pipe.
	if _, err := io.ReadFull(pr, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// 4,000 events, about 4 MB: far past the map of a fresh store.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := range 40 {
			ids := make([]string, 100)
			for k := range ids {
				ids[k] = fmt.Sprintf("e-%d-%d", i, k)
			}
			addLeaseable(t, s, relay.PriorityHigh, ids...)
		}
	}()
	select {
	case <-wrote:
	case <-time.After(20 * time.Second):
		t.Error("writes waited for the backup's read transaction (the store's map was remapped)")
	}
	// Let the backup finish, then the writes.
	if _, err := io.Copy(io.Discard, pr); err != nil {
		t.Fatal(err)
	}
	if err := <-backup; err != nil {
		t.Fatal(err)
	}
	<-wrote
}
