package bolt

import (
	"context"
	"errors"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// TestCountsOfOneCommit: the open-job counts are written once per commit
// (wtx.flush), from what the commit's functions changed: accepts and
// settles sharing a commit add up, and a batch run again after one of its
// functions failed counts its jobs once, not twice.
func TestCountsOfOneCommit(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	lane := relay.Lane("demo", relay.PlatformIOS)
	decided := func(id string, p relay.Priority) ([]relay.Event, []*store.Decided) {
		e := ev("acme", id)
		e.Priority = p
		j := job(e.Key(), "phone", relay.StatePending)
		j.App = "demo"
		return []relay.Event{e}, []*store.Decided{{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled},
			Alert: &relay.Alert{EventID: id, Workspace: "acme", Priority: p, ExpiresAt: e.ExpiresAt}, Jobs: []relay.Job{j}}}
	}
	// hold queues writes behind one that blocks the committer, so that
	// they share the next commit; it returns the release.
	hold := func() func() {
		release, held := make(chan struct{}), make(chan struct{})
		go s.write(func(*bbolt.Tx) error { close(held); <-release; return nil })
		<-held
		return func() { close(release) }
	}
	wantCounts := func(high, normal int) {
		t.Helper()
		got, err := s.OpenJobs(ctx)
		if err != nil || got.High != high || got.Normal != normal {
			t.Fatalf("open jobs %+v, %v; want %d high, %d normal", got, err, high, normal)
		}
	}

	release := hold()
	errs := make(chan error, 3)
	add := func(id string, p relay.Priority) {
		evs, ds := decided(id, p)
		go func() { _, err := s.AddDecided(ctx, evs, ds, t0); errs <- err }()
	}
	add("a", relay.PriorityHigh)
	waitPending(t, s, 1)
	go func() { errs <- s.write(func(*bbolt.Tx) error { return errors.New("injected") }) }()
	waitPending(t, s, 2)
	add("b", relay.PriorityNormal)
	waitPending(t, s, 3)
	release()
	failed := 0
	for range 3 {
		if err := <-errs; err != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d writes failed, want the injected one", failed)
	}
	wantCounts(1, 1)

	leased, _, err := s.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: "r", Now: t0, TTL: time.Minute, Max: 10})
	if err != nil || len(leased) != 2 || leased[0].Job.Event.ID != "a" {
		t.Fatalf("leased %+v: %v; want a (high) then b", leased, err)
	}
	// Both settles, a retry and a new event in one commit.
	release = hold()
	settle := func(l store.Leased, st relay.DeliveryState) {
		j := l.Job
		j.State, j.UpdatedAt = st, t0
		if st == relay.StateDeferred {
			j.NextAt = t0.Add(time.Hour)
		}
		go func() { errs <- s.Settle(ctx, l, j) }()
	}
	settle(leased[0], relay.StateDelivered)
	waitPending(t, s, 1)
	settle(leased[1], relay.StateDeferred)
	waitPending(t, s, 2)
	add("c", relay.PriorityHigh)
	waitPending(t, s, 3)
	release()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// a delivered (closed), b deferred (still open), c new.
	wantCounts(1, 1)
	st, err := s.LaneStats(ctx, t0)
	if err != nil || len(st) != 1 || st[0].High+st[0].Normal != 2 || st[0].Leased != 0 {
		t.Fatalf("lane stats %+v, %v", st, err)
	}
}
