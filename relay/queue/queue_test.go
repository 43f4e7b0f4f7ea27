package queue

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/delivery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore records job updates and device removals.
type memStore struct {
	mu      sync.Mutex
	jobs    map[relay.JobKey]relay.Job
	removed []string
}

func (s *memStore) UpdateJobs(_ context.Context, jobs []relay.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs == nil {
		s.jobs = map[relay.JobKey]relay.Job{}
	}
	for _, j := range jobs {
		s.jobs[j.Key()] = j
	}
	return nil
}

func (s *memStore) RemoveDeviceToken(_ context.Context, _, _, id, _ string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = append(s.removed, id)
	return true, nil
}

func (s *memStore) Device(_ context.Context, ws, user, id string) (relay.Device, error) {
	return relay.Device{}, relay.ErrNotFound
}

func (s *memStore) job(id string) relay.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, j := range s.jobs {
		if k.Event.ID == id {
			return j
		}
	}
	return relay.Job{}
}

// notifier answers each send with the next scripted error.
type notifier struct {
	mu    sync.Mutex
	errs  []error
	sends []time.Time
}

func (n *notifier) Notify(ctx context.Context, _ relay.Device, a *relay.Alert) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if !now.Before(a.ExpiresAt) {
		panic("send after expiry")
	}
	n.sends = append(n.sends, now)
	if len(n.errs) == 0 {
		return nil
	}
	err := n.errs[0]
	n.errs = n.errs[1:]
	return err
}

func (n *notifier) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.sends)
}

func item(id string, now time.Time, ttl time.Duration) *Item {
	return &Item{
		Job:    relay.Job{Event: relay.EventKey{Workspace: "ws", ID: id}, DeviceID: "d1", Platform: relay.PlatformIOS, State: relay.StatePending, ExpiresAt: now.Add(ttl)},
		Alert:  &relay.Alert{EventID: id, ExpiresAt: now.Add(ttl)},
		Device: relay.Device{Workspace: "ws", User: "u", ID: "d1", App: "demo", Platform: relay.PlatformIOS, Token: "t"},
	}
}

// run starts a queue inside the synctest bubble and returns a stop func.
func run(t *testing.T, st *memStore, n *notifier, b Backoff) (*Queue, func()) {
	q := New(Options{Store: st, Lanes: map[string]Lane{LaneKey("demo", relay.PlatformIOS): {Notifier: n, Concurrency: 2}}, Backoff: b})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	return q, func() { cancel(); <-done }
}

func TestQueueRetriesThenDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &memStore{}
		n := &notifier{errs: []error{
			&delivery.Error{Provider: "apns", Status: 503, Outcome: delivery.Retry},
			&delivery.Error{Provider: "apns", Status: 429, Outcome: delivery.Retry, RetryAfter: 10 * time.Second},
		}}
		q, stop := run(t, st, n, Backoff{Initial: time.Second, Max: time.Minute})
		defer stop()
		start := time.Now()
		q.Add(item("e1", start, time.Minute))
		time.Sleep(time.Minute) // fake time inside the bubble
		synctest.Wait()
		j := st.job("e1")
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
		if q.Len() != 0 {
			t.Errorf("queue still holds %d jobs", q.Len())
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
				st := &memStore{}
				var errs []error
				if tc.err != nil {
					for range 50 {
						errs = append(errs, tc.err)
					}
				}
				n := &notifier{errs: errs}
				q, stop := run(t, st, n, Backoff{Initial: time.Second, Max: time.Minute})
				defer stop()
				q.Add(item("e", time.Now(), tc.ttl))
				time.Sleep(2 * time.Hour)
				synctest.Wait()
				j := st.job("e")
				if j.State != tc.want {
					t.Fatalf("state = %s (last error %q), want %s", j.State, j.LastError, tc.want)
				}
				if got := len(st.removed) > 0; got != tc.drops {
					t.Errorf("token removed = %v, want %v", got, tc.drops)
				}
				if tc.err != nil && tc.want != relay.StateDelivered && j.LastError == "" {
					t.Errorf("last_error empty for %s", tc.want)
				}
			})
		})
	}
}

func TestQueueDeferredWaitsUntilDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &memStore{}
		n := &notifier{}
		q, stop := run(t, st, n, Backoff{Initial: time.Second, Max: time.Minute})
		defer stop()
		now := time.Now()
		it := item("e", now, time.Hour)
		it.Job.State = relay.StateDeferred
		it.Job.NextAt = now.Add(10 * time.Minute)
		q.Add(it)
		time.Sleep(9 * time.Minute)
		synctest.Wait()
		if n.count() != 0 {
			t.Fatalf("deferred job sent early")
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if n.count() != 1 || st.job("e").State != relay.StateDelivered {
			t.Fatalf("deferred job not delivered when due: sends=%d state=%s", n.count(), st.job("e").State)
		}
		if d := n.sends[0].Sub(now); d != 10*time.Minute {
			t.Errorf("sent after %v, want 10m", d)
		}
	})
}

func TestQueueShutdownLeavesUnsentJobsOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &memStore{}
		n := &notifier{}
		q, stop := run(t, st, n, Backoff{Initial: time.Second, Max: time.Minute})
		now := time.Now()
		it := item("later", now, time.Hour)
		it.Job.NextAt = now.Add(30 * time.Minute)
		q.Add(it)
		synctest.Wait()
		stop()
		if n.count() != 0 {
			t.Fatalf("job due later was sent before shutdown")
		}
		if j := st.job("later"); j.State != "" {
			t.Fatalf("unsent job recorded as %s; it must stay open in the store", j.State)
		}
	})
}
