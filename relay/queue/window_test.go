package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/store"
)

// dueStore is an in-memory store with a due index and dead letters, for
// tests inside synctest bubbles (no file I/O).
type dueStore struct {
	mu      sync.Mutex
	jobs    map[relay.JobKey]relay.Job
	alerts  map[relay.EventKey]*relay.Alert
	users   map[relay.EventKey]string
	devices map[string]relay.Device // ws/user/id
	dead    []store.DeadLetter
	updates int
}

func newDueStore() *dueStore {
	return &dueStore{jobs: map[relay.JobKey]relay.Job{}, alerts: map[relay.EventKey]*relay.Alert{},
		users: map[relay.EventKey]string{}, devices: map[string]relay.Device{}}
}

var (
	_ store.DueIndex    = (*dueStore)(nil)
	_ store.DeadLetters = (*dueStore)(nil)
)

func (s *dueStore) putDevice(d relay.Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices[d.Workspace+"/"+d.User+"/"+d.ID] = d
}

// decide stores an event's alert and open jobs, as pipeline.Decide does.
func (s *dueStore) decide(a *relay.Alert, user string, jobs ...relay.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		s.jobs[j.Key()] = j
		s.alerts[j.Event] = a
		s.users[j.Event] = user
	}
}

func (s *dueStore) UpdateJobs(_ context.Context, jobs []relay.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		if _, ok := s.jobs[j.Key()]; ok {
			s.jobs[j.Key()] = j
			s.updates++
		}
	}
	return nil
}

func (s *dueStore) RemoveDeviceToken(_ context.Context, ws, user, id, token string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := ws + "/" + user + "/" + id
	if d, ok := s.devices[k]; ok && d.Token == token {
		delete(s.devices, k)
		return true, nil
	}
	return false, nil
}

func (s *dueStore) Device(_ context.Context, ws, user, id string) (relay.Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[ws+"/"+user+"/"+id]
	if !ok {
		return relay.Device{}, relay.ErrNotFound
	}
	return d, nil
}

func (s *dueStore) DueJobs(_ context.Context, after store.DueCursor, limit int) ([]store.DueJob, store.DueCursor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var open []relay.Job
	for _, j := range s.jobs {
		if !j.State.Final() && store.CursorOf(&j).Compare(after) > 0 {
			open = append(open, j)
		}
	}
	slices.SortFunc(open, func(a, b relay.Job) int { return store.CursorOf(&a).Compare(store.CursorOf(&b)) })
	var out []store.DueJob
	next := after
	for _, j := range open[:min(limit, len(open))] {
		out = append(out, store.DueJob{Job: j, User: s.users[j.Event], Alert: s.alerts[j.Event]})
		next = store.CursorOf(&j)
	}
	return out, next, nil
}

func (s *dueStore) OpenJobCount(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, j := range s.jobs {
		if !j.State.Final() {
			n++
		}
	}
	return n, nil
}

func (s *dueStore) FailJob(_ context.Context, j relay.Job, reason string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[j.Key()] = j
	id := strconv.Itoa(len(s.dead) + 1)
	s.dead = append(s.dead, store.DeadLetter{ID: id, Event: j.Event, DeviceID: j.DeviceID, Reason: reason, Attempts: j.Attempts, FailedAt: j.UpdatedAt, ExpiresAt: j.ExpiresAt})
	return id, nil
}

func (s *dueStore) DeadLetters(_ context.Context, after string, limit int) ([]store.DeadLetter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.DeadLetter
	for i := len(s.dead) - 1; i >= 0 && len(out) < limit; i-- {
		if n, _ := strconv.Atoi(after); after != "" && i+1 >= n {
			continue
		}
		out = append(out, s.dead[i])
	}
	return out, nil
}

func (s *dueStore) ReplayDeadLetter(_ context.Context, id string, now time.Time) (store.DueJob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := strconv.Atoi(id)
	if n < 1 || n > len(s.dead) {
		return store.DueJob{}, relay.ErrNotFound
	}
	dl := &s.dead[n-1]
	if !dl.ReplayedAt.IsZero() {
		return store.DueJob{}, store.ErrReplayed
	}
	if !now.Before(dl.ExpiresAt) {
		return store.DueJob{}, relay.ErrExpired
	}
	dl.ReplayedAt = now
	k := relay.JobKey{Event: dl.Event, DeviceID: dl.DeviceID}
	j := s.jobs[k]
	j.State, j.Attempts, j.LastError, j.NextAt, j.UpdatedAt = relay.StatePending, 0, "", time.Time{}, now
	s.jobs[k] = j
	return store.DueJob{Job: j, User: s.users[j.Event], Alert: s.alerts[j.Event]}, nil
}

func (s *dueStore) state(k relay.JobKey) relay.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[k]
}

func (s *dueStore) count(st relay.DeliveryState) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, j := range s.jobs {
		if j.State == st {
			n++
		}
	}
	return n
}

// script is a notifier whose answer is chosen by a function; it records
// sends in order.
type script struct {
	mu     sync.Mutex
	answer func(d relay.Device, a *relay.Alert) error
	sends  []string // event ids
	tokens []string
	at     []time.Time
}

func (n *script) Notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	now := time.Now()
	if !now.Before(a.ExpiresAt) {
		panic("send after expiry")
	}
	if dl, ok := ctx.Deadline(); !ok || dl.After(a.ExpiresAt) {
		panic("send deadline after expiry")
	}
	n.mu.Lock()
	n.sends = append(n.sends, a.EventID)
	n.tokens = append(n.tokens, d.Token)
	n.at = append(n.at, now)
	f := n.answer
	n.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(d, a)
}

func (n *script) set(f func(d relay.Device, a *relay.Alert) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.answer = f
}

func (n *script) sent() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.sends)
}

var device = relay.Device{Workspace: "ws", User: "u", ID: "d1", App: "demo", Platform: relay.PlatformIOS, Token: "tok1"}

// seed stores n open jobs for device, due one millisecond apart in reverse
// id order, and returns their keys in due order.
func seed(st *dueStore, n int, now time.Time, ttl time.Duration) []relay.JobKey {
	st.putDevice(device)
	keys := make([]relay.JobKey, n)
	for i := range n {
		id := fmt.Sprintf("e%05d", i)
		j := relay.Job{Event: relay.EventKey{Workspace: "ws", ID: id}, DeviceID: device.ID, Platform: relay.PlatformIOS,
			State: relay.StatePending, ExpiresAt: now.Add(ttl), UpdatedAt: now.Add(-time.Duration(i) * time.Millisecond)}
		st.decide(&relay.Alert{EventID: id, ExpiresAt: now.Add(ttl)}, "u", j)
		keys[n-1-i] = j.Key()
	}
	return keys
}

func startQueue(t *testing.T, opts Options) (*Queue, func()) {
	t.Helper()
	q := New(opts)
	if _, err := q.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	return q, func() { cancel(); <-done }
}

func lanes(n delivery.Notifier, conc int) map[string]Lane {
	return map[string]Lane{LaneKey("demo", relay.PlatformIOS): {Notifier: n, Concurrency: conc}}
}

// TestRecoverPagesInDueOrder: 1,000 open jobs left by a previous run are
// sent in due order while at most MaxInMemory wait in memory.
func TestRecoverPagesInDueOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newDueStore()
		keys := seed(st, 1000, time.Now(), time.Hour)
		n := &script{}
		peak := 0
		var mu sync.Mutex
		var q *Queue
		n.set(func(relay.Device, *relay.Alert) error {
			mu.Lock()
			peak = max(peak, q.InMemory())
			mu.Unlock()
			return nil
		})
		q = New(Options{Store: st, Lanes: lanes(n, 1), MaxInMemory: 100, Backoff: Backoff{Initial: time.Second}})
		open, err := q.Recover(t.Context())
		if err != nil || open != 1000 {
			t.Fatalf("Recover = %d, %v", open, err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { q.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		time.Sleep(time.Minute)
		synctest.Wait()
		got := n.sent()
		if len(got) != 1000 {
			t.Fatalf("%d sends, want 1000", len(got))
		}
		for i, k := range keys {
			if got[i] != k.Event.ID {
				t.Fatalf("send %d is %s, want %s (due order)", i, got[i], k.Event.ID)
			}
		}
		if peak > 100+1 {
			t.Errorf("%d jobs in memory at peak, want <= 101", peak)
		}
		if st.count(relay.StateDelivered) != 1000 || q.Open() != 0 {
			t.Errorf("delivered %d, open %d", st.count(relay.StateDelivered), q.Open())
		}
	})
}

// TestOutageKeepsMemoryBounded: with the provider down, 2,000 jobs added
// while running retry from disk with at most MaxInMemory in memory, and
// all are delivered once it comes back.
func TestOutageKeepsMemoryBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newDueStore()
		st.putDevice(device)
		n := &script{}
		down := &delivery.Error{Provider: "apns", Status: 503, Reason: "ServiceUnavailable", Outcome: delivery.Retry}
		n.set(func(relay.Device, *relay.Alert) error { return down })
		q, stop := startQueue(t, Options{Store: st, Lanes: lanes(n, 8), MaxInMemory: 200,
			Backoff: Backoff{Initial: time.Second, Max: 30 * time.Second, Jitter: 1}})
		defer stop()
		now := time.Now()
		peak := 0
		for i := range 2000 {
			id := fmt.Sprintf("e%05d", i)
			a := &relay.Alert{EventID: id, ExpiresAt: now.Add(time.Hour)}
			j := relay.Job{Event: relay.EventKey{Workspace: "ws", ID: id}, DeviceID: device.ID, Platform: relay.PlatformIOS,
				State: relay.StatePending, ExpiresAt: a.ExpiresAt, UpdatedAt: time.Now()}
			st.decide(a, "u", j)
			if err := q.Add(&Item{Job: j, Alert: a, Device: device}); err != nil {
				t.Fatal(err)
			}
			if i%10 == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			peak = max(peak, q.InMemory())
		}
		for range 60 {
			time.Sleep(time.Second)
			synctest.Wait()
			peak = max(peak, q.InMemory())
		}
		if peak > 200+8 {
			t.Errorf("%d jobs in memory at peak during the outage, want <= 208", peak)
		}
		if q.Open() != 2000 {
			t.Fatalf("open = %d, want 2000", q.Open())
		}
		// The outage opened the lane's breaker: the backlog waits without a
		// retry storm (threshold + sends in flight + a probe every cool-down).
		if got := len(n.sent()); got > DefaultOutageThreshold+8+10 {
			t.Errorf("%d sends during a 60s outage, want the breaker to stop the retry storm", got)
		}
		if s := q.Stats()[0]; s.Breaker != "open" || !strings.Contains(s.BreakerReason, "provider unavailable") {
			t.Errorf("stats %+v, want breaker open for the outage", s)
		}
		n.set(nil)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := st.count(relay.StateDelivered); got != 2000 {
			t.Fatalf("%d delivered after the outage, want 2000", got)
		}
		seen := map[string]bool{}
		for _, id := range n.sent() {
			seen[id] = true
		}
		if len(seen) != 2000 {
			t.Fatalf("%d distinct events sent", len(seen))
		}
	})
}

// TestBreakerOpensParksAndCloses: consecutive InvalidProviderToken answers
// open the lane's breaker after the threshold; jobs then wait without
// spending attempts, a probe goes out after the cool-down, and once the
// configuration is fixed everything is delivered.
func TestBreakerOpensParksAndCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newDueStore()
		keys := seed(st, 50, time.Now(), time.Hour)
		n := &script{}
		bad := &delivery.Error{Provider: "apns", Status: 403, Reason: "InvalidProviderToken", Outcome: delivery.ConfigError}
		n.set(func(relay.Device, *relay.Alert) error { return bad })
		var mu sync.Mutex
		var events []string
		q, stop := startQueue(t, Options{Store: st, Lanes: lanes(n, 1), BreakerThreshold: 3,
			BreakerCooldown: 10 * time.Second, BreakerMaxCooldown: 40 * time.Second,
			Backoff: Backoff{Initial: time.Second, Max: time.Second},
			OnBreaker: func(lane string, open bool, reason string) {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, fmt.Sprintf("%s open=%v %s", lane, open, reason))
			}})
		defer stop()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := len(n.sent()); got != 3 {
			t.Fatalf("%d sends before the breaker opened, want 3", got)
		}
		s := q.Stats()[0]
		if s.Breaker != "open" || !strings.Contains(s.BreakerReason, "InvalidProviderToken") {
			t.Fatalf("stats %+v, want breaker open", s)
		}
		// Probes at 10s, 30s and 70s: the cool-down doubles (10s, 20s,
		// 40s) and stays at its 40s cap.
		time.Sleep(100 * time.Second)
		synctest.Wait()
		if got := len(n.sent()); got != 3+3 {
			t.Fatalf("%d sends after 105s with the breaker open, want 3 + 3 probes", got)
		}
		for _, k := range keys {
			if j := st.state(k); j.State != relay.StatePending || j.Attempts > 5 {
				t.Fatalf("job %+v: want pending, few attempts", j)
			}
		}
		n.set(nil)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := st.count(relay.StateDelivered); got != 50 {
			t.Fatalf("%d delivered after the fix, want 50", got)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []string{"demo/ios open=true apns: InvalidProviderToken", "demo/ios open=true apns: InvalidProviderToken",
			"demo/ios open=true apns: InvalidProviderToken", "demo/ios open=true apns: InvalidProviderToken", "demo/ios open=false "}
		if !slices.Equal(events, want) {
			t.Fatalf("breaker events %q, want %q", events, want)
		}
	})
}

// TestTooManyRequestsThrottlesToken: after APNs answers 429 for a token,
// the token's other jobs wait too, without spending attempts.
func TestTooManyRequestsThrottlesToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newDueStore()
		other := relay.Device{Workspace: "ws", User: "u", ID: "d2", App: "demo", Platform: relay.PlatformIOS, Token: "tok2"}
		st.putDevice(device)
		st.putDevice(other)
		n := &script{}
		first := true
		n.set(func(d relay.Device, a *relay.Alert) error {
			if d.Token == device.Token && first {
				first = false
				return &delivery.Error{Provider: "apns", Status: 429, Reason: "TooManyRequests", Outcome: delivery.Retry}
			}
			return nil
		})
		q, stop := startQueue(t, Options{Store: st, Lanes: lanes(n, 1), Backoff: Backoff{Initial: 10 * time.Second}})
		defer stop()
		start := time.Now()
		add := func(id string, d relay.Device) {
			a := &relay.Alert{EventID: id, ExpiresAt: start.Add(time.Hour)}
			j := relay.Job{Event: relay.EventKey{Workspace: "ws", ID: id}, DeviceID: d.ID, Platform: d.Platform,
				State: relay.StatePending, ExpiresAt: a.ExpiresAt, UpdatedAt: time.Now()}
			st.decide(a, "u", j)
			q.Add(&Item{Job: j, Alert: a, Device: d})
		}
		add("a", device)
		synctest.Wait()
		add("b", device) // same token: waits
		add("c", other)  // other token: goes at once
		synctest.Wait()
		if got := n.sent(); !slices.Equal(got, []string{"a", "c"}) {
			t.Fatalf("sends %v, want [a c] while the token is throttled", got)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if j := st.state(relay.JobKey{Event: relay.EventKey{Workspace: "ws", ID: "b"}, DeviceID: "d1"}); j.State != relay.StateDelivered || j.Attempts != 1 {
			t.Fatalf("b = %+v, want delivered on its first attempt", j)
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		for i, id := range n.sends {
			if id == "b" && n.at[i].Sub(start) < 10*time.Second {
				t.Fatalf("b sent %v after a's 429, want >= 10s", n.at[i].Sub(start))
			}
		}
	})
}

// TestDeadLetterAndReplay: a permanent failure becomes a dead letter,
// listed and replayed through the handlers.
func TestDeadLetterAndReplay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newDueStore()
		keys := seed(st, 1, time.Now(), time.Hour)
		n := &script{}
		n.set(func(relay.Device, *relay.Alert) error {
			return &delivery.Error{Provider: "apns", Status: 413, Reason: "PayloadTooLarge", Outcome: delivery.Permanent}
		})
		q, stop := startQueue(t, Options{Store: st, Lanes: lanes(n, 1)})
		defer stop()
		synctest.Wait()
		if j := st.state(keys[0]); j.State != relay.StateFailed {
			t.Fatalf("job %+v, want failed", j)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /v1/deadletters", q.DeadLettersHandler())
		mux.Handle("POST /v1/deadletters/{id}/replay", q.ReplayHandler())
		do := func(method, path string) (int, string) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
			return rec.Code, rec.Body.String()
		}
		code, body := do("GET", "/v1/deadletters?limit=10")
		var list DeadLetterList
		if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.DeadLetters) != 1 || !strings.Contains(list.DeadLetters[0].Reason, "PayloadTooLarge") {
			t.Fatalf("list: %d %s", code, body)
		}
		if code, body := do("GET", "/v1/deadletters?limit=0"); code != 400 || !strings.Contains(body, "limit") {
			t.Fatalf("bad limit: %d %s", code, body)
		}
		n.set(nil)
		if code, body := do("POST", "/v1/deadletters/1/replay"); code != 200 || !strings.Contains(body, `"state":"pending"`) {
			t.Fatalf("replay: %d %s", code, body)
		}
		synctest.Wait()
		if j := st.state(keys[0]); j.State != relay.StateDelivered || j.Attempts != 1 {
			t.Fatalf("replayed job %+v, want delivered on a fresh attempt", j)
		}
		if code, _ := do("POST", "/v1/deadletters/1/replay"); code != 409 {
			t.Fatalf("second replay: %d, want 409", code)
		}
		if code, _ := do("POST", "/v1/deadletters/7/replay"); code != 404 {
			t.Fatalf("unknown replay: %d, want 404", code)
		}
	})
}

// TestDropTokenKeepsReRegisteredDevice: the provider says the token is
// dead, but the device re-registered with a new token meanwhile: the
// device stays and the job goes to the new token.
func TestDropTokenKeepsReRegisteredDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newDueStore()
		keys := seed(st, 1, time.Now(), time.Hour)
		n := &script{}
		n.set(func(d relay.Device, _ *relay.Alert) error {
			if d.Token == "tok1" {
				// The phone re-registers while the old token's send is in flight.
				nd := device
				nd.Token = "tok-new"
				st.putDevice(nd)
				return &delivery.Error{Provider: "apns", Status: 410, Reason: "Unregistered", Outcome: delivery.DropToken}
			}
			return nil
		})
		_, stop := startQueue(t, Options{Store: st, Lanes: lanes(n, 1)})
		defer stop()
		synctest.Wait()
		if j := st.state(keys[0]); j.State != relay.StateDelivered {
			t.Fatalf("job %+v, want delivered to the new token", j)
		}
		if d, err := st.Device(t.Context(), "ws", "u", "d1"); err != nil || d.Token != "tok-new" {
			t.Fatalf("device %+v %v, want kept with the new token", d, err)
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if !slices.Equal(n.tokens, []string{"tok1", "tok-new"}) {
			t.Fatalf("tokens %v", n.tokens)
		}
	})
}

// TestAdmitRefusesWhenFull: once MaxOpenJobs are open, Admit fails with a
// clear reason.
func TestAdmitRefusesWhenFull(t *testing.T) {
	st := newDueStore()
	seed(st, 3, time.Now(), time.Hour)
	q := New(Options{Store: st, Lanes: lanes(&script{}, 1), MaxOpenJobs: 3})
	if err := q.Admit(1); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := q.Admit(1)
	if err == nil || !strings.Contains(err.Error(), "queue full: 3 open jobs ≥ limit 3") {
		t.Fatalf("Admit = %v", err)
	}
}
