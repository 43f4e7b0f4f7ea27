package bolt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// dueWalk returns every open job in due order, paging limit at a time.
func dueWalk(t *testing.T, s *Store, limit int) []store.DueJob {
	t.Helper()
	var out []store.DueJob
	var cur store.DueCursor
	for {
		page, next, err := s.DueJobs(context.Background(), cur, limit)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if len(page) < limit {
			return out
		}
		if next.Compare(cur) <= 0 {
			t.Fatalf("cursor did not advance: %+v -> %+v", cur, next)
		}
		cur = next
	}
}

// checkDueIndex checks the due index holds exactly the open jobs.
func checkDueIndex(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		want := map[string]bool{}
		err := tx.Bucket(bucketJobsOpen).ForEach(func(k, v []byte) error {
			var j relay.Job
			if err := decodeJobValue(&j, v); err != nil {
				return err
			}
			want[string(dueKey(k, &j))] = true
			return nil
		})
		if err != nil {
			return err
		}
		got := map[string]bool{}
		tx.Bucket(bucketJobsDue).ForEach(func(k, _ []byte) error { got[string(k)] = true; return nil })
		for k := range want {
			if !got[k] {
				t.Errorf("due index lacks %q", k)
			}
		}
		for k := range got {
			if !want[k] {
				t.Errorf("due index has stale %q", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDueIndexOrderAndMaintenance(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 300
	var keys []relay.EventKey
	for i := range n {
		e := ev("acme", fmt.Sprintf("e%03d", i))
		mustAdd(t, s, e)
		keys = append(keys, e.Key())
		var jobs []relay.Job
		for _, dev := range []string{"a", "b"} {
			j := job(e.Key(), dev, relay.StatePending)
			j.UpdatedAt = t0.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
			if rng.IntN(4) == 0 {
				j.State, j.NextAt = relay.StateDeferred, t0.Add(time.Duration(rng.IntN(5000))*time.Millisecond)
			}
			if rng.IntN(10) == 0 {
				j.State = relay.StateSuppressed
			}
			jobs = append(jobs, j)
		}
		if err := s.Decide(ctx, e.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, &relay.Alert{EventID: e.ID}, jobs); err != nil {
			t.Fatal(err)
		}
	}
	checkDueIndex(t, s)
	// Retries, deliveries and a re-decide move entries.
	for i := 0; i < n; i += 3 {
		j := job(keys[i], "a", relay.StatePending)
		j.NextAt = t0.Add(time.Duration(rng.IntN(9000)) * time.Millisecond)
		j2 := job(keys[i], "b", relay.StateDelivered)
		if err := s.UpdateJobs(ctx, []relay.Job{j, j2}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Decide(ctx, keys[1], relay.Decision{Verdict: relay.VerdictDeliver}, &relay.Alert{EventID: keys[1].ID}, []relay.Job{job(keys[1], "c", relay.StatePending)}); err != nil {
		t.Fatal(err)
	}
	checkDueIndex(t, s)

	count, err := s.OpenJobCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := dueWalk(t, s, 7)
	if len(all) != count {
		t.Fatalf("due walk saw %d jobs, OpenJobCount %d", len(all), count)
	}
	if !slices.IsSortedFunc(all, func(a, b store.DueJob) int {
		return store.CursorOf(&a.Job).Compare(store.CursorOf(&b.Job))
	}) {
		t.Fatal("due walk not in due order")
	}
	for _, d := range all {
		if d.Job.State.Final() || d.User != "u-42" || d.Alert == nil || d.Alert.EventID != d.Job.Event.ID {
			t.Fatalf("bad due job %+v user %q alert %+v", d.Job, d.User, d.Alert)
		}
	}
	checkDB(t, s.db)
}

func TestDueIndexBuiltForOldFile(t *testing.T) {
	path := t.TempDir() + "/relay.db"
	s := openAt(t, path)
	ctx := context.Background()
	for i := range 5 {
		e := ev("acme", fmt.Sprintf("e%d", i))
		mustAdd(t, s, e)
		j := job(e.Key(), "a", relay.StatePending)
		j.UpdatedAt = t0.Add(-time.Duration(i) * time.Second) // reverse order
		if err := s.Decide(ctx, e.Key(), relay.Decision{}, &relay.Alert{}, []relay.Job{j}); err != nil {
			t.Fatal(err)
		}
	}
	// Simulate a file from before the index.
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketJobsDue) }); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucketJobsDue); return err }); err != nil {
		t.Fatal(err)
	}
	all := dueWalk(t, s, 100)
	var ids []string
	for _, d := range all {
		ids = append(ids, d.Job.Event.ID)
	}
	if want := []string{"e4", "e3", "e2", "e1", "e0"}; !slices.Equal(ids, want) {
		t.Fatalf("due order %v, want %v", ids, want)
	}
	checkDueIndex(t, s)
}

func TestDeadLetters(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	var keys []relay.EventKey
	for i := range 5 {
		e := ev("acme", fmt.Sprintf("e%d", i))
		if i == 4 {
			e.ExpiresAt = t0.Add(time.Second)
		}
		mustAdd(t, s, e)
		keys = append(keys, e.Key())
		if err := s.Decide(ctx, e.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, &relay.Alert{EventID: e.ID}, []relay.Job{job(e.Key(), "a", relay.StatePending)}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, k := range keys {
		j := job(k, "a", relay.StateFailed)
		j.Attempts, j.LastError, j.UpdatedAt = 1, "apns: 413 PayloadTooLarge (permanent)", t0.Add(time.Minute)
		id, err := s.FailJob(ctx, j, j.LastError)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := s.FailJob(ctx, job(relay.EventKey{Workspace: "acme", ID: "nope"}, "a", relay.StateFailed), "x"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("FailJob of an unknown job: %v, want not found", err)
	}
	if _, err := s.FailJob(ctx, job(keys[0], "a", relay.StatePending), "x"); err == nil {
		t.Fatal("FailJob accepted a pending job")
	}
	if n, _ := s.OpenJobCount(ctx); n != 0 {
		t.Fatalf("%d open jobs after failing all", n)
	}
	checkDueIndex(t, s)
	// Newest first, paged.
	page1, err := s.DeadLetters(ctx, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	page2, err := s.DeadLetters(ctx, page1[1].ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range append(page1, page2...) {
		got = append(got, d.ID)
	}
	if want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}; !slices.Equal(got, want) {
		t.Fatalf("dead letters %v, want %v", got, want)
	}
	if d := page1[0]; d.Event != keys[4] || d.Reason == "" || d.Attempts != 1 || d.DeviceID != "a" || !d.FailedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("dead letter %+v", d)
	}
	if _, err := s.DeadLetters(ctx, "x", 1); err == nil {
		t.Fatal("bad after accepted")
	}

	now := t0.Add(2 * time.Minute)
	dj, err := s.ReplayDeadLetter(ctx, ids[0], now)
	if err != nil {
		t.Fatal(err)
	}
	if dj.Job.State != relay.StatePending || dj.Job.Attempts != 0 || dj.Job.LastError != "" || !dj.Job.UpdatedAt.Equal(now) || dj.User != "u-42" || dj.Alert == nil {
		t.Fatalf("replayed job %+v", dj)
	}
	if _, err := s.ReplayDeadLetter(ctx, ids[0], now); !errors.Is(err, store.ErrReplayed) {
		t.Fatalf("second replay: %v, want ErrReplayed", err)
	}
	if _, err := s.ReplayDeadLetter(ctx, ids[4], now); !errors.Is(err, relay.ErrExpired) {
		t.Fatalf("replay of an expired event: %v, want ErrExpired", err)
	}
	for _, id := range []string{"999", "0", "abc"} {
		if _, err := s.ReplayDeadLetter(ctx, id, now); !errors.Is(err, relay.ErrNotFound) {
			t.Fatalf("replay %q: %v, want not found", id, err)
		}
	}
	if n, _ := s.OpenJobCount(ctx); n != 1 {
		t.Fatalf("%d open jobs after one replay", n)
	}
	checkDueIndex(t, s)
	list, _ := s.DeadLetters(ctx, "", 10)
	if !list[4].ReplayedAt.Equal(now) {
		t.Fatalf("replayed dead letter %+v", list[4])
	}
	checkDB(t, s.db)
}

// TestDeadLettersConcurrentReplay: of many concurrent replays of one dead
// letter, exactly one succeeds.
func TestDeadLettersConcurrentReplay(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	e := ev("acme", "e")
	mustAdd(t, s, e)
	if err := s.Decide(ctx, e.Key(), relay.Decision{}, &relay.Alert{}, []relay.Job{job(e.Key(), "a", relay.StatePending)}); err != nil {
		t.Fatal(err)
	}
	id, err := s.FailJob(ctx, job(e.Key(), "a", relay.StateFailed), "bad")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ok := 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := s.ReplayDeadLetter(ctx, id, t0)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if !errors.Is(err, store.ErrReplayed) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d replays succeeded, want 1", ok)
	}
	checkDueIndex(t, s)
}
