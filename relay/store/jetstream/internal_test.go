package jetstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/natsd/natsdtest"
	"github.com/edgerelay/edgerelay/relay/store"
)

// openOneNode opens a store on prefix through a one-node server of its
// own, closed with the test.
func openOneNode(t *testing.T, prefix string) *Store {
	t.Helper()
	servers := natsdtest.Start(t, 1, natsdtest.Config{})
	nc, err := servers[0].Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s, err := Open(context.Background(), Options{Conn: nc, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// A relay dying between publishing a decision's job messages and writing
// the decision leaves messages pointing at an undecided event: they are
// put back until the event is decided, then lead to exactly one lease of
// the job (the record's lease generation arbitrates the duplicate).
func TestJobMessagesBeforeDecision(t *testing.T) {
	ctx := context.Background()
	s := openOneNode(t, "stray")
	now := time.Now()
	ev := relay.Event{ID: "e1", Workspace: "acme", User: "u-1", Type: relay.TypeOTPReceived, OccurredAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := s.AddEvents(ctx, []relay.Event{ev}, now); err != nil {
		t.Fatal(err)
	}
	job := relay.Job{Event: ev.Key(), DeviceID: "d-1", Platform: relay.PlatformAndroid, App: "demo", State: relay.StatePending,
		ExpiresAt: ev.ExpiresAt, UpdatedAt: now}
	// The dying relay's message.
	if err := s.publishJob(ctx, &job, prioNormal); err != nil {
		t.Fatal(err)
	}
	lane := job.Lane()
	req := store.LeaseRequest{Lane: lane, Owner: "r1", Now: time.Now(), TTL: time.Minute, Max: 10}
	if got, _, err := s.Lease(ctx, req); err != nil || len(got) != 0 {
		t.Fatalf("leased an undecided event's job: %v %v", got, err)
	}
	// Recovery decides it: a second message for the same job.
	if err := s.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, nil, []relay.Job{job}); err != nil {
		t.Fatal(err)
	}
	var leased []store.Leased
	deadline := time.Now().Add(10 * time.Second) // the first message comes back after undecidedRetry
	for time.Now().Before(deadline) {
		req.Now = time.Now()
		got, _, err := s.Lease(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		leased = append(leased, got...)
		time.Sleep(100 * time.Millisecond)
		if time.Since(now) > undecidedRetry+time.Second && len(leased) > 0 {
			break
		}
	}
	if len(leased) != 1 {
		t.Fatalf("leases %d, want 1", len(leased))
	}
	l := leased[0]
	j := l.Job
	j.State, j.Attempts, j.UpdatedAt = relay.StateDelivered, 1, time.Now()
	if err := s.Settle(ctx, l, j); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, l, j); err == nil {
		t.Fatal("settled one lease twice")
	}
	rec, err := s.Event(ctx, ev.Key())
	if err != nil || rec.Jobs[0].State != relay.StateDelivered {
		t.Fatalf("record %+v %v", rec, err)
	}
}

func TestKeysAreTokens(t *testing.T) {
	for _, in := range []string{"", "a", "a.b", "*", ">", "with space", "ü/ñ", "_"} {
		k := tok(in)
		for _, c := range k {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("tok(%q) = %q has %q", in, k, c)
			}
		}
		if out, err := untok(k); err != nil || out != in {
			t.Fatalf("untok(tok(%q)) = %q, %v", in, out, err)
		}
	}
	if tok("") == tok("_") {
		t.Fatal("empty and _ collide")
	}
}

// A high-priority consumer that does not answer (just created, between
// leaders) must not let a lease take the lane's normal jobs ahead of its
// high ones: the lease holds back until the high consumer answers again.
// (CI once leased [n0 n1 n2 h0] on a three-node cluster.)
func TestLeaseHoldsNormalWhileHighUnanswered(t *testing.T) {
	ctx := context.Background()
	s := openOneNode(t, "hold")
	now := time.Now()
	var lane string
	for i, prio := range []relay.Priority{relay.PriorityNormal, relay.PriorityHigh} {
		ev := relay.Event{ID: fmt.Sprintf("e%d", i), Workspace: "acme", User: "u-1", Type: relay.TypeOTPReceived,
			Priority: prio, OccurredAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := s.AddEvents(ctx, []relay.Event{ev}, now); err != nil {
			t.Fatal(err)
		}
		job := relay.Job{Event: ev.Key(), DeviceID: "d-1", Platform: relay.PlatformIOS, App: "demo", State: relay.StatePending,
			ExpiresAt: ev.ExpiresAt, UpdatedAt: now}
		alert := &relay.Alert{EventID: ev.ID, Workspace: ev.Workspace, Type: ev.Type, Priority: prio, ExpiresAt: ev.ExpiresAt}
		if err := s.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, alert, []relay.Job{job}); err != nil {
			t.Fatal(err)
		}
		lane = job.Lane()
	}
	// The relay knows both consumers; then the high one stops answering.
	for _, p := range prios {
		if _, err := s.consumer(ctx, lane, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.jobs.DeleteConsumer(ctx, laneToken(lane)+"_"+prioHigh); err != nil {
		t.Fatal(err)
	}
	req := store.LeaseRequest{Lane: lane, Owner: "r1", Now: time.Now(), TTL: time.Minute, Max: 10}
	got, _, err := s.Lease(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("leased %s while the high consumer did not answer", got[0].Job.Event.ID)
	}
	// Asked again, the high consumer is made anew and answers first.
	req.Now = time.Now()
	if got, _, err = s.Lease(ctx, req); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Job.Event.ID != "e1" || got[1].Job.Event.ID != "e0" {
		t.Fatalf("leased %d jobs (%v), want e1 (high) then e0", len(got), got)
	}
}

// TestDirectGetOnlyWithoutReplicas: a single-replica store reads through
// direct get (the only server has every acknowledged write); a replicated
// one never does (a replica may lag). A single-replica store made before
// this setting gets it at the next open.
func TestDirectGetOnlyWithoutReplicas(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, s *Store, want bool) {
		t.Helper()
		streams := []jetstream.Stream{s.eventsStr, s.dirStr, s.jobs, s.answer, s.accept, s.audit}
		for _, str := range streams {
			info, err := str.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Config.AllowDirect != want || str.CachedInfo().Config.AllowDirect != want {
				t.Errorf("stream %s (replicas %d): direct get %t (cached %t), want %t", info.Config.Name,
					info.Config.Replicas, info.Config.AllowDirect, str.CachedInfo().Config.AllowDirect, want)
			}
		}
		recent, err := s.js.Stream(ctx, "KV_"+s.opts.Prefix+"_recent")
		if err != nil {
			t.Fatal(err)
		}
		if got := recent.CachedInfo().Config.AllowDirect; got != want {
			t.Errorf("recent bucket: direct get %t, want %t", got, want)
		}
	}
	t.Run("one replica", func(t *testing.T) {
		s := openOneNode(t, "direct1")
		check(t, s, true)
		// As a store made before: direct get off. The next open turns it on.
		for _, str := range []jetstream.Stream{s.eventsStr, s.dirStr} {
			cfg := str.CachedInfo().Config
			cfg.AllowDirect = false
			if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		}
		again, err := Open(ctx, Options{Conn: s.nc, Prefix: "direct1"})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close(ctx)
		check(t, again, true)
	})
	t.Run("three replicas", func(t *testing.T) {
		servers := natsdtest.Start(t, 3, natsdtest.Config{})
		nc, err := servers[0].Conn()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		s, err := Open(ctx, Options{Conn: nc, Prefix: "direct3", Replicas: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(ctx)
		check(t, s, false)
	})
}

// Deleting a message another relay deleted first (two relays' sweeps trim
// the same undecided-index message) is done, not a failure: the server
// answers "message deletion unsuccessful: no message found" (10057), not
// "message not found", and the sweeps logged it as a WARN every 2 s.
func TestDeletingADeletedMessageIsDone(t *testing.T) {
	ctx := context.Background()
	s := openOneNode(t, "gone")
	if err := s.index(ctx, acceptedMsg{ReceivedAt: time.Now(), Keys: [][2]string{{"ws", "e1"}}}); err != nil {
		t.Fatal(err)
	}
	msg, err := nextMsg(ctx, s.accept, 0, s.subj.accepted)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.accept.DeleteMsg(ctx, msg.Sequence); !msgGone(err) {
		t.Fatalf("first delete: %v", err)
	}
	err = s.accept.DeleteMsg(ctx, msg.Sequence)
	if err == nil || !msgGone(err) {
		t.Fatalf("second delete: %v, want an error that says the message is gone", err)
	}
	if msgGone(context.DeadlineExceeded) || msgGone(fmt.Errorf("x: %w", jetstream.ErrNoStreamResponse)) {
		t.Fatal("other errors taken for a deleted message")
	}
}
