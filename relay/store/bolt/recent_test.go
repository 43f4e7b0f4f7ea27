package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Counts are answered from memory and written behind: they are in the
// file after Close (which drains the queue), and a reopened store counts
// on from them; an erased user's counts are not written back by a count
// still queued.
func TestRecentCountsWrittenBehind(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	now := time.Now().Truncate(time.Minute).Add(30 * time.Second)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := fmt.Sprint("e", i)
		if _, err := s.CountRecent(ctx, "acme", "u-1", relay.TypeIdentityVerification, id, now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CountRecent(ctx, "acme", "u-2", relay.TypeIdentityVerification, id, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Erase(ctx, "acme", "u-2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	got, err := s.CountRecent(ctx, "acme", "u-1", relay.TypeIdentityVerification, "e3", now)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.RecentCounts{M1: 4, M10: 4, H1: 4}); got[relay.TypeIdentityVerification] != want {
		t.Fatalf("after reopening: %+v, want %+v", got, want)
	}
	if r, err := s.Recent(ctx, "acme", "u-2", now); err != nil || r != nil {
		t.Fatalf("erased user: %+v %v, want nothing", r, err)
	}
}
