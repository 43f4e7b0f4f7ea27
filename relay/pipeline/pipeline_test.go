package pipeline

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/queue"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type captureQueue struct {
	mu    sync.Mutex
	items []*queue.Item
}

func (q *captureQueue) Add(items ...*queue.Item) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, items...)
	return nil
}

func testConfig(t *testing.T) *config.Config {
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
	st, err := bolt.Open(filepath.Join(t.TempDir(), "relay.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	q := &captureQueue{}
	return New(Options{Config: testConfig(t), Store: st, Queue: q}), st, q
}

func TestAcceptFillsDefaultsAndDecides(t *testing.T) {
	p, st, q := newPipeline(t)
	ctx := t.Context()
	if err := st.PutDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "pixel", Platform: relay.PlatformAndroid, Token: "tok", App: "demo"}); err != nil {
		t.Fatal(err)
	}
	// An iPhone of an app with no APNs block gets no job.
	if err := st.PutDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "iphone", Platform: relay.PlatformIOS, Token: "t2", App: "demo"}); err != nil {
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
	ev := <-p.in
	if ev.Priority != relay.PriorityHigh || len(ev.Actions) != 2 {
		t.Errorf("defaults not filled: %+v", ev)
	}
	if ttl := ev.ExpiresAt.Sub(before); ttl < 2*time.Minute-time.Second || ttl > 2*time.Minute+time.Second {
		t.Errorf("expires_at %v after accept, want the type's 2m TTL", ttl)
	}
	if err := p.Decide(ctx, ev); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Event(ctx, ev.Key())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Decision == nil || rec.Decision.Verdict != relay.VerdictDeliver || rec.Decision.Reason != relay.ReasonEnforced {
		t.Fatalf("decision = %+v", rec.Decision)
	}
	if len(q.items) != 1 || q.items[0].Device.ID != "pixel" {
		t.Fatalf("queued %d items, want the android device only", len(q.items))
	}
	a := q.items[0].Alert
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

func TestRecoverDecidesUndecidedAndRequeuesOpenJobs(t *testing.T) {
	p, st, q := newPipeline(t)
	ctx := t.Context()
	st.PutDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "pixel", Platform: relay.PlatformAndroid, Token: "tok", App: "demo"})
	// Stored but never decided (as after a crash right after accepting).
	if _, err := st.AddEvents(ctx, []relay.Event{{ID: "a", Workspace: "w", User: "u", Type: relay.TypeOTPReceived, ExpiresAt: time.Now().Add(time.Hour)}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	jobs, events, err := p.Recover(ctx)
	if err != nil || jobs != 0 || events != 1 {
		t.Fatalf("Recover = %d jobs, %d events, %v", jobs, events, err)
	}
	if len(q.items) != 1 {
		t.Fatalf("%d items queued after recovery, want 1", len(q.items))
	}
	// A second pipeline over the same store (a restart) finds the open job.
	p2 := New(Options{Config: p.opts.Config, Store: st, Queue: &captureQueue{}})
	jobs, events, err = p2.Recover(ctx)
	if err != nil || jobs != 1 || events != 0 {
		t.Fatalf("second Recover = %d jobs, %d events, %v", jobs, events, err)
	}
}

// leavingStore cancels the poster's context right after the events are
// stored, as a client hanging up mid-request would.
type leavingStore struct {
	*bolt.Store
	cancel context.CancelFunc
}

func (s leavingStore) AddEvents(ctx context.Context, evs []relay.Event, at time.Time) ([]error, error) {
	defer s.cancel()
	return s.Store.AddEvents(ctx, evs, at)
}

// TestAcceptedEventDecidedEvenIfPosterLeaves: an event answered accepted is
// handed to the deciders even when the poster's context ends right after
// the store accepted it.
func TestAcceptedEventDecidedEvenIfPosterLeaves(t *testing.T) {
	p, st, _ := newPipeline(t)
	ctx, cancel := context.WithCancel(t.Context())
	p.opts.Store = leavingStore{Store: st, cancel: cancel}
	errs, err := p.Accept(ctx, []relay.Event{{ID: "gone", Workspace: "w", User: "u", Type: relay.TypeOTPReceived}})
	if err != nil || errs[0] != nil {
		t.Fatalf("Accept = %v, %v", errs, err)
	}
	if ctx.Err() == nil {
		t.Fatal("the poster's context should be done by now")
	}
	select {
	case ev := <-p.in:
		if ev.ID != "gone" {
			t.Fatalf("got %s", ev.ID)
		}
	default:
		t.Fatal("accepted event was not handed to a decider")
	}
}
