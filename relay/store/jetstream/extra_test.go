package jetstream_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/natsd"
	"github.com/edgerelay/edgerelay/relay/natsd/natsdtest"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/jetstream"
)

// pair opens two stores (two relays) on one fresh prefix of one server.
func pair(t *testing.T) (*jetstream.Store, *jetstream.Store) {
	t.Helper()
	servers := natsdtest.Start(t, 1, natsdtest.Config{})
	h := harness(servers, 1)
	a := h.Open(t).(*jetstream.Store)
	b := h.OpenPeer(t, a).(*jetstream.Store)
	for _, s := range []*jetstream.Store{a, b} {
		t.Cleanup(func() { _ = s.Close(context.Background()) })
	}
	return a, b
}

func TestRecentShared(t *testing.T) {
	a, b := pair(t)
	ctx := context.Background()
	now := time.Now()
	var wg sync.WaitGroup
	for i := range 10 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			if err := s.RecordRecent(ctx, "acme", "u-1", relay.TypeOTPReceived, now); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, at := range []time.Time{now.Add(-5 * time.Minute), now.Add(-30 * time.Minute), now.Add(-2 * time.Hour)} {
		if err := a.RecordRecent(ctx, "acme", "u-1", relay.TypeOTPReceived, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.RecordRecent(ctx, "acme", "u-1", relay.TypeAccountShared, now); err != nil {
		t.Fatal(err)
	}
	got, err := b.Recent(ctx, "acme", "u-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if want := (jetstream.RecentCounts{M1: 10, M10: 11, H1: 12}); got[relay.TypeOTPReceived] != want {
		t.Fatalf("otp counts %+v, want %+v (concurrent records from two relays, older ones in their windows, none past the hour)", got[relay.TypeOTPReceived], want)
	}
	if got[relay.TypeAccountShared] != (jetstream.RecentCounts{M1: 1, M10: 1, H1: 1}) || len(got) != 2 {
		t.Fatalf("counts %+v", got)
	}
	if none, err := a.Recent(ctx, "acme", "nobody", now); err != nil || none != nil {
		t.Fatalf("no events: %v %v", none, err)
	}
	// An hour later nothing is left.
	if later, err := a.Recent(ctx, "acme", "u-1", now.Add(61*time.Minute)); err != nil || later != nil {
		t.Fatalf("an hour later: %v %v", later, err)
	}
}

func TestLeaseWaitWakesForNewJob(t *testing.T) {
	a, b := pair(t)
	ctx := context.Background()
	lane := relay.Lane("demo", relay.PlatformIOS)
	type result struct {
		got []store.Leased
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Wait is long: the lease must end with the job, not with Wait.
		got, _, err := b.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: "r2", Now: time.Now().Add(time.Minute), TTL: time.Minute, Max: 5, Wait: 30 * time.Second})
		done <- result{got, err}
	}()
	now := time.Now()
	ev := relay.Event{ID: "e1", Workspace: "acme", User: "u-1", Type: relay.TypeOTPReceived, Priority: relay.PriorityHigh,
		OccurredAt: now, ExpiresAt: now.Add(time.Minute)}
	if _, err := a.AddEvents(ctx, []relay.Event{ev}, now); err != nil {
		t.Fatal(err)
	}
	job := relay.Job{Event: ev.Key(), DeviceID: "d-1", Platform: relay.PlatformIOS, App: "demo", State: relay.StatePending,
		ExpiresAt: ev.ExpiresAt, UpdatedAt: now}
	alert := &relay.Alert{EventID: ev.ID, Workspace: ev.Workspace, Priority: relay.PriorityHigh}
	if err := a.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, alert, []relay.Job{job}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.got) != 1 || r.got[0].Job.DeviceID != "d-1" || r.got[0].Device.ID != "" {
		t.Fatalf("waiting lease: %+v %v", r.got, r.err)
	}
}

func TestSettleChecksTicket(t *testing.T) {
	a, _ := pair(t)
	err := a.Settle(context.Background(), store.Leased{Ticket: "forged"}, relay.Job{})
	if err == nil || !strings.Contains(err.Error(), "ticket") {
		t.Fatalf("settle with a foreign ticket: %v", err)
	}
}

func TestOptionErrors(t *testing.T) {
	ctx := context.Background()
	for _, o := range []jetstream.Options{
		{URL: "nats://127.0.0.1:1", Prefix: "a.b"},
		{URL: "nats://127.0.0.1:1", Replicas: 2},
		{},
		{URL: "nats://127.0.0.1:1", CertFile: "c.pem"},
		{URL: "nats://127.0.0.1:1", CredentialsFile: "x.creds", User: "u", Password: "p"},
	} {
		if s, err := jetstream.Open(ctx, o); err == nil {
			_ = s.Close(ctx)
			t.Errorf("Open(%+v) accepted", o)
		}
	}
}

func TestURLConnectionPingClose(t *testing.T) {
	srv, err := natsd.New(natsd.Options{Name: "tcp", StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	s, err := jetstream.Open(ctx, jetstream.Options{URL: srv.ClientURL(), Name: "relay-1", Prefix: "tcp"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSettings(ctx, "acme", map[string]relay.Setting{relay.TypeOTPReceived: relay.SettingEnforced}); err != nil {
		t.Fatal(err)
	}
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if err := s.Close(done); err != nil {
		t.Fatalf("close with a done context: %v", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ping after close succeeded")
	}
	if _, _, err := s.Lease(ctx, store.LeaseRequest{Lane: "demo/ios", TTL: time.Second, Max: 1}); err == nil {
		t.Fatal("lease after close succeeded")
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// Relays starting together on a fresh prefix all create or bind the same
// streams and buckets, and each reads what another wrote.
func TestConcurrentOpen(t *testing.T) {
	servers := natsdtest.Start(t, 1, natsdtest.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stores := make([]*jetstream.Store, 4)
	var wg sync.WaitGroup
	for i := range stores {
		nc, err := servers[0].Conn()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wg.Go(func() {
			s, err := jetstream.Open(ctx, jetstream.Options{Conn: nc, Prefix: "together"})
			if err != nil {
				t.Error(err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	d := relay.Device{Workspace: "acme", User: "u-1", ID: "d-1", Platform: relay.PlatformIOS, Token: "t", App: "demo"}
	if _, err := stores[0].RegisterDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		if got, err := s.Devices(ctx, "acme", "u-1"); err != nil || len(got) != 1 {
			t.Fatalf("devices %v %v", got, err)
		}
		if _, err := s.Device(ctx, "acme", "u-1", "d-1"); err != nil {
			t.Fatal(err)
		}
		_ = s.Close(ctx)
	}
}

// With three replicas, losing one server leaves the state readable and
// writable through the others (after the raft groups it led elect new
// leaders), with nothing acknowledged lost.
func TestSurvivesServerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	servers := natsdtest.Start(t, 3, natsdtest.Config{})
	// Setting up an R3 cluster's streams took most of a minute under CI's
	// load: the minute the writes get to resume starts at the loss.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	open := func(node int) *jetstream.Store {
		nc, err := servers[node].Conn()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		s, err := jetstream.Open(ctx, jetstream.Options{Conn: nc, Replicas: 3, Prefix: "loss"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	}
	doomed, a, b := open(0), open(1), open(2)
	now := time.Now()
	ev := relay.Event{ID: "before", Workspace: "acme", User: "u-1", Type: relay.TypeOTPReceived, OccurredAt: now, ExpiresAt: now.Add(time.Hour)}
	if res, err := doomed.AddEvents(ctx, []relay.Event{ev}, now); err != nil || res[0] != nil {
		t.Fatalf("add: %v %v", res, err)
	}
	lane := relay.Lane("demo", relay.PlatformIOS)
	job := relay.Job{Event: ev.Key(), DeviceID: "d-1", Platform: relay.PlatformIOS, App: "demo", State: relay.StatePending,
		ExpiresAt: ev.ExpiresAt, UpdatedAt: now}
	if err := doomed.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, nil, []relay.Job{job}); err != nil {
		t.Fatal(err)
	}
	if err := servers[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Writes through the survivors resume once leaders are elected.
	lost := time.Now()
	ev2 := ev
	ev2.ID = "after"
	var err error
	for {
		var res []error
		if res, err = a.AddEvents(ctx, []relay.Event{ev2}, time.Now()); err == nil {
			if res[0] != nil {
				t.Fatalf("add after the loss: %v", res[0])
			}
			break
		}
		if time.Since(lost) > time.Minute || ctx.Err() != nil {
			t.Fatalf("no write within %v of losing a server: %v", time.Since(lost).Round(time.Second), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("writes resumed %v after the loss", time.Since(lost).Round(time.Millisecond))
	if res, err := b.AddEvents(ctx, []relay.Event{ev}, time.Now()); err != nil || !errors.Is(res[0], relay.ErrDuplicate) {
		t.Fatalf("event accepted before the loss: %v %v, want duplicate", res, err)
	}
	var got []store.Leased
	for len(got) == 0 && ctx.Err() == nil {
		got, _, err = b.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: "b", Now: time.Now(), TTL: time.Minute, Max: 1, Wait: time.Second})
		if err != nil {
			t.Logf("lease while the cluster recovers: %v", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(got) != 1 || got[0].Job.Event.ID != "before" {
		t.Fatalf("job scheduled before the loss: %+v", got)
	}
	j := got[0].Job
	j.State, j.Attempts, j.UpdatedAt = relay.StateDelivered, 1, time.Now()
	if err := b.Settle(ctx, got[0], j); err != nil {
		t.Fatal(err)
	}
	if rec, err := a.Event(ctx, ev.Key()); err != nil || rec.Jobs[0].State != relay.StateDelivered {
		t.Fatalf("record %+v %v", rec, err)
	}
}

func TestLeaseWaitEndsWithContext(t *testing.T) {
	a, _ := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := a.Lease(ctx, store.LeaseRequest{Lane: "demo/ios", Owner: "r1", Now: time.Now(), TTL: time.Minute, Max: 1, Wait: time.Hour})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it wait (not required for the assertion)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("lease after cancel: %v, want context.Canceled", err)
	}
}

// LaneStats names the relays holding leases, across relays.
func TestLaneStatsOwners(t *testing.T) {
	a, b := pair(t)
	ctx := context.Background()
	now := time.Now()
	lane := relay.Lane("demo", relay.PlatformAndroid)
	for i := range 3 {
		ev := relay.Event{ID: "e" + string(rune('0'+i)), Workspace: "acme", User: "u-1", Type: relay.TypeAccountShared,
			OccurredAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := a.AddEvents(ctx, []relay.Event{ev}, now); err != nil {
			t.Fatal(err)
		}
		j := relay.Job{Event: ev.Key(), DeviceID: "d-1", Platform: relay.PlatformAndroid, App: "demo", State: relay.StatePending,
			ExpiresAt: ev.ExpiresAt, UpdatedAt: now}
		if err := a.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, nil, []relay.Job{j}); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []struct {
		s     *jetstream.Store
		owner string
		n     int
	}{{a, "relay-a", 2}, {b, "relay-b", 1}} {
		got, _, err := l.s.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: l.owner, Now: time.Now(), TTL: time.Minute, Max: l.n, Wait: 5 * time.Second})
		if err != nil || len(got) != l.n {
			t.Fatalf("%s leased %d %v, want %d", l.owner, len(got), err, l.n)
		}
	}
	stats, err := b.LaneStats(ctx, time.Now())
	if err != nil || len(stats) != 1 {
		t.Fatalf("stats %+v %v", stats, err)
	}
	st := stats[0]
	if st.Lane != lane || st.Normal != 3 || st.Leased != 3 || st.Due != 0 || st.Owners["relay-a"] != 2 || st.Owners["relay-b"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}
