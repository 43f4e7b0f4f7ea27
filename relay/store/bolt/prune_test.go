package bolt

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store/storetest"
)

func TestPruneEvents(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ev := func(id string, expires time.Time) relay.Event {
		return relay.Event{ID: id, Workspace: "w", User: "u", Type: relay.TypeOTPReceived, ExpiresAt: expires}
	}
	old, fresh := now.Add(-48*time.Hour), now.Add(time.Hour)
	events := []relay.Event{ev("done", old), ev("open", old), ev("undecided", old), ev("fresh", old.Add(72*time.Hour))}
	// Enough finished events to span several prune steps.
	for i := range 3 * pruneEventsChunk {
		events = append(events, ev(fmt.Sprintf("bulk-%04d", i), old))
	}
	if _, err := s.AddEvents(ctx, events, old.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	decide := func(id string, st relay.DeliveryState) {
		t.Helper()
		k := relay.EventKey{Workspace: "w", ID: id}
		job := relay.Job{Event: k, DeviceID: "d1", Platform: relay.PlatformIOS, State: st, ExpiresAt: old, UpdatedAt: old}
		if err := s.Decide(ctx, k, relay.Decision{Verdict: relay.VerdictDeliver, Reason: "enabled"}, &relay.Alert{EventID: id, ExpiresAt: old}, []relay.Job{job}); err != nil {
			t.Fatal(err)
		}
	}
	decide("done", relay.StateDelivered)
	decide("open", relay.StatePending)
	decide("fresh", relay.StateDelivered)
	for i := range 3 * pruneEventsChunk {
		decide(fmt.Sprintf("bulk-%04d", i), relay.StateExpired)
	}
	_ = fresh

	n, err := s.PruneEvents(ctx, now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 3*pruneEventsChunk; n != want {
		t.Fatalf("pruned %d events, want %d", n, want)
	}
	for id, keep := range map[string]bool{"done": false, "bulk-0000": false, "open": true, "undecided": true, "fresh": true} {
		_, err := s.Event(ctx, relay.EventKey{Workspace: "w", ID: id})
		if keep && err != nil {
			t.Errorf("%s: %v, want kept", id, err)
		}
		if !keep && !errors.Is(err, relay.ErrNotFound) {
			t.Errorf("%s: err %v, want pruned", id, err)
		}
	}
	// The open job is still open, and a pruned id may be accepted again.
	if open, err := s.OpenJobs(ctx); err != nil || open.Total() != 1 {
		t.Fatalf("open jobs after prune: %+v, %v", open, err)
	}
	errs, err := s.AddEvents(ctx, []relay.Event{ev("done", fresh)}, now)
	if err != nil || errs[0] != nil {
		t.Fatalf("re-adding a pruned id: %v %v", errs, err)
	}
	// Pruning again removes nothing more.
	if n, err := s.PruneEvents(ctx, now.Add(-24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("second prune = %d, %v", n, err)
	}
}

// TestDeliveredPromptsFillTheirPages: a delivered prompt's job grows after
// its first write (it waits for its expiry withdraw: a due time, a longer
// state). Pages filled too full split in two half-empty ones at that
// write; filled to jobsFill they take the growth, and the jobs bucket of a
// store of delivered prompts stays mostly in use (it was 45 % at 0.9).
func TestDeliveredPromptsFillTheirPages(t *testing.T) {
	s := openTest(t)
	storetest.FillDelivered(t, s, 20_000, time.Now(), func(user string) string { return fmt.Sprintf("%064x", user) })
	err := s.db.View(func(tx *bbolt.Tx) error {
		st := tx.Bucket(bucketJobs).Stats()
		if inUse := float64(st.LeafInuse) / float64(st.LeafAlloc); st.KeyN != 20_000 || inUse < 0.6 {
			t.Errorf("jobs bucket: %d jobs on %d leaf pages, %.0f%% in use; want 20,000 jobs, at least 60%% in use",
				st.KeyN, st.LeafPageN, 100*inUse)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
