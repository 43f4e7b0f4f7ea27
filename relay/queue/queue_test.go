package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	iosLane     = relay.Lane("demo", relay.PlatformIOS)
	androidLane = relay.Lane("demo", relay.PlatformAndroid)
)

// schedule stores an event for user u's device and decides it with one job
// of the given state, due at next (zero: now).
func schedule(t *testing.T, st *bolt.Store, id string, prio relay.Priority, p relay.Platform, ttl time.Duration, next time.Time) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	dev := relay.Device{Workspace: "ws", User: "u", ID: "d-" + string(p), App: "demo", Platform: p, Token: "tok-" + string(p)}
	if _, err := st.RegisterDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	ev := relay.Event{ID: id, Workspace: "ws", User: "u", Type: relay.TypeAccountShared, Priority: prio, OccurredAt: now, ExpiresAt: now.Add(ttl)}
	if res, err := st.AddEvents(ctx, []relay.Event{ev}, now); err != nil || res[0] != nil {
		t.Fatalf("add %s: %v %v", id, res, err)
	}
	j := relay.Job{Event: ev.Key(), DeviceID: dev.ID, Platform: p, App: "demo", State: relay.StatePending, ExpiresAt: ev.ExpiresAt, UpdatedAt: now, NextAt: next}
	if !next.IsZero() {
		j.State = relay.StateDeferred
	}
	a := &relay.Alert{EventID: id, Workspace: "ws", Type: ev.Type, Priority: prio, ExpiresAt: ev.ExpiresAt, CollapseID: id}
	if err := st.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver, Reason: "enabled"}, a, []relay.Job{j}); err != nil {
		t.Fatal(err)
	}
}

// openWithJobs opens a store with n iOS jobs due now, of events e00,
// e01…, each to expire in an hour.
func openWithJobs(t *testing.T, n int) *bolt.Store {
	t.Helper()
	st := bolttest.Open(t)
	for i := range n {
		schedule(t, st, fmt.Sprintf("e%02d", i), relay.PriorityNormal, relay.PlatformIOS, time.Hour, time.Time{})
	}
	return st
}

// job returns the stored state of event id's only job.
func job(t *testing.T, st *bolt.Store, id string) relay.Job {
	t.Helper()
	rec, err := st.Event(context.Background(), relay.EventKey{Workspace: "ws", ID: id})
	if err != nil || len(rec.Jobs) != 1 {
		t.Fatalf("event %s: %+v %v", id, rec, err)
	}
	return rec.Jobs[0]
}

// notifier answers each send with the next scripted error; block, when
// set, holds every send until it is closed or the send's context ends.
type notifier struct {
	mu    sync.Mutex
	errs  []error
	sends []time.Time
	ids   []string
	block chan struct{}
}

func (n *notifier) Notify(ctx context.Context, _ relay.Device, a *relay.Alert) error {
	n.mu.Lock()
	now := time.Now()
	if !now.Before(a.ExpiresAt) {
		panic("send after expiry")
	}
	n.sends = append(n.sends, now)
	n.ids = append(n.ids, a.EventID)
	var err error
	if len(n.errs) > 0 {
		err, n.errs = n.errs[0], n.errs[1:]
	}
	block := n.block
	n.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (n *notifier) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.sends)
}

func (n *notifier) order() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.ids)
}

// run starts a queue and returns it with a stop func.
func run(t *testing.T, opts Options) (*Queue, func()) {
	q := New(opts)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return q, stop
}

func opts(st *bolt.Store, lanes map[string]Lane) Options {
	return Options{Schedule: st, Devices: st, Lanes: lanes, Backoff: Backoff{Initial: time.Second, Max: time.Minute}}
}

func TestQueueRetriesThenDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := bolttest.Open(t)
		n := &notifier{errs: []error{
			&delivery.Error{Provider: "apns", Status: 503, Outcome: delivery.Retry},
			&delivery.Error{Provider: "apns", Status: 429, Outcome: delivery.Retry, RetryAfter: 10 * time.Second},
		}}
		schedule(t, st, "e1", relay.PriorityHigh, relay.PlatformIOS, time.Minute, time.Time{})
		q, stop := run(t, opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 2}}))
		defer stop()
		time.Sleep(time.Minute) // fake time inside the bubble
		synctest.Wait()
		j := job(t, st, "e1")
		if j.State != relay.StateDelivered || j.Attempts != 3 {
			t.Fatalf("job = %+v, want delivered after 3 attempts", j)
		}
		// First retry after 1s (backoff), second after >= 10s (Retry-After).
		if got := n.sends[1].Sub(n.sends[0]); got != time.Second {
			t.Errorf("first retry after %v, want 1s", got)
		}
		if got := n.sends[2].Sub(n.sends[1]); got != 10*time.Second {
			t.Errorf("second retry after %v, want Retry-After 10s", got)
		}
		if q.Open() != 0 {
			t.Errorf("queue still counts %d open jobs", q.Open())
		}
	})
}

func TestQueueOutcomes(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		ttl   time.Duration
		want  relay.DeliveryState
		drops bool
	}{
		{"delivered", nil, time.Minute, relay.StateDelivered, false},
		{"unregistered removes token", &delivery.Error{Provider: "apns", Status: 410, Reason: "Unregistered", Outcome: delivery.DropToken}, time.Minute, relay.StateTokenRemoved, true},
		{"permanent fails", &delivery.Error{Provider: "apns", Status: 413, Reason: "PayloadTooLarge", Outcome: delivery.Permanent}, time.Minute, relay.StateFailed, false},
		{"retry past expiry expires", &delivery.Error{Provider: "fcm", Status: 503, Outcome: delivery.Retry, RetryAfter: time.Hour}, time.Minute, relay.StateExpired, false},
		{"expired error", relay.ErrExpired, time.Minute, relay.StateExpired, false},
		{"transport error retried until expiry", errors.New("connection reset"), 3 * time.Second, relay.StateExpired, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := bolttest.Open(t)
				var errs []error
				if tc.err != nil {
					for range 50 {
						errs = append(errs, tc.err)
					}
				}
				n := &notifier{errs: errs}
				schedule(t, st, "e", relay.PriorityNormal, relay.PlatformIOS, tc.ttl, time.Time{})
				_, stop := run(t, opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 2}}))
				defer stop()
				time.Sleep(2 * time.Hour)
				synctest.Wait()
				j := job(t, st, "e")
				if j.State != tc.want {
					t.Fatalf("state = %s (last error %q), want %s", j.State, j.LastError, tc.want)
				}
				_, derr := st.Device(context.Background(), "ws", "u", "d-ios")
				if got := errors.Is(derr, relay.ErrNotFound); got != tc.drops {
					t.Errorf("token removed = %v, want %v", got, tc.drops)
				}
				if tc.err != nil && tc.want != relay.StateDelivered && j.LastError == "" {
					t.Errorf("last_error empty for %s", tc.want)
				}
				dls, _ := st.DeadLetters(context.Background(), "", 10)
				if got := len(dls) == 1; got != (tc.want == relay.StateFailed) {
					t.Errorf("dead letters %+v for state %s", dls, tc.want)
				}
			})
		})
	}
}

func TestQueueDeferredWaitsUntilDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := bolttest.Open(t)
		n := &notifier{}
		now := time.Now()
		schedule(t, st, "e", relay.PriorityNormal, relay.PlatformIOS, time.Hour, now.Add(10*time.Minute))
		_, stop := run(t, opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 2}}))
		defer stop()
		time.Sleep(9 * time.Minute)
		synctest.Wait()
		if n.count() != 0 {
			t.Fatalf("deferred job sent early")
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if n.count() != 1 || job(t, st, "e").State != relay.StateDelivered {
			t.Fatalf("deferred job not delivered when due: sends=%d state=%s", n.count(), job(t, st, "e").State)
		}
		if d := n.sends[0].Sub(now); d != 10*time.Minute {
			t.Errorf("sent after %v, want 10m", d)
		}
	})
}

func TestQueueShutdownHandsBackCutSends(t *testing.T) {
	st := bolttest.Open(t)
	n := &notifier{block: make(chan struct{})}
	schedule(t, st, "cut", relay.PriorityHigh, relay.PlatformIOS, time.Hour, time.Time{})
	o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 2}})
	o.DrainTimeout = 50 * time.Millisecond
	_, stop := run(t, o)
	waitFor(t, func() bool { return n.count() == 1 })
	stop()
	j := job(t, st, "cut")
	if j.State != relay.StatePending || j.Attempts != 0 {
		t.Fatalf("job cut by shutdown: %+v, want pending with no attempt", j)
	}
	// The job is due again at once, for any relay.
	got, _, err := st.Lease(context.Background(), store.LeaseRequest{Lane: iosLane, Owner: "other", Now: time.Now(), TTL: time.Minute, Max: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("lease after shutdown: %v %v", got, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An OTP scheduled behind a backlog of normal-priority alerts is sent next.
func TestQueueHighPriorityJumpsTheBacklog(t *testing.T) {
	st := bolttest.Open(t)
	n := &notifier{block: make(chan struct{})}
	for i := range 200 {
		schedule(t, st, fmt.Sprintf("share-%03d", i), relay.PriorityNormal, relay.PlatformIOS, time.Hour, time.Time{})
	}
	o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 4}})
	o.MaxLease = 4
	q, stop := run(t, o)
	defer stop()
	waitFor(t, func() bool { return n.count() == 4 }) // the lane is full
	schedule(t, st, "otp", relay.PriorityHigh, relay.PlatformIOS, time.Hour, time.Time{})
	q.Scheduled(iosLane, relay.PriorityHigh, 1)
	close(n.block)
	waitFor(t, func() bool { return job(t, st, "otp").State == relay.StateDelivered })
	order := n.order()
	at := slices.Index(order, "otp")
	if at < 0 || at > 8 {
		t.Fatalf("otp sent as number %d of %d (first sends %v); want within the first two lease rounds", at+1, len(order), order[:min(len(order), 12)])
	}
}

// A lane whose provider hangs does not hold up another lane.
func TestQueueLanesIndependent(t *testing.T) {
	st := bolttest.Open(t)
	slow := &notifier{block: make(chan struct{})}
	fast := &notifier{}
	for i := range 20 {
		schedule(t, st, fmt.Sprintf("i%02d", i), relay.PriorityNormal, relay.PlatformIOS, time.Hour, time.Time{})
	}
	schedule(t, st, "a", relay.PriorityNormal, relay.PlatformAndroid, time.Hour, time.Time{})
	_, stop := run(t, opts(st, map[string]Lane{iosLane: {Notifier: slow, Concurrency: 2}, androidLane: {Notifier: fast, Concurrency: 2}}))
	defer func() { close(slow.block); stop() }()
	waitFor(t, func() bool { return job(t, st, "a").State == relay.StateDelivered })
	if slow.count() != 2 {
		t.Fatalf("slow lane started %d sends, want its concurrency (2)", slow.count())
	}
}

func TestQueueAdmitRefusesNormalFirst(t *testing.T) {
	st := bolttest.Open(t)
	for i := range 9 {
		schedule(t, st, fmt.Sprintf("s%d", i), relay.PriorityNormal, relay.PlatformIOS, time.Hour, time.Now().Add(time.Hour))
	}
	o := opts(st, map[string]Lane{iosLane: {Notifier: &notifier{}}})
	o.MaxOpenJobs = 10
	q, stop := run(t, o)
	defer stop()
	waitFor(t, func() bool { return q.Open() == 9 })
	if err := q.Admit(relay.PriorityNormal); !errors.Is(err, ErrFull) {
		t.Fatalf("normal at 9 of 10: %v, want ErrFull (10%% kept for high priority)", err)
	}
	if err := q.Admit(relay.PriorityHigh); err != nil {
		t.Fatalf("high at 9 of 10: %v, want admitted", err)
	}
	schedule(t, st, "otp", relay.PriorityHigh, relay.PlatformIOS, time.Hour, time.Now().Add(time.Hour))
	q.Scheduled(iosLane, relay.PriorityHigh, 1)
	if err := q.Admit(relay.PriorityHigh); !errors.Is(err, ErrFull) {
		t.Fatalf("high at 10 of 10: %v, want ErrFull", err)
	}
}

// Configuration errors open the breaker: the backlog stays in the schedule
// with no attempts spent until a probe succeeds.
func TestQueueBreakerLeavesBacklogInSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := bolttest.Open(t)
		cfgErr := &delivery.Error{Provider: "apns", Status: 403, Reason: "InvalidProviderToken", Outcome: delivery.ConfigError}
		n := &notifier{errs: []error{cfgErr, cfgErr, cfgErr, cfgErr}}
		for i := range 30 {
			schedule(t, st, fmt.Sprintf("e%02d", i), relay.PriorityNormal, relay.PlatformIOS, time.Hour, time.Time{})
		}
		o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 1}})
		o.BreakerCooldown = time.Minute
		var mu sync.Mutex
		var opened []bool
		o.OnBreaker = func(_ string, open bool, _ string) { mu.Lock(); opened = append(opened, open); mu.Unlock() }
		_, stop := run(t, o)
		defer stop()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if c := n.count(); c != 3 {
			t.Fatalf("%d sends while the breaker is open, want the 3 that opened it", c)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if c := n.count(); c != 30+3+1 {
			t.Fatalf("%d sends after the cool-downs, want every job sent once the probe succeeded (34)", c)
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(opened, []bool{true, true, false}) {
			t.Fatalf("breaker changes %v, want open, open again (the first probe failed), closed", opened)
		}
	})
}

// A relay that dies holding leases: another relay sends its jobs once the
// leases end.
func TestQueueTakesOverExpiredLeases(t *testing.T) {
	st := bolttest.Open(t)
	for i := range 5 {
		schedule(t, st, fmt.Sprintf("e%d", i), relay.PriorityHigh, relay.PlatformIOS, time.Hour, time.Time{})
	}
	held, _, err := st.Lease(context.Background(), store.LeaseRequest{Lane: iosLane, Owner: "dead-relay", Now: time.Now(), TTL: 300 * time.Millisecond, Max: 5})
	if err != nil || len(held) != 5 {
		t.Fatalf("lease: %v %v", held, err)
	}
	n := &notifier{}
	o := opts(st, map[string]Lane{iosLane: {Notifier: n}})
	o.Owner, o.PollInterval = "survivor", 50*time.Millisecond
	_, stop := run(t, o)
	defer stop()
	for i := range 5 {
		waitFor(t, func() bool { return job(t, st, fmt.Sprintf("e%d", i)).State == relay.StateDelivered })
	}
	if c := n.count(); c != 5 {
		t.Fatalf("%d sends, want 5", c)
	}
}

// TestQueueStatsAgeDuringOutage: jobs parked behind an open breaker are
// not due, yet they wait; the lane's oldest age counts from when their
// events were accepted, so GET /v1/queue and the metrics show the outage
// (it showed "0s" for 1,501 parked jobs).
func TestQueueStatsAgeDuringOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := bolttest.Open(t)
		down := &delivery.Error{Provider: "apns", Status: 503, Outcome: delivery.Retry, RetryAfter: 4 * time.Minute}
		n := &notifier{errs: slices.Repeat([]error{down}, 100)}
		for i := range 10 {
			schedule(t, st, fmt.Sprintf("e%02d", i), relay.PriorityNormal, relay.PlatformIOS, 2*time.Hour, time.Time{})
		}
		// All leased at once: three failures open the breaker, the other
		// jobs park until the cool-down ends; none is due at 3m.
		o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 10}})
		o.BreakerCooldown, o.OutageThreshold = time.Hour, 3
		q, stop := run(t, o)
		defer stop()
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		stats, err := q.Stats(context.Background())
		if err != nil || len(stats) != 1 {
			t.Fatalf("stats %+v %v", stats, err)
		}
		s := stats[0]
		if s.Breaker != "open" || s.Depth != 10 || s.Due != 0 {
			t.Fatalf("lane %+v: want the breaker open and 10 jobs parked, none due", s)
		}
		if s.OldestAge < 3*time.Minute || s.Oldest != s.OldestAge.String() || s.Expired != 0 {
			t.Fatalf("oldest age %v (%q), expired %d: want ≥ 3m, the time the jobs have waited, none expired", s.OldestAge, s.Oldest, s.Expired)
		}
	})
}

// goroutineNotifier records the goroutine each send runs on and the most
// sends in flight at once.
type goroutineNotifier struct {
	mu             sync.Mutex
	goroutines     map[string]bool
	inFlight, most int
	sent           int
}

func (n *goroutineNotifier) Notify(context.Context, relay.Device, *relay.Alert) error {
	id := goroutineID()
	n.mu.Lock()
	n.goroutines[id] = true
	n.inFlight++
	n.most = max(n.most, n.inFlight)
	n.mu.Unlock()
	time.Sleep(time.Millisecond)
	n.mu.Lock()
	n.inFlight--
	n.sent++
	n.mu.Unlock()
	return nil
}

// TestQueueSendsOnALanePool: a lane's sends run on at most Concurrency
// goroutines, reused from send to send (not one new goroutine per send,
// whose stack grows again every time), and they exit with Run (goleak).
func TestQueueSendsOnALanePool(t *testing.T) {
	st := bolttest.Open(t)
	for i := range 20 {
		schedule(t, st, fmt.Sprintf("e-%02d", i), relay.PriorityNormal, relay.PlatformIOS, time.Hour, time.Time{})
	}
	n := &goroutineNotifier{goroutines: map[string]bool{}}
	_, stop := run(t, opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 4}}))
	waitFor(t, func() bool { n.mu.Lock(); defer n.mu.Unlock(); return n.sent == 20 })
	stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.goroutines) > 4 || n.most > 4 {
		t.Fatalf("20 sends ran on %d goroutines, at most %d at once; want at most 4 (Concurrency)", len(n.goroutines), n.most)
	}
}

func goroutineID() string {
	buf := make([]byte, 64)
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf[:runtime.Stack(buf, false)]), "goroutine "), " ")
	return id
}

// TestSendPoolReusesTheLastIdle: after a burst, sends one at a time all
// run on the goroutine idle the shortest (whose stack the runtime has not
// shrunk), no new goroutine starts, and close ends them all.
func TestSendPoolReusesTheLastIdle(t *testing.T) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ids []string
	release, started := make(chan struct{}), make(chan struct{})
	p := newSendPool(&wg, 64, time.Now, nil, nil, func(block bool) {
		mu.Lock()
		ids = append(ids, goroutineID())
		mu.Unlock()
		if block {
			started <- struct{}{}
			<-release
		}
	})
	idle := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			p.mu.Lock()
			got := len(p.idle)
			p.mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d idle, want %d", got, n)
			}
		}
	}
	for range 4 {
		p.run(true)
	}
	for range 4 {
		<-started
	}
	close(release)
	idle(4)
	for range 8 {
		p.run(false)
		idle(4)
	}
	p.close()
	wg.Wait()
	burst, after := ids[:4], ids[4:]
	for _, id := range after {
		if id != after[0] {
			t.Fatalf("sends one at a time ran on %v, want one goroutine", after)
		}
	}
	if !slices.Contains(burst, after[0]) {
		t.Fatalf("a new goroutine (%s) started; the burst's were %v", after[0], burst)
	}
}

// ctxNotifier records each send's context.
type ctxNotifier struct {
	mu   sync.Mutex
	ctxs map[string]context.Context // by event id
}

func (n *ctxNotifier) Notify(ctx context.Context, _ relay.Device, a *relay.Alert) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ctxs[a.EventID] = ctx
	return nil
}

// TestSendEndsBeforeTheLease: a send's deadline is the sooner of the
// alert's expiry and nine tenths of its lease, and the context the
// lease's sends share ends once they are all done.
func TestSendEndsBeforeTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := bolttest.Open(t)
		schedule(t, st, "long", relay.PriorityNormal, relay.PlatformIOS, time.Hour, time.Time{})
		schedule(t, st, "short", relay.PriorityNormal, relay.PlatformIOS, 5*time.Second, time.Time{})
		leased := time.Now()
		n := &ctxNotifier{ctxs: map[string]context.Context{}}
		o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 4}})
		o.LeaseTTL = 30 * time.Second
		_, stop := run(t, o)
		defer stop()
		synctest.Wait() // sent and settled; the queue waits for more
		n.mu.Lock()
		defer n.mu.Unlock()
		if len(n.ctxs) != 2 {
			t.Fatalf("sent %d, want 2", len(n.ctxs))
		}
		if d, ok := n.ctxs["long"].Deadline(); !ok || !d.Equal(leased.Add(27*time.Second)) {
			t.Fatalf("long-lived alert: deadline %v (%v), want the lease's end less a tenth, %v", d, ok, leased.Add(27*time.Second))
		}
		if d, ok := n.ctxs["short"].Deadline(); !ok || !d.Equal(leased.Add(5*time.Second)) {
			t.Fatalf("alert expiring first: deadline %v (%v), want its expiry %v", d, ok, leased.Add(5*time.Second))
		}
		for id, ctx := range n.ctxs {
			if !errors.Is(ctx.Err(), context.Canceled) {
				t.Fatalf("%s: context err %v after its send, want canceled", id, ctx.Err())
			}
		}
	})
}

// poolClock is a clock the pool tests move by hand.
type poolClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *poolClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *poolClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestSendPoolLimitFollowsTheLoad: a pool starts at most poolMin
// goroutines; what comes while they are all busy waits, urgent values
// first; a window with them all busy, values waiting and sends taking the
// provider's round trip raises the limit (and the waiting values start at
// once); a quiet window brings it back to poolMin, ending the goroutines
// beyond it.
func TestSendPoolLimitFollowsTheLoad(t *testing.T) {
	var wg sync.WaitGroup
	clock := &poolClock{t: time.Unix(1e9, 0)}
	type job struct {
		name   string
		urgent bool
		hold   chan struct{} // nil: return at once
	}
	var mu sync.Mutex
	var order []string
	started := make(chan string, 100)
	far := func() (time.Duration, time.Duration, bool) { return 20 * time.Millisecond, 20 * time.Millisecond, true }
	p := newSendPool(&wg, 100, clock.now, func(j job) bool { return j.urgent }, far, func(j job) {
		mu.Lock()
		order = append(order, j.name)
		mu.Unlock()
		started <- j.name
		if j.hold != nil {
			<-j.hold
		}
	})
	stats := func() (live, busy, limit, waiting int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.live, p.busy, p.lim.n(), p.waitingLen()
	}
	hold, first := make(chan struct{}), make(chan struct{})
	for i := range poolMin {
		h := hold
		if i == 0 {
			h = first
		}
		p.run(job{name: fmt.Sprint("busy-", i), hold: h})
	}
	for range poolMin {
		<-started
	}
	p.run(job{name: "normal", hold: hold})
	p.run(job{name: "urgent", urgent: true, hold: hold})
	if live, busy, limit, waiting := stats(); live != poolMin || busy != poolMin || limit != poolMin || waiting != 2 {
		t.Fatalf("at the limit: live %d busy %d limit %d waiting %d, want %d %d %d 2", live, busy, limit, waiting, poolMin, poolMin, poolMin)
	}
	// A goroutine that finishes takes the urgent one, not the first come.
	close(first)
	if got := <-started; got != "urgent" {
		t.Fatalf("a goroutine freed ran %q, want the urgent one", got)
	}
	// A window with every goroutine busy, values waiting and every send
	// as long as the shortest: the limit grows by half, and the one
	// waiting starts at once.
	clock.add(poolWindow)
	p.run(job{name: "third", hold: hold})
	got := []string{<-started, <-started}
	slices.Sort(got)
	if want := []string{"normal", "third"}; !slices.Equal(got, want) {
		t.Fatalf("after a busy window, started %v, want %v", got, want)
	}
	if live, _, limit, waiting := stats(); limit != poolMin*3/2 || live != poolMin+2 || waiting != 0 {
		t.Fatalf("after a busy window: live %d limit %d waiting %d, want %d %d 0", live, limit, waiting, poolMin+2, poolMin*3/2)
	}
	close(hold)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, busy, _, _ := stats(); busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sends did not finish")
		}
	}
	// Quiet windows: the limit falls back to poolMin, and the next send
	// ends the idle goroutines beyond it.
	clock.add(10 * poolWindow)
	p.run(job{name: "after"})
	<-started
	if live, _, limit, _ := stats(); limit != poolMin || live > poolMin {
		t.Fatalf("after quiet windows: live %d limit %d, want ≤ %d and %d", live, limit, poolMin, poolMin)
	}
	p.close()
	wg.Wait()
	if live, busy, _, _ := stats(); live != 0 || busy != 0 {
		t.Fatalf("closed: live %d busy %d, want 0", live, busy)
	}
	if len(order) != poolMin+4 {
		t.Fatalf("ran %d values, want %d", len(order), poolMin+4)
	}
}

// TestSendPoolRunsWaitingAfterClose: values waiting when the pool closes
// are still run (their jobs are leased) by the goroutines finishing.
func TestSendPoolRunsWaitingAfterClose(t *testing.T) {
	var wg sync.WaitGroup
	clock := &poolClock{t: time.Unix(1e9, 0)}
	var ran atomic.Int32
	hold := make(chan struct{})
	p := newSendPool(&wg, 1, clock.now, nil, nil, func(block bool) {
		if block {
			<-hold
		}
		ran.Add(1)
	})
	p.run(true)
	p.run(false)
	p.run(false)
	p.close()
	close(hold)
	wg.Wait()
	if n := ran.Load(); n != 3 {
		t.Fatalf("ran %d, want 3", n)
	}
}

// TestLimiter drives a pool's limiter through the loads it must tell
// apart, sends always waiting for a goroutine: a provider 20 ms away (every
// send about as long as the shortest: the limit grows to the lane's
// concurrency), the same on a busy machine (every other window's mean
// stretched to four times its shortest: it still does), and a provider a
// few hundred µs away with sends queueing in relayd (mean ten times the
// shortest: it falls to poolMin); then nothing waiting (it follows twice
// the mean busy).
func TestLimiter(t *testing.T) {
	const ms = time.Millisecond
	l := limiter{limit: poolMin, max: 512}
	for range 10 {
		l.window(l.limit, 20*ms, 20*ms, true, true)
	}
	if l.n() != 512 {
		t.Fatalf("provider 20 ms away: limit %d after 10 windows, want 512", l.n())
	}
	l = limiter{limit: poolMin, max: 512}
	least := 512
	for i := range 100 {
		mean := 22 * ms
		if i%2 == 1 {
			mean = 80 * ms
		}
		l.window(l.limit, mean, 20*ms, true, true)
		if i >= 50 {
			least = min(least, l.n())
		}
	}
	if least < 384 {
		t.Fatalf("provider 20 ms away, machine busy: limit down to %d after 5 s, want at least 3/4 of 512", least)
	}
	l = limiter{limit: 512, max: 512}
	for range 20 {
		l.window(l.limit, 2*ms, ms/5, true, true)
	}
	if l.n() != poolMin {
		t.Fatalf("sends queueing in relayd: limit %d after 20 windows, want %d", l.n(), poolMin)
	}
	// Nothing waits: twice the mean busy, never below poolMin, and never
	// more than the limit was.
	l = limiter{limit: 512, max: 512}
	l.window(100, 20*ms, 20*ms, true, false)
	if l.n() != 200 {
		t.Fatalf("nothing waiting, 100 busy: limit %d, want 200", l.n())
	}
	l.window(150, 20*ms, 20*ms, true, false)
	if l.n() != 200 {
		t.Fatalf("nothing waiting, 150 busy: limit %d, want 200 (it grows only while sends wait)", l.n())
	}
	l.window(3, 0, 0, false, false)
	if l.n() != poolMin {
		t.Fatalf("nothing waiting, 3 busy: limit %d, want %d", l.n(), poolMin)
	}
	// Sends waited but none finished: nothing to learn, the limit holds.
	l = limiter{limit: 100, max: 512}
	l.window(100, 0, 0, false, true)
	if l.n() != 100 {
		t.Fatalf("no sends done: limit %d, want 100", l.n())
	}
}

// TestFIFO: values come out in order, a drained queue reuses its slice,
// and a full one half taken slides down instead of growing.
func TestFIFO(t *testing.T) {
	var q fifo[int]
	for i := range 8 {
		q.push(i)
	}
	buf := q.buf[:cap(q.buf)]
	for want := range 8 {
		if v, ok := q.pop(); !ok || v != want {
			t.Fatalf("pop %d, %v: want %d", v, ok, want)
		}
	}
	if _, ok := q.pop(); ok || q.len() != 0 {
		t.Fatalf("drained queue gave a value (len %d)", q.len())
	}
	q.push(8)
	if &q.buf[0] != &buf[0] {
		t.Fatal("a drained queue grew a new slice")
	}
	// Fill to capacity, take more than half, push: it slides.
	for i := 9; q.len() < cap(q.buf); i++ {
		q.push(i)
	}
	c := cap(q.buf)
	for range c/2 + 1 {
		q.pop()
	}
	first := c/2 + 1 + 8
	q.push(-1)
	if cap(q.buf) != c || q.head != 0 {
		t.Fatalf("cap %d head %d after a push into a half-taken full queue, want cap %d head 0", cap(q.buf), q.head, c)
	}
	for want := first; q.len() > 1; want++ {
		if v, _ := q.pop(); v != want {
			t.Fatalf("after sliding: pop %d, want %d", v, want)
		}
	}
	if v, _ := q.pop(); v != -1 {
		t.Fatalf("last pop %d, want -1", v)
	}
	if slices.ContainsFunc(buf, func(v int) bool { return v != 0 }) {
		t.Fatalf("taken values left in the slice: %v", buf)
	}
}

// alertNotifier records the alerts it is asked to send and answers each
// with answer (nil: success).
type alertNotifier struct {
	mu     sync.Mutex
	alerts []relay.Alert
	at     []time.Time
	answer func(a *relay.Alert) error
}

func (n *alertNotifier) Notify(_ context.Context, _ relay.Device, a *relay.Alert) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.alerts = append(n.alerts, *a)
	n.at = append(n.at, time.Now())
	if n.answer != nil {
		return n.answer(a)
	}
	return nil
}

func (n *alertNotifier) sent() []relay.Alert {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.alerts)
}

// schedulePrompt stores an actionable prompt (approve, deny) for user u's
// iPhone, expiring after ttl, and decides it with one pending job.
func schedulePrompt(t *testing.T, st *bolt.Store, id string, ttl time.Duration, actions ...string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	dev := relay.Device{Workspace: "ws", User: "u", ID: "d-ios", App: "demo", Platform: relay.PlatformIOS, Token: "tok-ios"}
	if _, err := st.RegisterDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	ev := relay.Event{ID: id, Workspace: "ws", User: "u", Type: relay.TypeIdentityVerification, Actions: actions,
		Priority: relay.PriorityHigh, OccurredAt: now, ExpiresAt: now.Add(ttl)}
	if res, err := st.AddEvents(ctx, []relay.Event{ev}, now); err != nil || res[0] != nil {
		t.Fatalf("add %s: %v %v", id, res, err)
	}
	a := &relay.Alert{EventID: id, Workspace: "ws", Type: ev.Type, Title: "Sign-in", Actions: actions, Category: "APPROVE_DENY",
		Priority: relay.PriorityHigh, ExpiresAt: ev.ExpiresAt, CollapseID: "c-" + id, ThreadID: "t"}
	j := relay.Job{Event: ev.Key(), DeviceID: dev.ID, Platform: dev.Platform, App: "demo", State: relay.StatePending, ExpiresAt: ev.ExpiresAt, UpdatedAt: now}
	if err := st.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver, Reason: "enforced"}, a, []relay.Job{j}); err != nil {
		t.Fatal(err)
	}
}

// TestWithdrawOnExpiry: a delivered actionable alert's job stays open
// (withdraw_due, shown as delivered) until the alert expires; then the
// device gets the silent expiry withdraw with the alert's collapse id, and
// the job ends delivered whatever the withdraw's outcome: sent, retried,
// or dropped by the notifier (an answered alert). The delivery is reported
// once. An alert that offers no actions, or never reached the device, gets
// no withdraw, nor does any alert without Options.WithdrawOnExpiry.
func TestWithdrawOnExpiry(t *testing.T) {
	withdraw := func(a *relay.Alert) bool { return a.Silent }
	tests := []struct {
		name    string
		actions []string
		off     bool  // WithdrawOnExpiry false
		prompt  error // the prompt's every send
		wd      []error
		sends   int // withdraw sends
	}{
		{name: "sent", actions: []string{"approve", "deny"}, sends: 1},
		{name: "retried", actions: []string{"approve", "deny"}, wd: []error{&delivery.Error{Provider: "apns", Status: 503, Outcome: delivery.Retry}}, sends: 2},
		{name: "retries back off", actions: []string{"approve", "deny"}, wd: slices.Repeat([]error{errors.New("connection reset")}, 4), sends: 5},
		{name: "dropped when answered", actions: []string{"approve", "deny"}, wd: []error{fmt.Errorf("withdrawn when answered: %w", relay.ErrExpired)}, sends: 1},
		{name: "permanent failure", actions: []string{"approve", "deny"}, wd: []error{&delivery.Error{Provider: "apns", Status: 400, Reason: "BadTopic", Outcome: delivery.Permanent}}, sends: 1},
		{name: "no actions", sends: 0},
		{name: "option off", actions: []string{"approve", "deny"}, off: true, sends: 0},
		{name: "never delivered", actions: []string{"approve", "deny"}, prompt: &delivery.Error{Provider: "apns", Status: 400, Reason: "BadTopic", Outcome: delivery.Permanent}, sends: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := bolttest.Open(t)
				wd := slices.Clone(tc.wd)
				n := &alertNotifier{answer: func(a *relay.Alert) error {
					if !withdraw(a) {
						return tc.prompt
					}
					if len(wd) == 0 {
						return nil
					}
					err := wd[0]
					wd = wd[1:]
					return err
				}}
				schedulePrompt(t, st, "e", time.Minute, tc.actions...)
				o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 2}})
				o.WithdrawOnExpiry = !tc.off
				var outcomes atomic.Int32
				o.OnOutcome = func(relay.Job, time.Duration) { outcomes.Add(1) }
				q, stop := run(t, o)
				defer stop()
				time.Sleep(30 * time.Second)
				synctest.Wait()
				j := job(t, st, "e")
				wantOpen := tc.sends > 0
				if wantOpen && (j.State != relay.StateWithdrawDue || !j.NextAt.Equal(j.ExpiresAt) || j.Attempts != 1) {
					t.Fatalf("before expiry: job %+v, want withdraw_due at the expiry after 1 attempt", j)
				}
				if got := q.Open() > 0; got != wantOpen {
					t.Errorf("before expiry: queue counts %d open jobs", q.Open())
				}
				time.Sleep(2 * time.Minute)
				synctest.Wait()
				j = job(t, st, "e")
				want := relay.StateDelivered
				if tc.prompt != nil {
					want = relay.StateFailed
				}
				if j.State != want || (tc.prompt == nil && j.Attempts != 1) || (tc.prompt == nil && j.LastError != "") {
					t.Fatalf("after expiry: job %+v, want %s after 1 attempt, no error", j, want)
				}
				if got := outcomes.Load(); got != 1 {
					t.Errorf("%d outcomes reported, want 1", got)
				}
				if q.Open() != 0 {
					t.Errorf("after expiry: queue counts %d open jobs", q.Open())
				}
				if dls, _ := st.DeadLetters(context.Background(), "", 10); len(dls) != 0 && tc.prompt == nil {
					t.Errorf("a failed withdraw made dead letters: %+v", dls)
				}
				var withdraws []relay.Alert
				for _, a := range n.sent() {
					if withdraw(&a) {
						withdraws = append(withdraws, a)
					}
				}
				if len(withdraws) != tc.sends {
					t.Fatalf("%d withdraw sends, want %d: %+v", len(withdraws), tc.sends, withdraws)
				}
				// Retries of the withdraw back off: 1 s, 2 s, 4 s, 8 s
				// (Backoff Initial 1 s, no jitter).
				var gaps []time.Duration
				var last time.Time
				for i, a := range n.sent() {
					if withdraw(&a) {
						if !last.IsZero() {
							gaps = append(gaps, n.at[i].Sub(last))
						}
						last = n.at[i]
					}
				}
				for i, g := range gaps {
					if want := time.Second << i; g != want {
						t.Errorf("withdraw retry %d after %v, want %v (gaps %v)", i+1, g, want, gaps)
					}
				}
				for _, w := range withdraws {
					if w.EventID != "e" || w.CollapseID != "c-e" || w.ThreadID != "t" || w.Priority != relay.PriorityNormal || len(w.Actions) != 0 ||
						w.Data["action"] != relay.WithdrawExpired || w.Data[relay.WithdrawReasonKey] != relay.WithdrawExpired {
						t.Errorf("withdraw %+v", w)
					}
				}
			})
		})
	}
}

// TestBackloggedWhileLeasesFill: a lane whose leases take all they ask for
// (more jobs due than send slots) is backlogged; once a lease finds fewer
// due jobs than it asked for, it is not.
func TestBackloggedWhileLeasesFill(t *testing.T) {
	st := bolttest.Open(t)
	n := &notifier{block: make(chan struct{})}
	for i := range 6 {
		schedule(t, st, fmt.Sprintf("e%d", i), relay.PriorityNormal, relay.PlatformIOS, time.Minute, time.Time{})
	}
	q, stop := run(t, opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 2}}))
	defer stop()
	if q.Backlogged("demo/web") {
		t.Fatal("an unknown lane is backlogged")
	}
	waitFor(t, func() bool { return n.count() == 2 }) // the slots are full, 4 jobs wait
	if !q.Backlogged(iosLane) {
		t.Fatal("not backlogged with 4 due jobs waiting for 2 busy slots")
	}
	close(n.block)
	waitFor(t, func() bool {
		for i := range 6 {
			if job(t, st, fmt.Sprintf("e%d", i)).State != relay.StateDelivered {
				return false
			}
		}
		return !q.Backlogged(iosLane)
	})
}

// TestOfferSendsJobsLeasedAtAccept: Reserve takes free send slots (none
// beyond the lane's concurrency, none while its breaker is open); jobs an
// accept leased into them (store.AcceptLeaser) and handed over with Offer
// are sent and settled as the lane's own leases are.
func TestOfferSendsJobsLeasedAtAccept(t *testing.T) {
	st := bolttest.Open(t)
	n := &notifier{}
	o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 2}})
	var counted atomic.Int64
	o.OnOffered = func(lane string, n int) {
		if lane == iosLane {
			counted.Add(int64(n))
		}
	}
	q, stop := run(t, o)
	defer stop()
	var got int
	waitFor(t, func() bool { got = q.Reserve(iosLane, 5); return got > 0 }) // once the lane runs
	if got != 2 || q.Reserve(iosLane, 1) != 0 {
		t.Fatalf("reserved %d of 2 slots, then more", got)
	}
	if q.Reserve("demo/web", 1) != 0 {
		t.Fatal("reserved a slot of an unknown lane")
	}

	ctx := context.Background()
	now := time.Now()
	dev := relay.Device{Workspace: "ws", User: "u", ID: "d-ios", App: "demo", Platform: relay.PlatformIOS, Token: "tok-ios"}
	if _, err := st.RegisterDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	ev := relay.Event{ID: "e1", Workspace: "ws", User: "u", Type: relay.TypeAccountShared, Priority: relay.PriorityHigh, OccurredAt: now, ExpiresAt: now.Add(time.Minute)}
	d := &store.Decided{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: "enabled"},
		Alert: &relay.Alert{EventID: "e1", Workspace: "ws", Type: ev.Type, Priority: ev.Priority, ExpiresAt: ev.ExpiresAt},
		Jobs:  []relay.Job{{Event: ev.Key(), DeviceID: dev.ID, Platform: dev.Platform, App: "demo", State: relay.StatePending, ExpiresAt: ev.ExpiresAt, UpdatedAt: now}}}
	owner, ttl := q.LeaseTerms()
	until := now.Add(ttl)
	offered := 0
	res, err := st.AddDecidedLeasing(ctx, []relay.Event{ev}, []*store.Decided{d}, now, store.AcceptLease{Owner: owner, Until: until, Want: [][]bool{{true}},
		Ready: func(ls []store.Leased) { offered += len(ls); q.Offer(iosLane, ls) }})
	if err != nil || res[0] != nil || offered != 1 || counted.Load() != 1 {
		t.Fatalf("accept: %v %v, %d offered, %d counted", res, err, offered, counted.Load())
	}
	q.Unreserve(iosLane, got-offered)
	waitFor(t, func() bool { return job(t, st, "e1").State == relay.StateDelivered })
	if n.count() != 1 {
		t.Fatalf("%d sends, want 1", n.count())
	}
	// The slots came back: the send's, and the one given back.
	waitFor(t, func() bool {
		if r := q.Reserve(iosLane, 2); r > 0 {
			q.Unreserve(iosLane, r)
			return r == 2
		}
		return false
	})
}

// slowLease is a schedule whose first Lease takes longer than a lease
// lasts before it returns what the store leased (as a cluster store can
// while it elects its leaders).
type slowLease struct {
	*bolt.Store
	delay time.Duration
	// stamp: the leases say they began when Lease returned (Until), as a
	// backend that stamps each lease as it takes it does.
	stamp  bool
	once   sync.Once
	leased atomic.Int32 // jobs leased
}

func (s *slowLease) Lease(ctx context.Context, req store.LeaseRequest) ([]store.Leased, time.Time, error) {
	jobs, next, err := s.Store.Lease(ctx, req)
	s.leased.Add(int32(len(jobs)))
	if len(jobs) > 0 {
		s.once.Do(func() {
			time.Sleep(s.delay)
			if s.stamp {
				for i := range jobs {
					jobs[i].Until = time.Now().Add(req.TTL)
				}
			}
		})
	}
	return jobs, next, err
}

// deadlineNotifier fails a send whose context has ended, as a provider
// client does, and counts the sends it was given.
type deadlineNotifier struct {
	mu          sync.Mutex
	sends, dead int
}

func (n *deadlineNotifier) Notify(ctx context.Context, _ relay.Device, _ *relay.Alert) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sends++
	if err := ctx.Err(); err != nil {
		n.dead++
		return &delivery.Error{Provider: "apns", Outcome: delivery.Retry, Err: fmt.Errorf("push not sent: %w", err)}
	}
	return nil
}

// TestLeaseThatArrivesLateIsHandedBack: jobs whose lease is (all but)
// over when Lease returns them are not sent with a dead context, which
// the provider's client fails and the lane's breaker counted as an
// outage (20 in a row opened it); they go back to the schedule, due at
// once and with no attempt counted, and the next lease sends them.
func TestLeaseThatArrivesLateIsHandedBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openWithJobs(t, 25)
		n := &deadlineNotifier{}
		o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 32}})
		o.Schedule = &slowLease{Store: st, delay: 28 * time.Second}
		o.LeaseTTL = 30 * time.Second
		q, stop := run(t, o)
		defer stop()
		time.Sleep(29 * time.Second) // the slow lease has returned
		synctest.Wait()
		if br := q.OpenBreakers(); len(br) != 0 {
			t.Errorf("breakers open: %v", br)
		}
		time.Sleep(time.Minute) // past any lease; the schedule's polls
		synctest.Wait()
		n.mu.Lock()
		sends, dead := n.sends, n.dead
		n.mu.Unlock()
		if dead != 0 {
			t.Errorf("%d sends had a dead context", dead)
		}
		for i := range 25 {
			if j := job(t, st, fmt.Sprintf("e%02d", i)); j.State != relay.StateDelivered || j.Attempts != 1 {
				t.Errorf("job %s: %s after %d attempts, want delivered after 1", j.Event.ID, j.State, j.Attempts)
			}
		}
		if sends != 25 {
			t.Errorf("%d sends for 25 jobs", sends)
		}
	})
}

// TestLateStampedLeaseIsSent: leases that say they end a TTL after Lease
// returned (a cluster store stamps each lease as it takes it) are sent at
// once, however long Lease took, with sends bounded by that end.
func TestLateStampedLeaseIsSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openWithJobs(t, 5)
		n := &ctxNotifier{ctxs: map[string]context.Context{}}
		o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 32}})
		sl := &slowLease{Store: st, delay: 28 * time.Second, stamp: true}
		o.Schedule = sl
		o.LeaseTTL = 30 * time.Second
		start := time.Now()
		_, stop := run(t, o)
		defer stop()
		time.Sleep(29 * time.Second) // the slow lease has returned, and its sends
		synctest.Wait()
		n.mu.Lock()
		defer n.mu.Unlock()
		if len(n.ctxs) != 5 || sl.leased.Load() != 5 {
			t.Fatalf("sent %d of 5, leased %d times (want once each: sent on the first lease)", len(n.ctxs), sl.leased.Load())
		}
		want := start.Add(28*time.Second + 27*time.Second) // the stamped end less a tenth
		for id, c := range n.ctxs {
			if d, _ := c.Deadline(); !d.Equal(want) {
				t.Errorf("%s: send deadline %v, want %v", id, d.Sub(start), want.Sub(start))
			}
		}
		for i := range 5 {
			if j := job(t, st, fmt.Sprintf("e%02d", i)); j.State != relay.StateDelivered || j.Attempts != 1 {
				t.Errorf("job %s: %s after %d attempts, want delivered after 1", j.Event.ID, j.State, j.Attempts)
			}
		}
	})
}

// TestLeaseCutOfAShortSendIsNoOutage: sends that began with little of
// their lease left (the jobs waited ~25 s of a 30 s lease, as in an
// overloaded cluster) and were cut by its end say nothing about the
// provider: they are retried, but do not count toward the lane's outage
// breaker (20 in a row opened it, with APNs answering fine).
func TestLeaseCutOfAShortSendIsNoOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openWithJobs(t, 25)
		n := &notifier{block: make(chan struct{})} // no answer before the context ends
		o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 32}})
		o.Schedule = &slowLease{Store: st, delay: 25 * time.Second}
		o.LeaseTTL = 30 * time.Second
		q, stop := run(t, o)
		defer stop()
		time.Sleep(28 * time.Second) // the sends began at 25 s and were cut at 27 s
		synctest.Wait()
		if c := n.count(); c < 25 {
			t.Fatalf("%d sends, want 25 and their retries", c)
		}
		if br := q.OpenBreakers(); len(br) != 0 {
			t.Errorf("breakers open: %v", br)
		}
		for i := range 25 {
			if j := job(t, st, fmt.Sprintf("e%02d", i)); j.State != relay.StatePending || j.Attempts < 1 {
				t.Errorf("job %s: %s after %d attempts, want pending (retried) after 1 or more", j.Event.ID, j.State, j.Attempts)
			}
		}
		close(n.block)
	})
}

// TestHungProviderOpensTheBreaker: sends that had their whole lease and
// got no answer are an outage: 20 in a row open the lane's breaker.
func TestHungProviderOpensTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openWithJobs(t, 25)
		n := &notifier{block: make(chan struct{})}
		o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 32}})
		o.LeaseTTL = 30 * time.Second
		o.BreakerCooldown = time.Hour
		q, stop := run(t, o)
		defer stop()
		time.Sleep(28 * time.Second) // every send was cut at 27 s
		synctest.Wait()
		if br := q.OpenBreakers(); len(br) != 1 {
			t.Errorf("breakers open: %v, want the iOS lane's", br)
		}
		close(n.block)
	})
}

// TestSendNotStartedIsHandedBack: a send whose time ran out before the
// provider got anything (the answer check before it took the whole lease,
// say, in a store under load) is not an attempt and not an outage: the
// job goes back to the schedule, due at once, and the lane's breaker stays
// closed.
func TestSendNotStartedIsHandedBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openWithJobs(t, 25)
		var mu sync.Mutex
		slow := true
		n := notifierFunc(func(ctx context.Context, _ relay.Device, _ *relay.Alert) error {
			mu.Lock()
			s := slow
			mu.Unlock()
			if s {
				<-ctx.Done() // the work before the request takes the whole lease
				return &delivery.Error{Provider: "apns", Outcome: delivery.Retry, Err: fmt.Errorf("push %w: %w", delivery.ErrNotSent, ctx.Err())}
			}
			return nil
		})
		o := opts(st, map[string]Lane{iosLane: {Notifier: n, Concurrency: 32}})
		o.LeaseTTL = 30 * time.Second
		q, stop := run(t, o)
		defer stop()
		time.Sleep(28 * time.Second) // every send ran out of time at 27 s
		synctest.Wait()
		if br := q.OpenBreakers(); len(br) != 0 {
			t.Errorf("breakers open: %v", br)
		}
		mu.Lock()
		slow = false
		mu.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		for i := range 25 {
			if j := job(t, st, fmt.Sprintf("e%02d", i)); j.State != relay.StateDelivered || j.Attempts != 1 {
				t.Errorf("job %s: %s after %d attempts, want delivered after 1 (the sends not started are not attempts)", j.Event.ID, j.State, j.Attempts)
			}
		}
	})
}

type notifierFunc func(ctx context.Context, d relay.Device, a *relay.Alert) error

func (f notifierFunc) Notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	return f(ctx, d, a)
}
