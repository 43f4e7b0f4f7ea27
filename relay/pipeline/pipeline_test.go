package pipeline

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/queue"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// captureQueue records what the pipeline scheduled and refuses
// normal-priority events when full is set.
type captureQueue struct {
	mu        sync.Mutex
	scheduled map[string]int // lane → jobs
	full      bool
}

func (q *captureQueue) Scheduled(lane string, _ relay.Priority, n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.scheduled == nil {
		q.scheduled = map[string]int{}
	}
	q.scheduled[lane] += n
}

func (q *captureQueue) Admit(p relay.Priority) error {
	if q.full && p != relay.PriorityHigh {
		return errors.New("queue full")
	}
	return nil
}

func (q *captureQueue) jobs() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, v := range q.scheduled {
		n += v
	}
	return n
}

func testConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg, diags := config.Parse([]byte(`
app "demo" {
  fcm {
    project_id = "p"
    credentials_file = "sa.json"
  }
}
notification "identity_verification" { default = "enforced" }
`), filepath.Join(t.TempDir(), "config.hcl"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}

func newPipeline(t *testing.T) (*Pipeline, *bolt.Store, *captureQueue) {
	t.Helper()
	st := bolttest.Open(t)
	q := &captureQueue{}
	return New(Options{Config: testConfig(t), Store: st, Queue: q, DecideOnAccept: true}), st, q
}

func TestAcceptFillsDefaultsAndDecides(t *testing.T) {
	p, st, q := newPipeline(t)
	ctx := t.Context()
	if _, err := st.RegisterDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "pixel", Platform: relay.PlatformAndroid, Token: "tok", App: "demo"}); err != nil {
		t.Fatal(err)
	}
	// An iPhone of an app with no APNs block gets no job.
	if _, err := st.RegisterDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "iphone", Platform: relay.PlatformIOS, Token: "t2", App: "demo"}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	errs, err := p.Accept(ctx, []relay.Event{
		{ID: "1", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification},
		{ID: "2", Workspace: "w", User: "u", Type: "pizza"},
		{ID: "1", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification},
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[1] == nil || !errors.Is(errs[2], relay.ErrDuplicate) {
		t.Fatalf("errs = %v", errs)
	}
	// No plugin: decided on accept, in the same store write.
	rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	ev := rec.Event
	if ev.Priority != relay.PriorityHigh || len(ev.Actions) != 2 {
		t.Errorf("defaults not filled: %+v", ev)
	}
	if ttl := ev.ExpiresAt.Sub(before); ttl < 2*time.Minute-time.Second || ttl > 2*time.Minute+time.Second {
		t.Errorf("expires_at %v after accept, want the type's 2m TTL", ttl)
	}
	if err := p.Decide(ctx, ev); err != nil {
		t.Fatalf("deciding again is not an error (the first decision stays): %v", err)
	}
	rec, err = st.Event(ctx, ev.Key())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Decision == nil || rec.Decision.Verdict != relay.VerdictDeliver || rec.Decision.Reason != relay.ReasonEnforced {
		t.Fatalf("decision = %+v", rec.Decision)
	}
	if len(rec.Jobs) != 1 || rec.Jobs[0].DeviceID != "pixel" || q.scheduled["demo/android"] != 1 || q.jobs() != 1 {
		t.Fatalf("jobs %+v, scheduled %v; want the android device only", rec.Jobs, q.scheduled)
	}
	a := rec.Alert
	if a.Category != "APPROVE_DENY" || a.InterruptionLevel != "time-sensitive" || a.CollapseID != CollapseID(ev.Key()) {
		t.Errorf("alert = %+v", a)
	}
}

func TestBaselineMatrix(t *testing.T) {
	on, off := true, false
	tests := []struct {
		setting relay.Setting
		pref    *bool
		verdict relay.Verdict
		reason  string
	}{
		{relay.SettingEnabled, nil, relay.VerdictDeliver, relay.ReasonEnabled},
		{relay.SettingEnabled, &on, relay.VerdictDeliver, relay.ReasonEnabled},
		{relay.SettingEnabled, &off, relay.VerdictSuppress, relay.ReasonUserOptOut},
		{relay.SettingDisabled, &on, relay.VerdictSuppress, relay.ReasonWorkspaceDisabled},
		{relay.SettingDisabled, &off, relay.VerdictSuppress, relay.ReasonWorkspaceDisabled},
		{relay.SettingEnforced, &on, relay.VerdictDeliver, relay.ReasonEnforced},
		{relay.SettingEnforced, &off, relay.VerdictDeliver, relay.ReasonEnforced},
	}
	for _, tc := range tests {
		d := relay.Baseline(tc.setting, tc.pref)
		if d.Verdict != tc.verdict || d.Reason != tc.reason {
			t.Errorf("Baseline(%s, %v) = %s/%s, want %s/%s", tc.setting, tc.pref, d.Verdict, d.Reason, tc.verdict, tc.reason)
		}
	}
}

func TestRecoverDecidesUndecided(t *testing.T) {
	p, st, q := newPipeline(t)
	ctx := t.Context()
	st.RegisterDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "pixel", Platform: relay.PlatformAndroid, Token: "tok", App: "demo"})
	// Stored but never decided (as after a crash right after accepting).
	if _, err := st.AddEvents(ctx, []relay.Event{{ID: "a", Workspace: "w", User: "u", Type: relay.TypeOTPReceived, ExpiresAt: time.Now().Add(time.Hour)}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	events, err := p.Recover(ctx)
	if err != nil || events != 1 {
		t.Fatalf("Recover = %d events, %v", events, err)
	}
	if q.jobs() != 1 {
		t.Fatalf("%d jobs scheduled after recovery, want 1", q.jobs())
	}
	// A second pipeline over the same store (a restart) has nothing to do:
	// the open job is in the schedule.
	p2 := New(Options{Config: p.opts.Config, Store: st, Queue: &captureQueue{}})
	events, err = p2.Recover(ctx)
	if err != nil || events != 0 {
		t.Fatalf("second Recover = %d events, %v", events, err)
	}
}

// flakyStore fails Decide until ok is set, as a full disk would.
type flakyStore struct {
	*bolt.Store
	mu sync.Mutex
	ok bool
}

func (s *flakyStore) Decide(ctx context.Context, k relay.EventKey, d relay.Decision, a *relay.Alert, jobs []relay.Job) error {
	s.mu.Lock()
	ok := s.ok
	s.mu.Unlock()
	if !ok {
		return errors.New("write: no space left on device")
	}
	return s.Store.Decide(ctx, k, d, a, jobs)
}

// An event whose decision failed is decided by the sweep once the store
// works again, without a restart.
func TestSweepDecidesAfterStoreRecovers(t *testing.T) {
	_, st, q := newPipeline(t)
	fs := &flakyStore{Store: st}
	p := New(Options{Config: testConfig(t), Store: fs, Queue: q, Policy: typePolicy{}, SweepInterval: 20 * time.Millisecond, SweepAge: time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	st.RegisterDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "pixel", Platform: relay.PlatformAndroid, Token: "tok", App: "demo"})
	errs, err := p.Accept(ctx, []relay.Event{{ID: "mfa", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}})
	if err != nil || errs[0] != nil {
		t.Fatalf("Accept = %v, %v", errs, err)
	}
	time.Sleep(200 * time.Millisecond)
	if rec, _ := st.Event(ctx, relay.EventKey{Workspace: "w", ID: "mfa"}); rec.Decision != nil {
		t.Fatal("decided while the store failed")
	}
	fs.mu.Lock()
	fs.ok = true
	fs.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: "mfa"})
		if err == nil && rec.Decision != nil && len(rec.Jobs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not decided after the store recovered: %+v %v", rec, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAcceptRefusesNormalPriorityWhenFull(t *testing.T) {
	p, _, q := newPipeline(t)
	q.full = true
	if _, err := p.Accept(t.Context(), []relay.Event{{ID: "s", Workspace: "w", User: "u", Type: relay.TypeAccountShared}}); err == nil {
		t.Fatal("normal-priority event accepted while the queue is full")
	}
	errs, err := p.Accept(t.Context(), []relay.Event{{ID: "o", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}})
	if err != nil || errs[0] != nil {
		t.Fatalf("high-priority event refused: %v %v", errs, err)
	}
}

// leavingStore cancels the poster's context right after the events are
// stored, as a client hanging up mid-request would.
type leavingStore struct {
	*bolt.Store
	cancel context.CancelFunc
}

func (s leavingStore) AddDecided(ctx context.Context, evs []relay.Event, d []*store.Decided, at time.Time) ([]error, error) {
	defer s.cancel()
	return s.Store.AddDecided(ctx, evs, d, at)
}

// TestAcceptedEventDecidedEvenIfPosterLeaves: an event answered accepted is
// handed to the deciders even when the poster's context ends right after
// the store accepted it.
func TestAcceptedEventDecidedEvenIfPosterLeaves(t *testing.T) {
	p, st, _ := newPipeline(t)
	ctx, cancel := context.WithCancel(t.Context())
	p.opts.Store = leavingStore{Store: st, cancel: cancel}
	p.opts.Policy = typePolicy{} // a plugin applies: a decider decides
	p.opts.InlineBudget = -1
	errs, err := p.Accept(ctx, []relay.Event{{ID: "gone", Workspace: "w", User: "u", Type: relay.TypeOTPReceived}})
	if err != nil || errs[0] != nil {
		t.Fatalf("Accept = %v, %v", errs, err)
	}
	if ctx.Err() == nil {
		t.Fatal("the poster's context should be done by now")
	}
	select {
	case ev := <-p.queueFor(relay.Event{Type: relay.TypeOTPReceived, Priority: relay.PriorityHigh}):
		if ev.ID != "gone" {
			t.Fatalf("got %s", ev.ID)
		}
	default:
		t.Fatal("accepted event was not handed to a decider")
	}
}

// seenPolicy records the user.recent count each event was judged with.
type seenPolicy struct {
	mu   sync.Mutex
	seen map[string]int // event id → identity_verification 10m count
	wait time.Duration  // each evaluation takes this long
}

func (s *seenPolicy) Evaluate(_ context.Context, in PolicyInput) (PolicyResult, error) {
	s.mu.Lock()
	wait := s.wait
	s.mu.Unlock()
	time.Sleep(wait) // lets other deciders overtake, if they could
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[in.Event.ID] = in.Recent[relay.TypeIdentityVerification].M10
	return PolicyResult{}, nil
}

// TestBatchJudgedInOrder: a batch of one user's prompts is judged one by
// one in event order, each decision seeing the counts of the ones before
// it and itself — not the whole burst — while 64 deciders run. Another
// user's events are counted apart. The counts are in the store, so a new
// pipeline on the same store (a restart) continues them.
func TestBatchJudgedInOrder(t *testing.T) {
	_, st, q := newPipeline(t)
	pol := &seenPolicy{seen: map[string]int{}, wait: time.Millisecond}
	run := func(events []relay.Event) {
		t.Helper()
		p := New(Options{Config: testConfig(t), Store: st, Queue: q, Policy: pol, Recent: st})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		errs, err := p.Accept(ctx, events)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range errs {
			if e != nil {
				t.Fatalf("event %d: %v", i, e)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			pol.mu.Lock()
			n := len(pol.seen)
			pol.mu.Unlock()
			if n >= len(events) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d events judged", n, len(events))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var batch []relay.Event
	for i := range 8 {
		batch = append(batch, relay.Event{ID: fmt.Sprintf("p%d", i), Workspace: "w", User: "u", Type: relay.TypeIdentityVerification})
		batch = append(batch, relay.Event{ID: fmt.Sprintf("o%d", i), Workspace: "w", User: "other", Type: relay.TypeIdentityVerification})
	}
	run(batch)
	for i := range 8 {
		if got := pol.seen[fmt.Sprintf("p%d", i)]; got != i+1 {
			t.Errorf("p%d judged with count %d, want %d (counts: %v)", i, got, i+1, pol.seen)
		}
		if got := pol.seen[fmt.Sprintf("o%d", i)]; got != i+1 {
			t.Errorf("o%d judged with count %d, want %d", i, got, i+1)
		}
	}
	pol.mu.Lock()
	pol.seen = map[string]int{}
	pol.mu.Unlock()
	run([]relay.Event{{ID: "after-restart", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}})
	if got := pol.seen["after-restart"]; got != 9 {
		t.Errorf("after a restart: count %d, want 9", got)
	}
}

// typePolicy is a plugin chain that applies to the types listed (all when
// none) and keeps the baseline.
type typePolicy struct{ types []string }

func (p typePolicy) Applies(ev relay.Event) bool {
	return len(p.types) == 0 || slices.Contains(p.types, ev.Type)
}

func (p typePolicy) Evaluate(_ context.Context, in PolicyInput) (PolicyResult, error) {
	return PolicyResult{Verdict: in.Baseline.Verdict, Plugins: []relay.PluginDecision{{Name: "p", Verdict: "allow"}}}, nil
}

// TestAcceptDecidesWhatNeedsNoPlugin: an event no plugin applies to is
// stored decided and scheduled when Accept returns, without a decider; an
// event a plugin applies to waits for a decider. OnScheduled sees both.
func TestAcceptDecidesWhatNeedsNoPlugin(t *testing.T) {
	_, st, q := newPipeline(t)
	var mu sync.Mutex
	var scheduled []string
	p := New(Options{Config: testConfig(t), Store: st, Queue: q, DecideOnAccept: true, Policy: typePolicy{types: []string{relay.TypeAccountShared}},
		InlineBudget: -1, // the plugin-judged event goes to a decider (TestAcceptJudgesWithPlugins: within the budget it does not)
		OnScheduled: func(_ context.Context, ev relay.Event, _ *relay.Alert, _ []relay.Job) {
			mu.Lock()
			scheduled = append(scheduled, ev.ID)
			mu.Unlock()
		}})
	ctx := t.Context()
	if _, err := st.RegisterDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "pixel", Platform: relay.PlatformAndroid, Token: "tok", App: "demo"}); err != nil {
		t.Fatal(err)
	}
	errs, err := p.Accept(ctx, []relay.Event{
		{ID: "quick", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification},
		{ID: "plugin", Workspace: "w", User: "u", Type: relay.TypeAccountShared},
	})
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("Accept = %v, %v", errs, err)
	}
	rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: "quick"})
	if err != nil || rec.Decision == nil || rec.Decision.Reason != relay.ReasonEnforced || len(rec.Jobs) != 1 || rec.Jobs[0].State != relay.StatePending {
		t.Fatalf("quick event not decided on accept: %+v, %v", rec, err)
	}
	if q.scheduled["demo/android"] != 1 {
		t.Fatalf("scheduled %v, want the quick event's job", q.scheduled)
	}
	if rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: "plugin"}); err != nil || rec.Decision != nil {
		t.Fatalf("event for a plugin decided on accept: %+v, %v", rec, err)
	}
	select {
	case ev := <-p.in:
		if ev.ID != "plugin" {
			t.Fatalf("decider got %s, want plugin", ev.ID)
		}
		if err := p.Decide(ctx, *ev); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the event for a plugin was not handed to a decider")
	}
	if len(p.inHigh) != 0 {
		t.Fatal("the quick event went to a decider too")
	}
	rec, err = st.Event(ctx, relay.EventKey{Workspace: "w", ID: "plugin"})
	if err != nil || rec.Decision == nil || len(rec.Decision.Plugins) != 1 {
		t.Fatalf("plugin event: %+v, %v", rec, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(scheduled, []string{"quick", "plugin"}) {
		t.Fatalf("OnScheduled saw %v, want quick then plugin", scheduled)
	}
}

// activePolicy is a loaded chain whose plugins apply to no event.
type activePolicy struct{ typePolicy }

func (activePolicy) Active() bool { return true }

// TestAcceptLeavesCountedEventsToDeciders: with user.recent counts kept and
// a plugin loaded (which may read them), an event is counted and judged by
// a decider, in the user's order, even when no plugin applies to its type.
func TestAcceptLeavesCountedEventsToDeciders(t *testing.T) {
	_, st, q := newPipeline(t)
	p := New(Options{Config: testConfig(t), Store: st, Queue: q, Recent: st, DecideOnAccept: true, InlineBudget: -1,
		Policy: activePolicy{typePolicy{types: []string{"none"}}}})
	ctx := t.Context()
	if errs, err := p.Accept(ctx, []relay.Event{{ID: "counted", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}}); err != nil || errs[0] != nil {
		t.Fatalf("Accept = %v, %v", errs, err)
	}
	if rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: "counted"}); err != nil || rec.Decision != nil {
		t.Fatalf("a counted event was decided on accept: %+v, %v", rec, err)
	}
	if len(p.inHigh) != 1 {
		t.Fatal("the counted event was not handed to a decider")
	}
}

// countingStore counts the store writes that carry events.
type countingStore struct {
	*bolt.Store
	mu        sync.Mutex
	writes    [][]string // event ids of each AddDecided call
	devices   int        // Devices calls
	readUsers [][]string // the users of each ReadUsers call
}

func (s *countingStore) ReadUsers(ctx context.Context, workspace string, users []string) ([]map[string]bool, [][]relay.Device, error) {
	s.mu.Lock()
	s.readUsers = append(s.readUsers, slices.Clone(users))
	s.mu.Unlock()
	return s.Store.ReadUsers(ctx, workspace, users)
}

// oneByOne is a store that cannot read many users at once.
type oneByOne struct{ Store }

func (s *countingStore) Devices(ctx context.Context, workspace, user string) ([]relay.Device, error) {
	s.mu.Lock()
	s.devices++
	s.mu.Unlock()
	return s.Store.Devices(ctx, workspace, user)
}

func (s *countingStore) AddDecided(ctx context.Context, events []relay.Event, decided []*store.Decided, at time.Time) ([]error, error) {
	s.mu.Lock()
	var ids []string
	for _, e := range events {
		ids = append(ids, e.ID)
	}
	s.writes = append(s.writes, ids)
	s.mu.Unlock()
	return s.Store.AddDecided(ctx, events, decided, at)
}

// TestAcceptReadsEachUserOnce: deciding a batch on accept reads each
// user's preferences and devices once — all of them in one read when the
// store can (store.UsersReader) — and every event still gets its own
// user's.
func TestAcceptReadsEachUserOnce(t *testing.T) {
	for _, batch := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch-read=%v", batch), func(t *testing.T) {
			_, bst, q := newPipeline(t)
			st := &countingStore{Store: bst}
			var pst Store = st
			if !batch {
				pst = oneByOne{st}
			}
			p := New(Options{Config: testConfig(t), Store: pst, Queue: q, DecideOnAccept: true})
			ctx := t.Context()
			for _, u := range []string{"a", "b"} {
				if _, err := bst.RegisterDevice(ctx, relay.Device{Workspace: "w", User: u, ID: "phone-" + u, Platform: relay.PlatformAndroid, Token: "tok-" + u, App: "demo"}); err != nil {
					t.Fatal(err)
				}
			}
			// b turned account_shared off.
			if err := bst.PutPreferences(ctx, "w", "b", map[string]bool{relay.TypeAccountShared: false}); err != nil {
				t.Fatal(err)
			}
			var evs []relay.Event
			for i := range 10 {
				evs = append(evs, relay.Event{ID: fmt.Sprint(i), Workspace: "w", User: []string{"a", "b"}[i%2], Type: relay.TypeAccountShared})
			}
			if _, err := p.Accept(ctx, evs); err != nil {
				t.Fatal(err)
			}
			switch {
			case batch && (st.devices != 0 || !reflect.DeepEqual(st.readUsers, [][]string{{"a", "b"}})):
				t.Fatalf("Devices read %d times, ReadUsers %v: want one ReadUsers of a and b", st.devices, st.readUsers)
			case !batch && st.devices != 2:
				t.Fatalf("Devices read %d times for 10 events of 2 users, want 2", st.devices)
			}
			for _, ev := range evs {
				rec, err := bst.Event(ctx, ev.Key())
				if err != nil || rec.Decision == nil {
					t.Fatalf("event %s of %s: %+v, %v", ev.ID, ev.User, rec, err)
				}
				if ev.User == "b" {
					if rec.Decision.Reason != relay.ReasonUserOptOut || len(rec.Jobs) != 1 || rec.Jobs[0].State != relay.StateSuppressed {
						t.Fatalf("event %s of b (opted out): %+v", ev.ID, rec)
					}
					continue
				}
				if len(rec.Jobs) != 1 || rec.Jobs[0].DeviceID != "phone-a" || rec.Jobs[0].State != relay.StatePending {
					t.Fatalf("event %s of a: %+v", ev.ID, rec)
				}
			}
		})
	}
}

// TestAcceptJudgesWithPlugins: within its budget, Accept judges the events
// a plugin applies to itself and stores them decided in the accept's write,
// in order per user, each counted once in user.recent; past the budget,
// for a user whose events are with the deciders, or for a duplicate, the
// deciders judge, still in the user's order.
func TestAcceptJudgesWithPlugins(t *testing.T) {
	_, st, q := newPipeline(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pol := &seenPolicy{seen: map[string]int{}}
	p := New(Options{Config: testConfig(t), Store: st, Queue: q, Policy: pol, Recent: st, DecideOnAccept: true, InlineBudget: time.Second})
	accept := func(events ...relay.Event) []error {
		t.Helper()
		errs, err := p.Accept(ctx, events)
		if err != nil {
			t.Fatal(err)
		}
		return errs
	}
	decided := func(id string) bool {
		rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: id})
		if err != nil {
			t.Fatal(err)
		}
		return rec.Decision != nil
	}
	prompt := func(id, user string) relay.Event {
		return relay.Event{ID: id, Workspace: "w", User: user, Type: relay.TypeIdentityVerification}
	}
	accept(prompt("u1", "u"), prompt("v1", "v"), prompt("u2", "u"))
	for id, want := range map[string]int{"u1": 1, "v1": 1, "u2": 2} {
		if !decided(id) || pol.seen[id] != want {
			t.Fatalf("%s: decided %v, count %d; want decided on accept with count %d", id, decided(id), pol.seen[id], want)
		}
	}
	if len(p.inHigh)+len(p.in) != 0 {
		t.Fatal("an event judged on accept went to a decider too")
	}
	// A retried post: a duplicate, not counted again.
	if errs := accept(prompt("u2", "u")); !errors.Is(errs[0], relay.ErrDuplicate) {
		t.Fatalf("retry: %v, want a duplicate", errs[0])
	}
	if r, err := st.Recent(ctx, "w", "u", time.Now()); err != nil || r[relay.TypeIdentityVerification].M10 != 2 {
		t.Fatalf("counts after the duplicate: %+v, %v; want 2", r, err)
	}
	// A user with an event at a decider: this call waits for the user (50
	// budgets: 50ms), then leaves theirs to the deciders, behind it.
	p.opts.InlineBudget = time.Millisecond
	busy := userKey{"w", "u"}
	if !p.own(busy) {
		t.Fatal("user busy")
	}
	accept(prompt("u3", "u"), prompt("v2", "v"))
	if decided("u3") || !decided("v2") {
		t.Fatalf("u3 decided %v (want a decider's), v2 decided %v (want on accept)", decided("u3"), decided("v2"))
	}
	p.next(busy) // the decider is done: u3 goes on
	if ev := <-p.inHigh; ev.ID != "u3" {
		t.Fatalf("decider got %s, want u3", ev.ID)
	}
	if err := p.Decide(ctx, prompt("u3", "u")); err != nil {
		t.Fatal(err)
	}
	p.next(busy)
	if pol.seen["u3"] != 3 {
		t.Fatalf("u3 judged with count %d, want 3", pol.seen["u3"])
	}
	// A judgement slower than the budget: the call judges no more itself;
	// the rest of the user's events go to the deciders, in order.
	pol.wait = 20 * time.Millisecond
	p.opts.InlineBudget = 10 * time.Millisecond
	accept(prompt("u4", "u"), prompt("u5", "u"), prompt("u6", "u"))
	if !decided("u4") || decided("u5") || decided("u6") {
		t.Fatalf("decided on accept: u4 %v, u5 %v, u6 %v; want only u4", decided("u4"), decided("u5"), decided("u6"))
	}
	for _, id := range []string{"u5", "u6"} {
		ev := *<-p.inHigh
		if ev.ID != id {
			t.Fatalf("decider got %s, want %s", ev.ID, id)
		}
		if err := p.Decide(ctx, ev); err != nil {
			t.Fatal(err)
		}
		p.next(busy)
	}
	for id, want := range map[string]int{"u4": 4, "u5": 5, "u6": 6} {
		if pol.seen[id] != want {
			t.Fatalf("%s judged with count %d, want %d (%v)", id, pol.seen[id], want, pol.seen)
		}
	}
}

// gatedPolicy is a seenPolicy that holds the judgement of one event until
// released.
type gatedPolicy struct {
	seenPolicy
	hold    string        // the event id to hold
	entered chan struct{} // closed when the held event is being judged
	release chan struct{} // close to let it go on
}

func (g *gatedPolicy) Evaluate(ctx context.Context, in PolicyInput) (PolicyResult, error) {
	if in.Event.ID == g.hold {
		close(g.entered)
		<-g.release
	}
	return g.seenPolicy.Evaluate(ctx, in)
}

// TestConcurrentAcceptsJudgeInline: two calls with the same users judge
// their events themselves at once, neither waiting for the other (their
// order is theirs; each event gets a count of its own), instead of one
// handing its users' events to the deciders (a second write each). An
// event twice in one call is judged and counted once.
func TestConcurrentAcceptsJudgeInline(t *testing.T) {
	_, st, q := newPipeline(t)
	ctx := t.Context()
	pol := &gatedPolicy{seenPolicy: seenPolicy{seen: map[string]int{}}, hold: "a1", entered: make(chan struct{}), release: make(chan struct{})}
	p := New(Options{Config: testConfig(t), Store: st, Queue: q, Policy: pol, Recent: st, DecideOnAccept: true, InlineBudget: time.Minute})
	prompt := func(id, user string) relay.Event {
		return relay.Event{ID: id, Workspace: "w", User: user, Type: relay.TypeIdentityVerification}
	}
	accept := func(events ...relay.Event) chan []error {
		done := make(chan []error, 1)
		go func() {
			errs, err := p.Accept(ctx, events)
			if err != nil {
				t.Error(err)
			}
			done <- errs
		}()
		return done
	}
	first := accept(prompt("a1", "u"), prompt("a2", "v"))
	<-pol.entered // the first call is judging a1 (counted)
	errs := <-accept(prompt("b1", "v"), prompt("b2", "u"), prompt("b2", "u"))
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], relay.ErrDuplicate) {
		t.Fatalf("second call: %v, want accepted, accepted, duplicate", errs)
	}
	close(pol.release)
	<-first
	for id, want := range map[string]int{"a1": 1, "b1": 1, "b2": 2, "a2": 2} {
		rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Decision == nil || pol.seen[id] != want {
			t.Fatalf("%s: decision %v, count %d; want decided on accept with count %d", id, rec.Decision, pol.seen[id], want)
		}
	}
	if n := len(p.inHigh) + len(p.in); n != 0 {
		t.Fatalf("%d events went to the deciders", n)
	}
	if r, err := st.Recent(ctx, "w", "u", time.Now()); err != nil || r[relay.TypeIdentityVerification].M10 != 2 {
		t.Fatalf("u's count: %+v, %v; want 2 (the duplicate counted once)", r, err)
	}
	// A user whose events are at the deciders is waited for too: once
	// its line is done, the call judges its event itself.
	busy := userKey{"w", "u"}
	if !p.own(busy) {
		t.Fatal("user busy")
	}
	third := accept(prompt("c1", "u"))
	for waiting := false; !waiting; {
		runtime.Gosched()
		p.mu.Lock()
		_, waiting = p.freed[busy]
		p.mu.Unlock()
	}
	p.next(busy)
	<-third
	if rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: "c1"}); err != nil || rec.Decision == nil || pol.seen["c1"] != 3 {
		t.Fatalf("c1: %+v, %v, count %d; want decided on accept with count 3", rec, err, pol.seen["c1"])
	}
}

// failOnceStore fails the first Decide, as a passing disk error would.
type failOnceStore struct {
	*bolt.Store
	failed atomic.Bool
}

func (s *failOnceStore) Decide(ctx context.Context, k relay.EventKey, d relay.Decision, a *relay.Alert, jobs []relay.Job) error {
	if s.failed.CompareAndSwap(false, true) {
		return errors.New("write: input/output error")
	}
	return s.Store.Decide(ctx, k, d, a, jobs)
}

// TestRetriedDecisionCountedOnce: a decision whose write failed is judged
// again, without counting its event in user.recent a second time (the
// push-bombing guard would see one prompt as two).
func TestRetriedDecisionCountedOnce(t *testing.T) {
	_, st, q := newPipeline(t)
	fs := &failOnceStore{Store: st}
	pol := &seenPolicy{seen: map[string]int{}}
	p := New(Options{Config: testConfig(t), Store: fs, Queue: q, Policy: pol, Recent: st})
	ctx := t.Context()
	if _, err := p.Accept(ctx, []relay.Event{{ID: "mfa", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}}); err != nil {
		t.Fatal(err)
	}
	p.decideWithRetry(ctx, *<-p.inHigh, nil)
	if !fs.failed.Load() {
		t.Fatal("the first decision did not fail")
	}
	if rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: "mfa"}); err != nil || rec.Decision == nil {
		t.Fatalf("not decided on the retry: %+v, %v", rec, err)
	}
	if r, err := st.Recent(ctx, "w", "u", time.Now()); err != nil || pol.seen["mfa"] != 1 || r[relay.TypeIdentityVerification].M10 != 1 {
		t.Fatalf("judged with count %d, stored count %+v (%v); want 1 and 1", pol.seen["mfa"], r, err)
	}
}

// blockingStore holds Decide of one event until released.
type blockingStore struct {
	*bolt.Store
	hold    string
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStore) Decide(ctx context.Context, k relay.EventKey, d relay.Decision, a *relay.Alert, jobs []relay.Job) error {
	if k.ID == s.hold {
		close(s.entered)
		<-s.release
	}
	return s.Store.Decide(ctx, k, d, a, jobs)
}

// TestDeciderPassesUserOnOnceJudged: a decider passes the user's next
// event on as soon as it has judged one (counted, through the plugins),
// not once the decision is written, so a user's line at the deciders
// empties at the plugins' speed rather than one store commit per event.
func TestDeciderPassesUserOnOnceJudged(t *testing.T) {
	_, st, q := newPipeline(t)
	bs := &blockingStore{Store: st, hold: "p1", entered: make(chan struct{}), release: make(chan struct{})}
	pol := &seenPolicy{seen: map[string]int{}}
	p := New(Options{Config: testConfig(t), Store: bs, Queue: q, Policy: pol, Recent: st})
	ctx := t.Context()
	prompt := func(id string) relay.Event {
		return relay.Event{ID: id, Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}
	}
	if _, err := p.Accept(ctx, []relay.Event{prompt("p1"), prompt("p2")}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.decideQueued(ctx, *<-p.inHigh); close(done) }()
	<-bs.entered // p1 is judged; its decision is being written
	select {
	case ev := <-p.inHigh:
		if ev.ID != "p2" {
			t.Fatalf("next event %s, want p2", ev.ID)
		}
		p.decideQueued(ctx, *ev)
	case <-time.After(5 * time.Second):
		close(bs.release)
		t.Fatal("p2 was not passed on while p1's decision was being written")
	}
	close(bs.release)
	<-done
	for id, want := range map[string]int{"p1": 1, "p2": 2} {
		rec, err := st.Event(ctx, relay.EventKey{Workspace: "w", ID: id})
		if err != nil || rec.Decision == nil || pol.seen[id] != want {
			t.Fatalf("%s: %+v, %v, count %d; want decided with count %d", id, rec, err, pol.seen[id], want)
		}
	}
}

// pausingStore pauses, after storing them, the AddDecided call of the
// events that include one id, until released.
type pausingStore struct {
	*bolt.Store
	id      string
	stored  chan struct{}
	release chan struct{}
}

func (s *pausingStore) AddDecided(ctx context.Context, evs []relay.Event, d []*store.Decided, at time.Time) ([]error, error) {
	res, err := s.Store.AddDecided(ctx, evs, d, at)
	if slices.ContainsFunc(evs, func(ev relay.Event) bool { return ev.ID == s.id }) {
		close(s.stored)
		<-s.release
	}
	return res, err
}

// TestLeftEventKeepsItsPlace: an event a call leaves to the deciders (here
// after a slow judgement) keeps its place in its user's order: a call
// that stores later waits for it instead of judging the user's next event
// first, even while the first call has not yet handed it over.
func TestLeftEventKeepsItsPlace(t *testing.T) {
	_, st, q := newPipeline(t)
	ps := &pausingStore{Store: st, id: "u1", stored: make(chan struct{}), release: make(chan struct{})}
	pol := &seenPolicy{seen: map[string]int{}, wait: 20 * time.Millisecond}
	p := New(Options{Config: testConfig(t), Store: ps, Queue: q, Policy: pol, Recent: st, DecideOnAccept: true, InlineBudget: 10 * time.Millisecond})
	ctx := t.Context()
	prompt := func(id, user string) relay.Event {
		return relay.Event{ID: id, Workspace: "w", User: user, Type: relay.TypeIdentityVerification}
	}
	first := make(chan struct{})
	go func() {
		defer close(first)
		// v1's judgement is slow: u1 is left to the deciders.
		if _, err := p.Accept(ctx, []relay.Event{prompt("v1", "v"), prompt("u1", "u")}); err != nil {
			t.Error(err)
		}
	}()
	<-ps.stored // u1 is stored undecided, not yet handed to the deciders
	pol.mu.Lock()
	pol.wait = 0
	pol.mu.Unlock()
	second := make(chan struct{})
	go func() {
		defer close(second)
		if _, err := p.Accept(ctx, []relay.Event{prompt("u2", "u")}); err != nil {
			t.Error(err)
		}
	}()
	// The second call waits for u (it must not judge u2 yet).
	for waiting := false; !waiting; {
		select {
		case <-second:
			t.Fatal("u2 judged before u1, which was stored first")
		default:
		}
		runtime.Gosched()
		p.mu.Lock()
		_, waiting = p.freed[userKey{"w", "u"}]
		p.mu.Unlock()
	}
	close(ps.release)
	<-first
	ev := *<-p.inHigh // the decider's turn
	if ev.ID != "u1" {
		t.Fatalf("decider got %s, want u1", ev.ID)
	}
	p.decideQueued(ctx, ev)
	<-second
	for id, want := range map[string]int{"v1": 1, "u1": 1, "u2": 2} {
		if pol.seen[id] != want {
			t.Fatalf("%s judged with count %d, want %d (%v)", id, pol.seen[id], want, pol.seen)
		}
	}
}

// slowSomePolicy is a seenPolicy whose judgement of events with an id
// ending in "7" takes slow.
type slowSomePolicy struct {
	seenPolicy
	slow time.Duration
}

func (s *slowSomePolicy) Evaluate(ctx context.Context, in PolicyInput) (PolicyResult, error) {
	if strings.HasSuffix(in.Event.ID, "7") {
		time.Sleep(s.slow)
	}
	return s.seenPolicy.Evaluate(ctx, in)
}

// TestConcurrentAcceptsCountEachEventOnce: concurrent POSTs with the same
// users, some judgements slower than the budget (the rest of those POSTs
// go to the deciders), and POSTs sent twice: every event is decided, each
// counted in user.recent exactly once (a user's counts are 1..n, no gap,
// no repeat), and within a POST a user's events are counted in order.
func TestConcurrentAcceptsCountEachEventOnce(t *testing.T) {
	_, st, q := newPipeline(t)
	pol := &slowSomePolicy{seenPolicy: seenPolicy{seen: map[string]int{}}, slow: 3 * time.Millisecond}
	p := New(Options{Config: testConfig(t), Store: st, Queue: q, Policy: pol, Recent: st, DecideOnAccept: true, InlineBudget: 2 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	const posters, posts, batch, users = 6, 12, 10, 5
	var batches [][]relay.Event
	for i := range posters * posts {
		var b []relay.Event
		for j := range batch {
			id := fmt.Sprintf("p%d-e%d", i, j)
			b = append(b, relay.Event{ID: id, Workspace: "w", User: fmt.Sprint("u", (i+j)%users), Type: relay.TypeIdentityVerification})
		}
		batches = append(batches, b)
	}
	var wg sync.WaitGroup
	for g := range posters {
		wg.Go(func() {
			for i := g; i < len(batches); i += posters {
				if _, err := p.Accept(ctx, batches[i]); err != nil {
					t.Error(err)
				}
				if i%5 == 0 { // a retried POST: all duplicates
					if _, err := p.Accept(ctx, batches[i]); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for _, b := range batches {
		for _, ev := range b {
			for {
				rec, err := st.Event(ctx, ev.Key())
				if err != nil {
					t.Fatal(err)
				}
				if rec.Decision != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not decided", ev.ID)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	pol.mu.Lock()
	defer pol.mu.Unlock()
	counts := map[string][]int{}
	for _, b := range batches {
		last := map[string]int{}
		for _, ev := range b {
			c := pol.seen[ev.ID]
			if c <= last[ev.User] {
				t.Fatalf("%s of %s counted %d after %d earlier in its POST", ev.ID, ev.User, c, last[ev.User])
			}
			last[ev.User] = c
			counts[ev.User] = append(counts[ev.User], c)
		}
	}
	for u, cs := range counts {
		slices.Sort(cs)
		for i, c := range cs {
			if c != i+1 {
				t.Fatalf("%s's counts %v: want 1..%d, each once", u, cs, len(cs))
			}
		}
	}
}

// Scheduled tells the queue of each lane's open jobs, whether they share
// one lane or not; final jobs are not counted.
func TestScheduledCountsOpenJobsPerLane(t *testing.T) {
	job := func(app string, p relay.Platform, s relay.DeliveryState) relay.Job {
		return relay.Job{App: app, Platform: p, State: s}
	}
	for _, tc := range []struct {
		jobs []relay.Job
		want map[string]int
	}{
		{nil, nil},
		{[]relay.Job{job("demo", relay.PlatformIOS, relay.StateSuppressed)}, nil},
		{[]relay.Job{job("demo", relay.PlatformIOS, relay.StatePending)}, map[string]int{"demo/ios": 1}},
		{[]relay.Job{job("demo", relay.PlatformIOS, relay.StateExpired), job("demo", relay.PlatformIOS, relay.StatePending),
			job("demo", relay.PlatformIOS, relay.StateDeferred)}, map[string]int{"demo/ios": 2}},
		{[]relay.Job{job("demo", relay.PlatformIOS, relay.StatePending), job("demo", relay.PlatformAndroid, relay.StatePending),
			job("demo", relay.PlatformIOS, relay.StatePending), job("other", relay.PlatformIOS, relay.StateSuppressed)},
			map[string]int{"demo/ios": 2, "demo/android": 1}},
		{[]relay.Job{job("demo", relay.PlatformIOS, relay.StatePending), job("other", relay.PlatformIOS, relay.StatePending)},
			map[string]int{"demo/ios": 1, "other/ios": 1}},
	} {
		q := &captureQueue{}
		Scheduled(q, relay.PriorityNormal, tc.jobs)
		if !reflect.DeepEqual(q.scheduled, tc.want) {
			t.Errorf("jobs %+v: scheduled %v, want %v", tc.jobs, q.scheduled, tc.want)
		}
	}
}

// The daemon's queue takes jobs leased at accept: a method missing here
// would silently turn leasing at accept off.
var _ leasingQueue = (*queue.Queue)(nil)

// slotQueue is a captureQueue that takes jobs leased at accept: it
// grants slots up to free, and records what it was offered and given back.
type slotQueue struct {
	captureQueue
	free       int
	reserved   int
	offered    []store.Leased
	offers     []int // the jobs of each Offer call
	backlogged bool
}

func (q *slotQueue) Backlogged(string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.backlogged
}

func (q *slotQueue) LeaseTerms() (string, time.Duration) { return "r1", time.Minute }

func (q *slotQueue) Reserve(_ string, n int) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, q.free-q.reserved)
	q.reserved += n
	return n
}

func (q *slotQueue) Unreserve(_ string, n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reserved -= n
}

func (q *slotQueue) Offer(_ string, jobs []store.Leased) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.offered = append(q.offered, jobs...)
	q.offers = append(q.offers, len(jobs))
}

// leasingPipeline returns a pipeline deciding on accept, on a bolt store
// (which leases in the accept's write) and a queue with free send slots;
// user u of workspace w has one Android device.
func leasingPipeline(t *testing.T, free int) (*Pipeline, *bolt.Store, *slotQueue) {
	t.Helper()
	st := bolttest.Open(t)
	q := &slotQueue{free: free}
	p := New(Options{Config: testConfig(t), Store: st, Queue: q, DecideOnAccept: true})
	if _, err := st.RegisterDevice(t.Context(), relay.Device{Workspace: "w", User: "u", ID: "pixel", Platform: relay.PlatformAndroid, Token: "tok", App: "demo"}); err != nil {
		t.Fatal(err)
	}
	return p, st, q
}

// TestAcceptLeasesWhatItDecided: with a store that leases in the accept's
// write and a queue that takes such leases, the decided jobs due now are
// offered to the queue as far as it has slots (a duplicate's are not),
// the slots not used go back, and the rest wait in the schedule.
func TestAcceptLeasesWhatItDecided(t *testing.T) {
	p, st, q := leasingPipeline(t, 3)
	ctx := t.Context()
	if _, err := p.Accept(ctx, []relay.Event{{ID: "0", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}}); err != nil {
		t.Fatal(err)
	}
	errs, err := p.Accept(ctx, []relay.Event{
		{ID: "0", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}, // a duplicate
		{ID: "1", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification},
		{ID: "2", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification},
	})
	if err != nil || !errors.Is(errs[0], relay.ErrDuplicate) || errs[1] != nil || errs[2] != nil {
		t.Fatalf("accept: %v, %v", errs, err)
	}
	// "0" took a slot at its own accept; of the two left, "0"'s duplicate
	// reserved one (given back: it stores nothing) and "1" the other.
	// "2" waits in the schedule.
	var ids []string
	for _, l := range q.offered {
		if l.Ticket == nil || l.Device.Token != "tok" || l.Alert == nil {
			t.Errorf("offered lease %+v", l)
		}
		ids = append(ids, l.Job.Event.ID)
	}
	if !slices.Equal(ids, []string{"0", "1"}) || q.reserved != 2 {
		t.Fatalf("offered %v with %d slots held, want 0 and 1 with 2", ids, q.reserved)
	}
	leased, _, err := st.Lease(ctx, store.LeaseRequest{Lane: relay.Lane("demo", relay.PlatformAndroid), Owner: "r1", Now: time.Now(), TTL: time.Minute, Max: 10})
	if err != nil || len(leased) != 1 || leased[0].Job.Event.ID != "2" {
		t.Fatalf("the schedule leased %+v, %v; want 2 only", leased, err)
	}
}

// signIns returns n identity verification events of user u of workspace w
// (leasingPipeline's), with ids 0 to n-1.
func signIns(n int) []relay.Event {
	events := make([]relay.Event, n)
	for i := range events {
		events[i] = relay.Event{ID: fmt.Sprint(i), Workspace: "w", User: "u", Type: relay.TypeIdentityVerification}
	}
	return events
}

// TestAcceptLeasesPastMaxEarlyOnceStored: one Accept call leases every
// decided job due now that has a send slot, in its write; it hands out
// maxEarlyLeases of them before the write is durable (their sends share
// the cores with the write and the POST's answer) and the rest once it
// is, in a second offer. None is left to the schedule.
func TestAcceptLeasesPastMaxEarlyOnceStored(t *testing.T) {
	p, st, q := leasingPipeline(t, 100)
	ctx := t.Context()
	if _, err := p.Accept(ctx, signIns(3*maxEarlyLeases)); err != nil {
		t.Fatal(err)
	}
	if len(q.offered) != 3*maxEarlyLeases || q.reserved != 3*maxEarlyLeases || !slices.Equal(q.offers, []int{maxEarlyLeases, 2 * maxEarlyLeases}) {
		t.Fatalf("offered %d jobs in calls of %v, %d slots held; want %d in calls of %d and %d", len(q.offered), q.offers, q.reserved,
			3*maxEarlyLeases, maxEarlyLeases, 2*maxEarlyLeases)
	}
	leased, _, err := st.Lease(ctx, store.LeaseRequest{Lane: relay.Lane("demo", relay.PlatformAndroid), Owner: "r2", Now: time.Now(), TTL: time.Minute, Max: 100})
	if err != nil || len(leased) != 0 {
		t.Fatalf("the schedule leased %d jobs (%v): every job was leased at accept", len(leased), err)
	}
}

// TestAcceptSendsTheRestAfterTheAnswer: in a request with an AfterAnswer
// (a POST), the jobs handed out once the write is durable go to the queue
// only when the handler runs it, after its answer; their slots stay held
// meanwhile.
func TestAcceptSendsTheRestAfterTheAnswer(t *testing.T) {
	p, _, q := leasingPipeline(t, 100)
	ctx, after := relay.WithAfterAnswer(t.Context())
	if _, err := p.Accept(ctx, signIns(3*maxEarlyLeases)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q.offers, []int{maxEarlyLeases}) || q.reserved != 3*maxEarlyLeases {
		t.Fatalf("before the answer: offers of %v, %d slots held; want one of %d, %d held", q.offers, q.reserved, maxEarlyLeases, 3*maxEarlyLeases)
	}
	after.Run()
	if !slices.Equal(q.offers, []int{maxEarlyLeases, 2 * maxEarlyLeases}) || q.reserved != 3*maxEarlyLeases {
		t.Fatalf("after the answer: offers of %v, %d slots held", q.offers, q.reserved)
	}
}

// TestAcceptLeasesAFewWhenBacklogged: while the lane is backlogged (its
// older jobs wait for the free slots), an Accept call leases only the
// maxEarlyLeases jobs it hands out early; the rest wait in the schedule
// behind the backlog.
func TestAcceptLeasesAFewWhenBacklogged(t *testing.T) {
	p, st, q := leasingPipeline(t, 100)
	q.backlogged = true
	ctx := t.Context()
	if _, err := p.Accept(ctx, signIns(3*maxEarlyLeases)); err != nil {
		t.Fatal(err)
	}
	if len(q.offered) != maxEarlyLeases || q.reserved != maxEarlyLeases || !slices.Equal(q.offers, []int{maxEarlyLeases}) {
		t.Fatalf("offered %d jobs in calls of %v, %d slots held; want %d in one", len(q.offered), q.offers, q.reserved, maxEarlyLeases)
	}
	leased, _, err := st.Lease(ctx, store.LeaseRequest{Lane: relay.Lane("demo", relay.PlatformAndroid), Owner: "r2", Now: time.Now(), TTL: time.Minute, Max: 100})
	if err != nil || len(leased) != 2*maxEarlyLeases {
		t.Fatalf("the schedule leased %d jobs (%v), want the %d not leased at accept", len(leased), err, 2*maxEarlyLeases)
	}
}
