package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// addLeaseable stores decided events with one pending iOS job each, in
// lane demo/ios.
func addLeaseable(t *testing.T, s *Store, prio relay.Priority, ids ...string) {
	t.Helper()
	var evs []relay.Event
	var ds []*store.Decided
	for _, id := range ids {
		e := ev("acme", id)
		e.Priority = prio
		j := job(e.Key(), "phone", relay.StatePending)
		j.App = "demo"
		evs = append(evs, e)
		ds = append(ds, &store.Decided{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled},
			Alert: &relay.Alert{EventID: id, Workspace: "acme", Priority: prio, ExpiresAt: e.ExpiresAt}, Jobs: []relay.Job{j}})
	}
	res, err := s.AddDecided(context.Background(), evs, ds, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r != nil {
			t.Fatal(r)
		}
	}
}

func leaseIDs(t *testing.T, s *Store, owner string, now time.Time, max int) []string {
	t.Helper()
	ls, _, err := s.Lease(context.Background(), store.LeaseRequest{Lane: relay.Lane("demo", relay.PlatformIOS), Owner: owner, Now: now, TTL: time.Minute, Max: max})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Job.Event.ID)
	}
	return out
}

// TestLeasesInTheirOwnRanges: a leased job's sched key moves to its rank's
// leased range (no lease index), which LaneStats counts as leased with its
// owner while the lease runs and as due once it ended; an ended lease is
// taken again before the rank's other due jobs, and after every high one
// only if it is normal.
func TestLeasesInTheirOwnRanges(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	addLeaseable(t, s, relay.PriorityNormal, "n1")
	addLeaseable(t, s, relay.PriorityHigh, "h1")
	if got := leaseIDs(t, s, "r1", t0, 2); len(got) != 2 || got[0] != "h1" || got[1] != "n1" {
		t.Fatalf("leased %v, want h1 then n1", got)
	}
	addLeaseable(t, s, relay.PriorityNormal, "n2")
	addLeaseable(t, s, relay.PriorityHigh, "h2")
	lane := relay.Lane("demo", relay.PlatformIOS)
	st, err := s.LaneStats(ctx, t0)
	if err != nil || len(st) != 1 {
		t.Fatalf("lane stats %+v, %v", st, err)
	}
	if got := st[0]; got.Lane != lane || got.High != 2 || got.Normal != 2 || got.Leased != 2 || got.Owners["r1"] != 2 || got.Due != 2 {
		t.Fatalf("lane stats while leased %+v", got)
	}
	// A minute and more later the leases ended: due again.
	later := t0.Add(2 * time.Minute)
	st, err = s.LaneStats(ctx, later)
	if err != nil || st[0].Leased != 0 || st[0].Due != 4 {
		t.Fatalf("lane stats after the leases ended %+v, %v", st, err)
	}
	if got := leaseIDs(t, s, "r2", later, 4); len(got) != 4 || got[0] != "h1" || got[1] != "h2" || got[2] != "n1" || got[3] != "n2" {
		t.Fatalf("leased %v after the leases ended, want h1 h2 n1 n2", got)
	}
	if n, err := s.OpenJobs(ctx); err != nil || n.High != 2 || n.Normal != 2 {
		t.Fatalf("open jobs %+v, %v", n, err)
	}
}

// TestOpenReleasesLeases: open makes every leased job due at once, those
// in the leased ranges and those a file written before them indexed in
// sched_leases.
func TestOpenReleasesLeases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	addLeaseable(t, s, relay.PriorityHigh, "new", "old")
	if got := leaseIDs(t, s, "r1", t0, 2); len(got) != 2 {
		t.Fatalf("leased %v", got)
	}
	// Rewrite "old"'s lease as an older relayd wrote it: the rank kept,
	// the lease indexed in sched_leases; and the places of both jobs in
	// sched_jobs, as relayds before 2026-12-07 kept them.
	err = s.db.Update(func(tx *bbolt.Tx) error {
		jk := jobKey(relay.EventKey{Workspace: "acme", ID: "old"}, "phone")
		v := tx.Bucket(bucketJobs).Get(jk)
		place, err := jobPlace(v)
		if err != nil {
			return err
		}
		sk := append(bytes.Clone(place), jk...)
		prefix, _, _, err := parseSchedKey(sk)
		if err != nil {
			return err
		}
		ok := bytes.Clone(sk)
		ok[len(prefix)-1] = plainRank(prefix[len(prefix)-1])
		owner := bytes.Clone(tx.Bucket(bucketSched).Get(sk))
		if err := tx.Bucket(bucketSched).Delete(sk); err != nil {
			return err
		}
		nv, err := withPlace(v, ok[:len(place)])
		if err != nil {
			return err
		}
		return errors.Join(tx.Bucket(bucketSched).Put(ok, owner), tx.Bucket(bucketJobs).Put(jk, nv),
			tx.Bucket(bucketSchedLeases).Put(append([]byte("demo/ios\x00"), jk...), ok), withSchedIndex(tx))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := leaseIDs(t, s, "r1", t0, 2); len(got) != 0 {
		t.Fatalf("leased %v while leased", got)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if got := leaseIDs(t, s, "r2", t0, 2); len(got) != 2 {
		t.Fatalf("after reopen leased %v, want both", got)
	}
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucketSchedLeases).Stats().KeyN; n != 0 {
			t.Errorf("sched_leases keeps %d entries", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.OpenJobs(context.Background()); err != nil || n.High != 2 {
		t.Fatalf("open jobs %+v, %v", n, err)
	}
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketSchedJobs) != nil || tx.Bucket(bucketJobsOpen) != nil {
			t.Error("sched_jobs or jobs_open kept after open moved them into the jobs")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkScheduleOf(t, s)
}

// checkScheduleOf fails t with what the start-up check finds wrong in the
// values and the schedule of the open store s.
func checkScheduleOf(t *testing.T, s *Store) {
	t.Helper()
	if err := s.db.View(func(tx *bbolt.Tx) error {
		problems, scheduled := checkValues(tx, 10)
		for _, err := range append(problems, checkSchedule(tx, scheduled, 10)...) {
			t.Error(err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// withSchedIndex rewrites the open jobs of tx as a relayd before
// 2026-12-07 stored them: in bucket jobs_open, values in format 2 without
// a place, and the places in bucket sched_jobs (job key → sched key).
func withSchedIndex(tx *bbolt.Tx) error {
	idx, err := tx.CreateBucketIfNotExists(bucketSchedJobs)
	if err != nil {
		return err
	}
	open, err := tx.CreateBucketIfNotExists(bucketJobsOpen)
	if err != nil {
		return err
	}
	all := tx.Bucket(bucketJobs)
	type kv struct{ k, v, sk []byte }
	var jobs []kv
	err = all.ForEach(func(k, v []byte) error {
		j, err := decodeJob(k, v)
		if err != nil {
			return err
		}
		place, err := jobPlace(v)
		if err != nil || place == nil {
			return err // closed: stays
		}
		v2 := append([]byte{jobFormatV2}, appendJob(nil, &j, nil)[2:]...) // format 3 with no place, less its format byte and empty place
		jobs = append(jobs, kv{bytes.Clone(k), v2, append(bytes.Clone(place), k...)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if err := errors.Join(all.Delete(j.k), open.Put(j.k, j.v), idx.Put(j.k, j.sk)); err != nil {
			return err
		}
	}
	return nil
}

// TestLeaseBacklogMark: a lease that leaves due jobs behind marks its lane,
// so the next lease goes straight to its write; a lease that leaves none
// (or a mark gone stale: the jobs erased meanwhile) clears it, and a lane
// with nothing due is again answered from a read, without a commit.
func TestLeaseBacklogMark(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	lane := relay.Lane("demo", relay.PlatformIOS)
	addLeaseable(t, s, relay.PriorityHigh, "e1", "e2", "e3")
	if got := leaseIDs(t, s, "r1", t0, 1); len(got) != 1 || !s.backlog.has(lane) {
		t.Fatalf("leased %v, backlog mark %v; want one and the mark", got, s.backlog.has(lane))
	}
	if got := leaseIDs(t, s, "r1", t0, 1); len(got) != 1 || !s.backlog.has(lane) {
		t.Fatalf("leased %v, backlog mark %v", got, s.backlog.has(lane))
	}
	// The last due job goes away behind the mark's back.
	if _, err := s.Erase(ctx, "acme", "u-42"); err != nil {
		t.Fatal(err)
	}
	before := lastTxID(t, s)
	if got := leaseIDs(t, s, "r1", t0, 1); len(got) != 0 || s.backlog.has(lane) {
		t.Fatalf("leased %v after the erase, mark %v", got, s.backlog.has(lane))
	}
	s.waitUnsynced() // the lease returned before its commit
	if n := lastTxID(t, s) - before; n != 1 {
		t.Fatalf("the stale mark cost %d commits, want 1", n)
	}
	before = lastTxID(t, s)
	got := leaseIDs(t, s, "r1", t0, 1)
	s.waitUnsynced()
	if len(got) != 0 || lastTxID(t, s) != before {
		t.Fatalf("leased %v, %d commits with nothing due", got, lastTxID(t, s)-before)
	}
}

// TestAddDecidedLeasing: an accept that leases hands the wanted jobs out
// (with what a lease carries) before its call returns, and not those of a
// duplicate; Lease does not take them again while leased, Settle takes
// their tickets, and the schedule stays consistent.
func TestAddDecidedLeasing(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	d := relay.Device{Workspace: "acme", User: "u-42", ID: "phone", Platform: relay.PlatformIOS, Token: "tok", App: "demo"}
	if _, err := s.RegisterDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	addLeaseable(t, s, relay.PriorityHigh, "dup")
	var evs []relay.Event
	var ds []*store.Decided
	var want [][]bool
	for _, id := range []string{"a", "b", "dup"} {
		e := ev("acme", id)
		j := job(e.Key(), "phone", relay.StatePending)
		j.App = "demo"
		evs = append(evs, e)
		ds = append(ds, &store.Decided{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled},
			Alert: &relay.Alert{EventID: id, Workspace: "acme", Priority: relay.PriorityHigh, ExpiresAt: e.ExpiresAt}, Jobs: []relay.Job{j}})
		want = append(want, []bool{id != "b"}) // "b" is left to Lease
	}
	var ready []store.Leased
	calls := 0
	res, err := s.AddDecidedLeasing(ctx, evs, ds, t0, store.AcceptLease{Owner: "r1", Until: t0.Add(time.Minute), Want: want,
		Ready: func(ls []store.Leased) { calls++; ready = ls }})
	if err != nil || res[0] != nil || res[1] != nil || !errors.Is(res[2], relay.ErrDuplicate) {
		t.Fatalf("add: %v, %v", res, err)
	}
	if calls != 1 || len(ready) != 1 {
		t.Fatalf("Ready called %d times with %d leases, want once with a's", calls, len(ready))
	}
	l := ready[0]
	if l.Job.Event.ID != "a" || l.User != "u-42" || l.Alert == nil || l.Alert.EventID != "a" || l.Device.Token != "tok" || !l.AcceptedAt.Equal(t0) {
		t.Fatalf("lease of a: %+v", l)
	}
	// Lease takes the jobs not leased: b, and dup's (from its first add).
	if got := leaseIDs(t, s, "r1", t0.Add(time.Second), 10); len(got) != 2 || got[0] != "b" || got[1] != "dup" {
		t.Fatalf("Lease took %v, want b and dup: a is leased", got)
	}
	j := l.Job
	j.State, j.Attempts, j.UpdatedAt = relay.StateDelivered, 1, t0.Add(time.Second)
	if err := s.Settle(ctx, l, j); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Event(ctx, relay.EventKey{Workspace: "acme", ID: "a"})
	if err != nil || len(rec.Jobs) != 1 || rec.Jobs[0].State != relay.StateDelivered {
		t.Fatalf("a after its settle: %+v, %v", rec, err)
	}
	checkScheduleOf(t, s)
}

// decidedLeasing returns an accept of the events ids, each with one job
// for the device "phone", wanted leased.
func decidedLeasing(ids ...string) (evs []relay.Event, ds []*store.Decided, want [][]bool) {
	for _, id := range ids {
		e := ev("acme", id)
		j := job(e.Key(), "phone", relay.StatePending)
		j.App = "demo"
		evs = append(evs, e)
		ds = append(ds, &store.Decided{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled},
			Alert: &relay.Alert{EventID: id, Workspace: "acme", Priority: relay.PriorityHigh, ExpiresAt: e.ExpiresAt}, Jobs: []relay.Job{j}})
		want = append(want, []bool{true})
	}
	return evs, ds, want
}

// openWithPhone opens a store with the device decidedLeasing's jobs are
// for.
func openWithPhone(t *testing.T) *Store {
	t.Helper()
	s := openTest(t)
	if _, err := s.RegisterDevice(context.Background(), relay.Device{Workspace: "acme", User: "u-42", ID: "phone", Platform: relay.PlatformIOS, Token: "tok", App: "demo"}); err != nil {
		t.Fatal(err)
	}
	return s
}

// holdCommitter runs a write that blocks the committer until the returned
// func is called. Calls after the first do nothing, so a test can also
// defer it: a failure must not leave the committer held (Close waits for
// it).
func holdCommitter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	running, gate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.write(func(*bbolt.Tx) error {
			close(running)
			<-gate
			return nil
		})
	}()
	<-running
	var once sync.Once
	return func() {
		once.Do(func() {
			close(gate)
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
}

// An accept's leases are handed out once its write is queued, before it
// runs: the push does not wait for the commit in progress. A second accept
// of the same event meanwhile leases nothing (the first is not stored
// yet), and its write finds the duplicate; the early lease settles.
func TestAddDecidedLeasingBeforeTheWriteRuns(t *testing.T) {
	s := openWithPhone(t)
	ctx := context.Background()
	release := holdCommitter(t, s)
	type accept struct {
		res []error
		err error
	}
	add := func(id string, ready chan<- []store.Leased) <-chan accept {
		out := make(chan accept, 1)
		evs, ds, want := decidedLeasing(id)
		go func() {
			res, err := s.AddDecidedLeasing(ctx, evs, ds, t0, store.AcceptLease{Owner: "r1", Until: t0.Add(time.Minute), Want: want,
				Ready: func(ls []store.Leased) { ready <- ls }})
			out <- accept{res, err}
		}()
		return out
	}
	readyA, readyB := make(chan []store.Leased, 1), make(chan []store.Leased, 1)
	a := add("x", readyA)
	var leased []store.Leased
	select {
	case leased = <-readyA:
	case <-time.After(10 * time.Second):
		t.Fatal("no lease handed out while the committer was busy with another write")
	}
	if len(leased) != 1 || leased[0].Job.Event.ID != "x" || leased[0].User != "u-42" || leased[0].Device.Token != "tok" ||
		leased[0].Alert == nil || !leased[0].AcceptedAt.Equal(t0) {
		t.Fatalf("early leases %+v", leased)
	}
	b := add("x", readyB)
	for s.commits.pendingLen() < 2 { // b queued behind a
		time.Sleep(time.Millisecond)
	}
	release()
	ra, rb := <-a, <-b
	if ra.err != nil || ra.res[0] != nil || rb.err != nil || !errors.Is(rb.res[0], relay.ErrDuplicate) {
		t.Fatalf("first accept %v %v, second %v %v; want stored, duplicate", ra.res, ra.err, rb.res, rb.err)
	}
	select {
	case ls := <-readyB:
		t.Fatalf("the duplicate handed out %d leases", len(ls))
	default:
	}
	if got := leaseIDs(t, s, "r2", t0.Add(time.Second), 10); len(got) != 0 {
		t.Fatalf("Lease took %v: x is leased", got)
	}
	// The lease built before the write carries the job as it was stored.
	if rec, err := s.Event(ctx, relay.EventKey{Workspace: "acme", ID: "x"}); err != nil || len(rec.Jobs) != 1 || !reflect.DeepEqual(rec.Jobs[0], leased[0].Job) {
		t.Fatalf("stored job %+v (%v), early lease's %+v", rec, err, leased[0].Job)
	}
	j := leased[0].Job
	j.State, j.Attempts, j.UpdatedAt = relay.StateDelivered, 1, t0.Add(time.Second)
	if err := s.Settle(ctx, leased[0], j); err != nil {
		t.Fatal(err)
	}
	checkScheduleOf(t, s)
	// Stored now: a third accept of x leases nothing either.
	third := make(chan []store.Leased, 1)
	if r := <-add("x", third); r.err != nil || !errors.Is(r.res[0], relay.ErrDuplicate) || len(third) != 0 {
		t.Fatalf("third accept %v %v, %d leases", r.res, r.err, len(third))
	}
}

// Past lease.MaxEarly, an accept's leases are handed out once the write is
// durable, to lease.Durable: the first MaxEarly (in the events' order) go
// to Ready while the committer is still busy, the rest to Durable by the
// time the write returned. Lease takes none of them.
func TestAddDecidedLeasingPastMaxEarlyOnceDurable(t *testing.T) {
	s := openWithPhone(t)
	ctx := context.Background()
	evs, ds, want := decidedLeasing("a", "b", "c")
	release := holdCommitter(t, s)
	defer release()
	ready, durable := make(chan []store.Leased, 2), make(chan []store.Leased, 2)
	done := make(chan error, 1)
	go func() {
		res, err := s.AddDecidedLeasing(ctx, evs, ds, t0, store.AcceptLease{Owner: "r1", Until: t0.Add(time.Minute), Want: want,
			MaxEarly: 1, Ready: func(ls []store.Leased) { ready <- ls }, Durable: func(ls []store.Leased) { durable <- ls }})
		if err == nil && (res[0] != nil || res[1] != nil || res[2] != nil) {
			err = fmt.Errorf("results %v", res)
		}
		done <- err
	}()
	var early []store.Leased
	select {
	case early = <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no lease handed out while the committer was busy with another write")
	}
	ids := func(ls []store.Leased) (out []string) {
		for _, l := range ls {
			out = append(out, l.Job.Event.ID)
		}
		return out
	}
	if len(early) != 1 || early[0].Job.Event.ID != "a" {
		t.Fatalf("early leases of %v, want a's", ids(early))
	}
	select {
	case ls := <-ready:
		t.Fatalf("%d more leases handed out early", len(ls))
	case ls := <-durable:
		t.Fatalf("%d leases handed out as durable before the write ran", len(ls))
	case <-time.After(50 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var late []store.Leased
	select {
	case late = <-durable:
	default:
		t.Fatal("the leases past MaxEarly were not handed out by the time the write returned")
	}
	if len(ready) != 0 {
		t.Fatal("Ready called twice")
	}
	if len(late) != 2 || late[0].Job.Event.ID != "b" || late[1].Job.Event.ID != "c" || late[1].Device.Token != "tok" {
		t.Fatalf("late leases of %v, want b's and c's (with the device)", ids(late))
	}
	if got := leaseIDs(t, s, "r2", t0.Add(time.Second), 10); len(got) != 0 {
		t.Fatalf("Lease took %v: a, b and c are leased", got)
	}
	for _, l := range append(early, late...) {
		j := l.Job
		j.State, j.Attempts, j.UpdatedAt = relay.StateDelivered, 1, t0.Add(time.Second)
		if err := s.Settle(ctx, l, j); err != nil {
			t.Fatalf("settle %s: %v", j.Event.ID, err)
		}
	}
	checkScheduleOf(t, s)
}

// The leases handed out once the write is durable are only those of
// events it stored: not of an event another call stored first (that call
// leased nothing, so this one could lease it before either wrote), but of
// an event posted twice in the call (its first is stored).
func TestAddDecidedLeasingDurableOnlyWhatItStored(t *testing.T) {
	s := openWithPhone(t)
	ctx := context.Background()
	release := holdCommitter(t, s)
	defer release()
	first := make(chan error, 1)
	go func() {
		evs, ds, _ := decidedLeasing("x")
		res, err := s.AddDecided(ctx, evs, ds, t0) // no leases
		if err == nil && res[0] != nil {
			err = res[0]
		}
		first <- err
	}()
	for s.commits.pendingLen() < 1 {
		time.Sleep(time.Millisecond)
	}
	var durable []string
	second := make(chan []error, 1)
	go func() {
		evs, ds, want := decidedLeasing("a", "b", "x", "y", "y")
		res, err := s.AddDecidedLeasing(ctx, evs, ds, t0, store.AcceptLease{Owner: "r1", Until: t0.Add(time.Minute), Want: want,
			MaxEarly: 1, Ready: func([]store.Leased) {}, Durable: func(ls []store.Leased) {
				for _, l := range ls {
					durable = append(durable, l.Job.Event.ID)
				}
			}})
		if err != nil {
			res = []error{err}
		}
		second <- res
	}()
	for s.commits.pendingLen() < 2 {
		time.Sleep(time.Millisecond)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	res := <-second
	if len(res) != 5 || res[0] != nil || res[1] != nil || !errors.Is(res[2], relay.ErrDuplicate) || res[3] != nil || !errors.Is(res[4], relay.ErrDuplicate) {
		t.Fatalf("second accept: %v; want a, b, y stored, x and y's repeat duplicates", res)
	}
	if !slices.Equal(durable, []string{"b", "y"}) {
		t.Fatalf("handed out once durable: %v, want b and y (a went early, x was stored by the other call)", durable)
	}
}

// After a commit failed, an accept hands its leases out only once its own
// write is on disk, as the commit may fail again.
func TestAddDecidedLeasingAfterAFailedCommit(t *testing.T) {
	s := openWithPhone(t)
	ctx := context.Background()
	s.commitFailed.Store(true)
	release := holdCommitter(t, s)
	ready := make(chan []store.Leased, 1)
	evs, ds, want := decidedLeasing("y")
	done := make(chan error, 1)
	go func() {
		_, err := s.AddDecidedLeasing(ctx, evs, ds, t0, store.AcceptLease{Owner: "r1", Until: t0.Add(time.Minute), Want: want,
			Ready: func(ls []store.Leased) { ready <- ls }})
		done <- err
	}()
	for s.commits.pendingLen() < 1 {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-ready:
		t.Fatal("leases handed out before the write ran")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ls := <-ready; len(ls) != 1 || ls[0].Job.Event.ID != "y" {
		t.Fatalf("leases %+v", ls)
	}
	if s.commitFailed.Load() {
		t.Fatal("a commit succeeded and the store still counts the last one failed")
	}
}

// An event posted twice in one call is stored once, the first time: the
// second copy leases nothing early, even when only its job is wanted.
func TestAddDecidedLeasingRepeatInOneCall(t *testing.T) {
	s := openWithPhone(t)
	ctx := context.Background()
	evs, ds, _ := decidedLeasing("z")
	evs, ds = append(evs, evs[0]), append(ds, ds[0])
	var ready []store.Leased
	res, err := s.AddDecidedLeasing(ctx, evs, ds, t0, store.AcceptLease{Owner: "r1", Until: t0.Add(time.Minute), Want: [][]bool{{false}, {true}},
		Ready: func(ls []store.Leased) { ready = ls }})
	if err != nil || res[0] != nil || !errors.Is(res[1], relay.ErrDuplicate) {
		t.Fatalf("add: %v, %v", res, err)
	}
	if len(ready) != 0 {
		t.Fatalf("the repeat leased %d jobs", len(ready))
	}
	if got := leaseIDs(t, s, "r1", t0.Add(time.Second), 10); len(got) != 1 || got[0] != "z" {
		t.Fatalf("Lease took %v, want z's job: not leased at accept", got)
	}
	checkScheduleOf(t, s)
}
