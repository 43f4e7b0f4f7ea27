package bolt

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// TestWriteUnsyncedReturnsBeforeTheCommit: writeUnsynced returns once its
// function ran in a batch that will commit, while write waits for the
// commit; both are on disk afterwards, and a function of the batch that
// fails makes the unsynced one run again before it is released.
func TestWriteUnsyncedReturnsBeforeTheCommit(t *testing.T) {
	s := openTest(t)
	bucket := []byte("t")
	put := func(key string) func(*bbolt.Tx) error {
		return func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil {
				return err
			}
			return b.Put([]byte(key), []byte("v"))
		}
	}
	// The second commit (the batch below) waits in beforeCommit.
	entered, holdCommit := make(chan struct{}), make(chan struct{})
	commits := 0
	s.beforeCommit = func() {
		if commits++; commits == 2 {
			close(entered)
			<-holdCommit
		}
	}
	// A first write holds the committer, so the next three share a batch.
	holdFn, held := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.write(func(*bbolt.Tx) error { close(held); <-holdFn; return nil })
	}()
	<-held
	failing := make(chan error, 1)
	synced := make(chan error, 1)
	unsynced := make(chan error, 1)
	runs := 0
	// Queued in this order: the unsynced write runs before the failing
	// one, so it runs again in the retried transaction.
	go func() {
		unsynced <- s.writeUnsynced(func(tx *bbolt.Tx) error { runs++; return put("unsynced")(tx) })
	}()
	waitPending(t, s, 1)
	go func() { failing <- s.write(func(*bbolt.Tx) error { return errors.New("injected") }) }()
	waitPending(t, s, 2)
	go func() { synced <- s.write(put("synced")) }()
	waitPending(t, s, 3)
	close(holdFn)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-failing; err == nil || err.Error() != "injected" {
		t.Fatalf("failing write: %v", err)
	}
	<-entered // the retried batch ran its functions and waits to commit
	select {
	case err := <-unsynced:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writeUnsynced waited for the commit")
	}
	select {
	case err := <-synced:
		t.Fatalf("write returned before its commit (%v)", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(holdCommit)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Errorf("unsynced function ran %d times, want 2 (once more after the failing one left the batch)", runs)
	}
	if err := s.db.View(func(tx *bbolt.Tx) error {
		for _, k := range []string{"synced", "unsynced"} {
			if tx.Bucket(bucket).Get([]byte(k)) == nil {
				t.Errorf("%s write not committed", k)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// waitPending waits until n write calls are queued.
func waitPending(t *testing.T, s *Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.commits.mu.Lock()
		got := len(s.commits.pending)
		s.commits.mu.Unlock()
		if got >= n {
			return
		}
	}
	t.Fatalf("fewer than %d writes queued", n)
}

// lastTxID returns the id of s's last committed transaction.
func lastTxID(t *testing.T, s *Store) int {
	t.Helper()
	tx, err := s.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	return tx.ID()
}

// TestLeaseWithNothingDueWritesNothing: a lane asks for work after every
// send; when nothing is due the answer comes from a read, not from a
// commit (two fsyncs).
func TestLeaseWithNothingDueWritesNothing(t *testing.T) {
	s := openTest(t)
	txid := func() int { return lastTxID(t, s) }
	before := txid()
	jobs, next, err := s.Lease(context.Background(), store.LeaseRequest{Lane: "demo/ios", Owner: "r1", Now: t0, TTL: time.Minute, Max: 10})
	if err != nil || len(jobs) != 0 || !next.IsZero() {
		t.Fatalf("Lease on an empty lane: %v %v %v", jobs, next, err)
	}
	if after := txid(); after != before {
		t.Errorf("Lease with nothing due committed %d transactions", after-before)
	}
}

// TestWriteDeferredSharesTheNextCommit: a deferred write does not start a
// commit of its own while another write comes within the delay; alone,
// it commits after the delay.
func TestWriteDeferredSharesTheNextCommit(t *testing.T) {
	s := openTest(t)
	txid := func() int { return lastTxID(t, s) }
	put := func(key string) func(*bbolt.Tx) error {
		return func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("t"))
			if err != nil {
				return err
			}
			return b.Put([]byte(key), []byte("v"))
		}
	}
	s.deferDelay = time.Hour // only another write commits it
	before := txid()
	deferred := make(chan error, 1)
	go func() { deferred <- s.writeDeferred(put("deferred")) }()
	waitPending(t, s, 1)
	select {
	case err := <-deferred:
		t.Fatalf("deferred write returned alone (%v)", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := s.write(put("plain")); err != nil {
		t.Fatal(err)
	}
	if err := <-deferred; err != nil {
		t.Fatal(err)
	}
	if n := txid() - before; n != 1 {
		t.Errorf("deferred and plain write took %d commits, want 1", n)
	}

	// Alone, it commits after the delay.
	s.commits.mu.Lock()
	s.deferDelay = time.Millisecond
	s.commits.mu.Unlock()
	before = txid()
	if err := s.writeDeferred(put("alone")); err != nil {
		t.Fatal(err)
	}
	s.waitUnsynced()
	if n := txid() - before; n != 1 {
		t.Errorf("lone deferred write: %d commits, want 1", n)
	}
}

// TestReadsWaitForUnsyncedCommits: once Lease or Settle returned, LaneStats,
// Event and the next Lease show what they wrote, even while their commit
// has not ended.
func TestReadsWaitForUnsyncedCommits(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	now := time.Now()
	e := ev("acme", "e1")
	e.ExpiresAt = now.Add(time.Hour)
	mustAdd(t, s, e)
	d := relay.Device{Workspace: "acme", User: e.User, ID: "d1", Platform: relay.PlatformIOS, Token: "tok", App: "demo", UpdatedAt: now}
	if _, err := s.RegisterDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	job := relay.Job{Event: e.Key(), DeviceID: d.ID, Platform: d.Platform, App: d.App, State: relay.StatePending, ExpiresAt: e.ExpiresAt, UpdatedAt: now}
	alert := &relay.Alert{EventID: e.ID, Workspace: e.Workspace, Type: e.Type, Title: "t", Body: "b", CollapseID: "c", ExpiresAt: e.ExpiresAt}
	if err := s.Decide(ctx, e.Key(), relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled}, alert, []relay.Job{job}); err != nil {
		t.Fatal(err)
	}
	lane := relay.Lane("demo", relay.PlatformIOS)

	// Every commit from here on waits in beforeCommit until released:
	// release lets one commit through, the one waiting or the next (a
	// gate replaced at each release had left a commit that reached it
	// just after the release waiting for the next one).
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	permits := 0
	passAll := false // once the test ends (or fails): the store must close
	s.beforeCommit = func() {
		mu.Lock()
		defer mu.Unlock()
		for !passAll && permits == 0 {
			cond.Wait()
		}
		if permits > 0 {
			permits--
		}
	}
	t.Cleanup(func() {
		mu.Lock()
		passAll = true
		cond.Broadcast()
		mu.Unlock()
	})
	release := func() {
		mu.Lock()
		permits++
		cond.Broadcast()
		mu.Unlock()
	}
	// noAnswer fails if read returns before release, then releases the
	// commit and returns read's answer.
	noAnswer := func(what string, read func() any) any {
		t.Helper()
		got := make(chan any, 1)
		go func() { got <- read() }()
		select {
		case v := <-got:
			t.Fatalf("%s answered before the commit ended: %v", what, v)
		case <-time.After(20 * time.Millisecond):
		}
		release()
		return <-got
	}

	jobs, _, err := s.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: "r1", Now: now, TTL: time.Minute, Max: 10})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("lease: %v %v", jobs, err)
	}
	stats := noAnswer("LaneStats", func() any {
		st, err := s.LaneStats(ctx, now)
		if err != nil {
			return err
		}
		return st
	}).([]store.LaneStats)
	if len(stats) != 1 || stats[0].Leased != 1 {
		t.Fatalf("lane stats after the lease: %+v", stats)
	}

	s.commits.mu.Lock()
	s.deferDelay = time.Millisecond // read by queue, under this lock
	s.commits.mu.Unlock()
	// A job settled due again by a deferred write (an expiry withdraw,
	// or its retry): the lane's next lease must see it, not answer from
	// a read of the commit before.
	again := jobs[0].Job
	again.State, again.Attempts, again.UpdatedAt, again.NextAt = relay.StateWithdrawDue, 1, now, now
	if err := s.Settle(ctx, jobs[0], again); err != nil {
		t.Fatal(err)
	}
	jobs = noAnswer("Lease", func() any {
		jobs, _, err := s.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: "r1", Now: now, TTL: time.Minute, Max: 10})
		if err != nil {
			return err
		}
		return jobs
	}).([]store.Leased)
	if len(jobs) != 1 || jobs[0].Job.State != relay.StateWithdrawDue {
		t.Fatalf("lease after the withdraw's settle: %+v", jobs)
	}
	release() // the lease's own commit
	done := jobs[0].Job
	done.State, done.Attempts, done.UpdatedAt = relay.StateDelivered, 1, now
	if err := s.Settle(ctx, jobs[0], done); err != nil {
		t.Fatal(err)
	}
	rec := noAnswer("Event", func() any {
		r, err := s.Event(ctx, e.Key())
		if err != nil {
			return err
		}
		return r
	}).(*store.Record)
	if len(rec.Jobs) != 1 || rec.Jobs[0].State != relay.StateDelivered {
		t.Fatalf("jobs after the settle: %+v", rec.Jobs)
	}
}

// TestCommitStatsCountTheGroupCommits: writes queued while a commit runs
// share the next one, and CommitStats counts commits, the writes they
// carried and the time they took.
func TestCommitStatsCountTheGroupCommits(t *testing.T) {
	s := openTest(t)
	before := s.CommitStats()
	// A first write holds the committer while three more queue up.
	var wg sync.WaitGroup
	release := holdCommitter(t, s)
	for i := range 3 {
		wg.Go(func() {
			if err := s.write(func(*bbolt.Tx) error { return nil }); err != nil {
				t.Error(err)
			}
		})
		waitPending(t, s, i+1)
	}
	time.Sleep(10 * time.Millisecond) // the first commit is busy this long at least
	release()
	wg.Wait()
	got := s.CommitStats()
	if c, w := got.Commits-before.Commits, got.Writes-before.Writes; c != 2 || w != 4 {
		t.Errorf("%d commits carrying %d writes, want 2 carrying 4", c, w)
	}
	if busy := got.Busy - before.Busy; busy < 10*time.Millisecond {
		t.Errorf("busy %v, want at least the 10 ms the first commit was held", busy)
	}
}

// TestCommitLingersForCompanyUnderLoad: a write that finds the writer idle
// commits at once; a few writes queued during a commit wait for more
// before theirs, until lingerWrites are queued or lingerDelay passes.
func TestCommitLingersForCompanyUnderLoad(t *testing.T) {
	s := openTest(t)
	s.commits.mu.Lock()
	s.lingerDelay = time.Hour // only company ends the linger
	s.commits.mu.Unlock()
	nop := func(*bbolt.Tx) error { return nil }

	// Alone, one after the other (each queued just as the commit before
	// released it): no lingering.
	before := s.CommitStats()
	alone := make(chan error, 1)
	go func() {
		for range 3 {
			if err := s.write(nop); err != nil {
				alone <- err
				return
			}
		}
		alone <- nil
	}()
	select {
	case err := <-alone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lone write waited for company")
	}
	if got := s.CommitStats(); got.Commits-before.Commits != 3 {
		t.Fatalf("three lone writes took %d commits, want 3", got.Commits-before.Commits)
	}

	// One write queued during a commit lingers after it ...
	before = s.CommitStats()
	var wg sync.WaitGroup
	release := holdCommitter(t, s)
	lingered := make(chan error, 1)
	go func() { lingered <- s.write(nop) }()
	waitPending(t, s, 1)
	release()
	select {
	case err := <-lingered:
		t.Fatalf("a write queued during a busy commit did not wait for company (%v)", err)
	case <-time.After(20 * time.Millisecond):
	}
	// ... until enough company comes: all of them share one commit.
	for range lingerWrites - 1 {
		wg.Go(func() {
			if err := s.write(nop); err != nil {
				t.Error(err)
			}
		})
	}
	if err := <-lingered; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got := s.CommitStats()
	if c, w := got.Commits-before.Commits, got.Writes-before.Writes; c != 2 || w != 1+lingerWrites {
		t.Errorf("%d commits carrying %d writes, want 2 carrying %d", c, w, 1+lingerWrites)
	}

	// The linger ends after lingerDelay without company.
	s.commits.mu.Lock()
	s.lingerDelay = time.Millisecond
	s.commits.mu.Unlock()
	before = s.CommitStats()
	release = holdCommitter(t, s)
	go func() { lingered <- s.write(nop) }()
	waitPending(t, s, 1)
	release()
	if err := <-lingered; err != nil {
		t.Fatal(err)
	}
	if got := s.CommitStats(); got.Commits-before.Commits != 2 {
		t.Errorf("%d commits, want 2", got.Commits-before.Commits)
	}
}
