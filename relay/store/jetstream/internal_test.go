package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/natsd/natsdtest"
	"github.com/edgerelay/edgerelay/relay/store"
)

// A relay dying between publishing a decision's job messages and writing
// the decision leaves messages pointing at an undecided event: they are
// put back until the event is decided, then lead to exactly one lease of
// the job (the record's lease generation arbitrates the duplicate).
func TestJobMessagesBeforeDecision(t *testing.T) {
	servers := natsdtest.Start(t, 1, natsdtest.Config{})
	nc, err := servers[0].Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	s, err := Open(ctx, Options{Conn: nc, Prefix: "stray"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
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
