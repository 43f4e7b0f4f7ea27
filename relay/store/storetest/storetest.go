// Package storetest is the conformance suite every store backend passes:
// the behaviour of store.Backend's roles, checked the same way on the bolt
// file and on JetStream. A backend's own tests call Run.
package storetest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Harness opens backends for the suite.
type Harness struct {
	// Open returns a new, empty backend; the suite closes it.
	Open func(t *testing.T) store.Backend
	// OpenPeer, when set, returns a second handle on the state of b, as a
	// second relay of a cluster sees it (closed by the suite). Without it,
	// cross-relay tests use b itself.
	OpenPeer func(t *testing.T, b store.Backend) store.Backend
	// Dump, when set, returns every live key and value the backend holds
	// (its raw bytes, as strings): the erase test checks that nothing
	// of an erased user is left.
	Dump func(t *testing.T, b store.Backend) []string
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"EventsIdempotent", testEventsIdempotent},
		{"EventsConcurrentDuplicates", testEventsConcurrentDuplicates},
		{"DecideFirstWins", testDecideFirstWins},
		{"AddDecided", testAddDecided},
		{"AddDecidedBatch", testAddDecidedBatch},
		{"Undecided", testUndecided},
		{"PruneEvents", testPruneEvents},
		{"Devices", testDevices},
		{"RegisterDeviceTakesToken", testRegisterDeviceTakesToken},
		{"RegisterUserDeviceKeepsOthersToken", testRegisterUserDeviceKeepsOthersToken},
		{"TokenMovesAmongManyDevices", testTokenMovesAmongManyDevices},
		{"TokenProofSingleUse", testTokenProofSingleUse},
		{"SettingsAndPreferences", testSettingsAndPreferences},
		{"PreferencesFromTwoRelays", testPreferencesFromTwoRelays},
		{"LeasePriorityThenDue", testLeasePriorityThenDue},
		{"LeaseCarriesWhatSendingNeeds", testLeaseCarries},
		{"LeaseExclusive", testLeaseExclusive},
		{"LeaseExpires", testLeaseExpires},
		{"SettleRetryAndFinal", testSettleRetryAndFinal},
		{"SettleWithdrawDue", testSettleWithdrawDue},
		{"DeadLettersAndReplay", testDeadLetters},
		{"CountsAndLaneStats", testCountsAndLaneStats},
		{"LaneStatsAgeOfJobsNotDue", testLaneStatsAge},
		{"Answers", testAnswers},
		{"AnsweredAndCancel", testAnsweredAndCancel},
		{"DeviceLimitConcurrent", testDeviceLimitConcurrent},
		{"PruneEventsForgetsAnswer", testPruneEventsForgetsAnswer},
		{"EraseUser", testEraseUser},
		{"PruneDeadLettersAndDevices", testPruneDeadLettersAndDevices},
		{"EraseWorkspace", testEraseWorkspace},
		{"RecentCounts", testRecentCounts},
		{"RecentCountsFromTwoRelays", testRecentCountsFromTwoRelays},
		{"AuditLog", testAuditLog},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func (h Harness) open(t *testing.T) store.Backend {
	t.Helper()
	b := h.Open(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

// undecidedIDs returns the ids of b's undecided events received before
// before, in the order Undecided gives them.
func undecidedIDs(t *testing.T, b store.Backend, before time.Time) []string {
	t.Helper()
	var ids []string
	if err := b.Undecided(ctx, before, func(e relay.Event) error {
		ids = append(ids, e.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

func (h Harness) peer(t *testing.T, b store.Backend) store.Backend {
	t.Helper()
	if h.OpenPeer == nil {
		return b
	}
	p := h.OpenPeer(t, b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("close peer: %v", err)
		}
	})
	return p
}

const (
	ws   = "acme"
	user = "u-42"
	app  = "demo"
)

var ctx = context.Background()

// event returns an event of type typ expiring in 10 minutes.
func event(id string, prio relay.Priority) relay.Event {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return relay.Event{ID: id, Workspace: ws, User: user, Type: relay.TypeOTPReceived,
		Title: "Code", Body: "Tap to copy", Data: map[string]string{"account": "github"},
		Priority: prio, OccurredAt: now, ExpiresAt: now.Add(10 * time.Minute)}
}

func add(t *testing.T, b store.EventLog, evs ...relay.Event) {
	t.Helper()
	res, err := b.AddEvents(ctx, evs, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range res {
		if e != nil {
			t.Fatalf("event %s: %v", evs[i].ID, e)
		}
	}
}

func device(id string, p relay.Platform) relay.Device {
	return relay.Device{Workspace: ws, User: user, ID: id, Platform: p, Token: "tok-" + id, App: app,
		UpdatedAt: time.Now().UTC().Truncate(time.Millisecond)}
}

func register(t *testing.T, b store.Directory, ds ...relay.Device) {
	t.Helper()
	for _, d := range ds {
		if _, err := b.RegisterDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
}

func alertOf(ev relay.Event) *relay.Alert {
	return &relay.Alert{EventID: ev.ID, Workspace: ev.Workspace, Type: ev.Type, Title: ev.Title, Body: ev.Body,
		Priority: ev.Priority, CollapseID: "c-" + ev.ID, ExpiresAt: ev.ExpiresAt}
}

// schedule adds ev, registers its devices and decides it with one pending
// job per device, due at due (zero: now).
func schedule(t *testing.T, b store.Backend, ev relay.Event, due time.Time, devs ...relay.Device) {
	t.Helper()
	add(t, b, ev)
	register(t, b, devs...)
	now := time.Now()
	var jobs []relay.Job
	for _, d := range devs {
		j := relay.Job{Event: ev.Key(), DeviceID: d.ID, Platform: d.Platform, App: d.App, State: relay.StatePending,
			ExpiresAt: ev.ExpiresAt, UpdatedAt: now, NextAt: due}
		if !due.IsZero() {
			j.State = relay.StateDeferred
		}
		jobs = append(jobs, j)
	}
	d := relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled, Plugins: []relay.PluginDecision{}}
	if err := b.Decide(ctx, ev.Key(), d, alertOf(ev), jobs); err != nil {
		t.Fatal(err)
	}
}

func lease(t *testing.T, b store.Schedule, lane, owner string, ttl time.Duration, n int) []store.Leased {
	t.Helper()
	got, _, err := b.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: owner, Now: time.Now(), TTL: ttl, Max: n})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// leaseAll leases until n jobs came or the deadline passed (a cluster
// backend may hand jobs out a little after they were scheduled).
func leaseAll(t *testing.T, b store.Schedule, lane, owner string, ttl time.Duration, n int, within time.Duration) []store.Leased {
	t.Helper()
	var all []store.Leased
	deadline := time.Now().Add(within)
	for len(all) < n && time.Now().Before(deadline) {
		got, _, err := b.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: owner, Now: time.Now(), TTL: ttl, Max: n - len(all), Wait: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
		if len(got) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return all
}

func ids(ls []store.Leased) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Job.Event.ID + "/" + l.Job.DeviceID
	}
	return out
}

func settle(t *testing.T, b store.Schedule, l store.Leased, state relay.DeliveryState, next time.Time, lastErr string) {
	t.Helper()
	j := l.Job
	j.State, j.NextAt, j.LastError, j.UpdatedAt = state, next, lastErr, time.Now()
	j.Attempts++
	if err := b.Settle(ctx, l, j); err != nil {
		t.Fatalf("settle %s: %v", ids([]store.Leased{l}), err)
	}
}

func testEventsIdempotent(t *testing.T, h Harness) {
	b := h.open(t)
	e1, e2 := event("evt-1", relay.PriorityHigh), event("evt-2", relay.PriorityNormal)
	res, err := b.AddEvents(ctx, []relay.Event{e1, e2, e1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != nil || res[1] != nil || !errors.Is(res[2], relay.ErrDuplicate) {
		t.Fatalf("results %v, want nil, nil, duplicate", res)
	}
	p := h.peer(t, b)
	res, err = p.AddEvents(ctx, []relay.Event{e2}, time.Now())
	if err != nil || !errors.Is(res[0], relay.ErrDuplicate) {
		t.Fatalf("second relay: %v %v, want duplicate", res, err)
	}
	rec, err := p.Event(ctx, e1.Key())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Event.Title != e1.Title || rec.Event.Data["account"] != "github" || !rec.Event.ExpiresAt.Equal(e1.ExpiresAt) || rec.Decision != nil {
		t.Fatalf("record %+v", rec)
	}
	if _, err := b.Event(ctx, relay.EventKey{Workspace: ws, ID: "nope"}); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("missing event: %v", err)
	}
}

func testEventsConcurrentDuplicates(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	const n = 20
	var accepted sync.Map
	var wg sync.WaitGroup
	for i := range 2 * n {
		s := b
		if i%2 == 1 {
			s = p
		}
		wg.Go(func() {
			e := event(fmt.Sprintf("evt-%d", i%n), relay.PriorityHigh)
			res, err := s.AddEvents(ctx, []relay.Event{e}, time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			if res[0] == nil {
				if _, dup := accepted.LoadOrStore(e.ID, true); dup {
					t.Errorf("%s accepted twice", e.ID)
				}
			} else if !errors.Is(res[0], relay.ErrDuplicate) {
				t.Error(res[0])
			}
		})
	}
	wg.Wait()
	for i := range n {
		if _, ok := accepted.Load(fmt.Sprintf("evt-%d", i)); !ok {
			t.Errorf("evt-%d never accepted", i)
		}
	}
}

func testDecideFirstWins(t *testing.T, h Harness) {
	b := h.open(t)
	e := event("evt-1", relay.PriorityHigh)
	d1, d2 := device("d-2", relay.PlatformIOS), device("d-1", relay.PlatformAndroid)
	schedule(t, b, e, time.Time{}, d1, d2)
	again := relay.Decision{Verdict: relay.VerdictSuppress, Reason: "late"}
	if err := h.peer(t, b).Decide(ctx, e.Key(), again, nil, nil); !errors.Is(err, relay.ErrConflict) {
		t.Fatalf("second decision: %v, want conflict", err)
	}
	rec, err := b.Event(ctx, e.Key())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Decision == nil || rec.Decision.Verdict != relay.VerdictDeliver || rec.Alert == nil || rec.Alert.CollapseID != "c-evt-1" {
		t.Fatalf("record %+v", rec)
	}
	if len(rec.Jobs) != 2 || rec.Jobs[0].DeviceID != "d-1" || rec.Jobs[1].DeviceID != "d-2" || rec.Jobs[0].App != app {
		t.Fatalf("jobs %+v, want d-1, d-2 with app", rec.Jobs)
	}
	if err := b.Decide(ctx, relay.EventKey{Workspace: ws, ID: "nope"}, again, nil, nil); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("unknown event: %v", err)
	}
}

// testAddDecided: events stored with their decision are decided at once
// (scheduled, never undecided); a duplicate keeps its first decision.
func testAddDecided(t *testing.T, h Harness) {
	b := h.open(t)
	dev := device("d-1", relay.PlatformIOS)
	register(t, b, dev)
	now := time.Now()
	deliver, quiet, later := event("deliver", relay.PriorityHigh), event("quiet", relay.PriorityNormal), event("later", relay.PriorityNormal)
	job := relay.Job{DeviceID: dev.ID, Platform: dev.Platform, App: dev.App, State: relay.StatePending, ExpiresAt: deliver.ExpiresAt, UpdatedAt: now}
	decided := []*store.Decided{
		{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled, Plugins: []relay.PluginDecision{}}, Alert: alertOf(deliver), Jobs: []relay.Job{job}},
		{Decision: relay.Decision{Verdict: relay.VerdictSuppress, Reason: relay.ReasonUserOptOut}},
		nil, // stored undecided
	}
	res, err := b.AddDecided(ctx, []relay.Event{deliver, quiet, later}, decided, now)
	if err != nil || len(res) != 3 || res[0] != nil || res[1] != nil || res[2] != nil {
		t.Fatalf("AddDecided = %v, %v", res, err)
	}
	rec, err := b.Event(ctx, deliver.Key())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Decision == nil || rec.Decision.Verdict != relay.VerdictDeliver || rec.Alert == nil || len(rec.Jobs) != 1 || rec.Jobs[0].Event != deliver.Key() {
		t.Fatalf("decided on accept: %+v", rec)
	}
	if rec, err := b.Event(ctx, quiet.Key()); err != nil || rec.Decision == nil || rec.Decision.Reason != relay.ReasonUserOptOut || len(rec.Jobs) != 0 {
		t.Fatalf("suppressed on accept: %+v, %v", rec, err)
	}
	undecided := undecidedIDs(t, h.peer(t, b), time.Now().Add(time.Minute))
	if !slices.Equal(undecided, []string{"later"}) {
		t.Fatalf("undecided %v, want [later]", undecided)
	}
	got := leaseAll(t, b, relay.Lane(app, relay.PlatformIOS), "r1", time.Minute, 1, 5*time.Second)
	if len(got) != 1 || got[0].Job.Event != deliver.Key() || got[0].Alert == nil || got[0].Device.Token != dev.Token || got[0].User != user {
		t.Fatalf("leased %+v, want the job decided on accept", got)
	}
	// A duplicate writes nothing: the first decision stays.
	res, err = b.AddDecided(ctx, []relay.Event{quiet}, []*store.Decided{decided[0]}, now)
	if err != nil || !errors.Is(res[0], relay.ErrDuplicate) {
		t.Fatalf("duplicate: %v, %v", res, err)
	}
	if rec, err := b.Event(ctx, quiet.Key()); err != nil || rec.Decision.Verdict != relay.VerdictSuppress || len(rec.Jobs) != 0 {
		t.Fatalf("duplicate changed the record: %+v, %v", rec, err)
	}
	if err := b.Decide(ctx, deliver.Key(), relay.Decision{Verdict: relay.VerdictSuppress, Reason: "late"}, nil, nil); !errors.Is(err, relay.ErrConflict) {
		t.Fatalf("deciding again: %v, want conflict", err)
	}
	// Stored tells stored events (decided or not) from others, in order.
	never := relay.EventKey{Workspace: ws, ID: "never-posted"}
	if got, err := h.peer(t, b).Stored(ctx, []relay.EventKey{later.Key(), never, deliver.Key(), quiet.Key()}); err != nil ||
		!slices.Equal(got, []bool{true, false, true, true}) {
		t.Fatalf("Stored = %v, %v; want [true false true true]", got, err)
	}
	if got, err := b.Stored(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Stored(nil) = %v, %v", got, err)
	}
}

// testAddDecidedBatch: a batch in no key order, with two events posted
// twice (an undecided one, then decided; a decided one twice): the first of
// each is stored, the undecided are handed out in post order, and each
// decided event's job is counted open once.
func testAddDecidedBatch(t *testing.T, h Harness) {
	b := h.open(t)
	dev := device("d-1", relay.PlatformIOS)
	register(t, b, dev)
	now := time.Now()
	decide := func(ev relay.Event) *store.Decided {
		return &store.Decided{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled, Plugins: []relay.PluginDecision{}}, Alert: alertOf(ev),
			Jobs: []relay.Job{{DeviceID: dev.ID, Platform: dev.Platform, App: dev.App, State: relay.StatePending, ExpiresAt: ev.ExpiresAt, UpdatedAt: now}}}
	}
	ids := []string{"u-9", "d-3", "u-1", "d-1", "u-5", "u-9", "d-2", "d-1"}
	var evs []relay.Event
	var ds []*store.Decided
	for i, id := range ids {
		ev := event(id, relay.PriorityHigh)
		evs = append(evs, ev)
		if strings.HasPrefix(id, "d-") || i == 5 {
			ds = append(ds, decide(ev))
		} else {
			ds = append(ds, nil)
		}
	}
	res, err := b.AddDecided(ctx, evs, ds, now)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range res {
		if dup := i == 5 || i == 7; dup != errors.Is(e, relay.ErrDuplicate) || (!dup && e != nil) {
			t.Fatalf("results %v, want duplicates at 5 and 7 only", res)
		}
	}
	if rec, err := b.Event(ctx, evs[0].Key()); err != nil || rec.Decision != nil {
		t.Fatalf("u-9: the first post (undecided) should win: %+v, %v", rec, err)
	}
	undecided := undecidedIDs(t, h.peer(t, b), time.Now().Add(time.Minute))
	if !slices.Equal(undecided, []string{"u-9", "u-1", "u-5"}) {
		t.Fatalf("undecided %v, want [u-9 u-1 u-5] (post order)", undecided)
	}
	var c store.OpenCounts
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err = h.peer(t, b).OpenJobs(ctx); err != nil {
			t.Fatal(err)
		}
		if c == (store.OpenCounts{High: 3}) || time.Now().After(deadline) {
			break
		}
	}
	if c != (store.OpenCounts{High: 3}) {
		t.Fatalf("open %+v, want 3 high (d-1, d-2, d-3)", c)
	}
}

func testUndecided(t *testing.T, h Harness) {
	b := h.open(t)
	for i := range 5 {
		add(t, b, event(fmt.Sprintf("evt-%d", i), relay.PriorityHigh))
	}
	d := relay.Decision{Verdict: relay.VerdictSuppress, Reason: relay.ReasonUserOptOut}
	if err := b.Decide(ctx, relay.EventKey{Workspace: ws, ID: "evt-2"}, d, nil, nil); err != nil {
		t.Fatal(err)
	}
	got := undecidedIDs(t, h.peer(t, b), time.Now().Add(time.Minute))
	if want := []string{"evt-0", "evt-1", "evt-3", "evt-4"}; !slices.Equal(got, want) {
		t.Fatalf("undecided %v, want %v (oldest first)", got, want)
	}
	if got = undecidedIDs(t, b, time.Now().Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("events received an hour ago: %v, want none", got)
	}
	stop := errors.New("stop")
	n := 0
	if err := b.Undecided(ctx, time.Now().Add(time.Minute), func(relay.Event) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("stopping walk: %v after %d", err, n)
	}
}

func testPruneEvents(t *testing.T, h Harness) {
	b := h.open(t)
	old := event("old", relay.PriorityHigh)
	old.OccurredAt = old.OccurredAt.Add(-2 * time.Hour)
	old.ExpiresAt = time.Now().Add(-time.Hour)
	open := event("open", relay.PriorityHigh)
	add(t, b, old)
	if err := b.Decide(ctx, old.Key(), relay.Decision{Verdict: relay.VerdictSuppress, Reason: "expired"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	schedule(t, b, open, time.Time{}, device("d-1", relay.PlatformIOS))
	n, err := b.PruneEvents(ctx, time.Now())
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	if _, err := b.Event(ctx, old.Key()); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("pruned event: %v", err)
	}
	add(t, b, old) // its id may be used again
	if _, err := b.Event(ctx, open.Key()); err != nil {
		t.Fatalf("open event pruned: %v", err)
	}
}

func testDevices(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	d2, d1 := device("d-2", relay.PlatformIOS), device("d-1", relay.PlatformAndroid)
	register(t, b, d2, d1)
	got, err := p.Devices(ctx, ws, user)
	if err != nil || len(got) != 2 || got[0].ID != "d-1" || got[1].ID != "d-2" || got[1].Token != "tok-d-2" {
		t.Fatalf("devices %+v %v", got, err)
	}
	d, err := p.Device(ctx, ws, user, "d-1")
	if err != nil || d.Platform != relay.PlatformAndroid || d.App != app {
		t.Fatalf("device %+v %v", d, err)
	}
	if removed, err := b.RemoveDeviceToken(ctx, ws, user, "d-1", "old-token"); err != nil || removed {
		t.Fatalf("remove with another token: %v %v", removed, err)
	}
	if removed, err := p.RemoveDeviceToken(ctx, ws, user, "d-1", "tok-d-1"); err != nil || !removed {
		t.Fatalf("remove with its token: %v %v", removed, err)
	}
	if err := b.DeleteDevice(ctx, ws, user, "d-2"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteDevice(ctx, ws, user, "d-2"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := p.Device(ctx, ws, user, "d-2"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("deleted device: %v", err)
	}
	if got, err := b.Devices(ctx, ws, "nobody"); err != nil || len(got) != 0 {
		t.Fatalf("no devices: %v %v", got, err)
	}
}

func testRegisterDeviceTakesToken(t *testing.T, h Harness) {
	b := h.open(t)
	d := device("d-1", relay.PlatformIOS)
	register(t, b, d)
	moved := d
	moved.User, moved.ID = "u-7", "phone"
	taken, err := h.peer(t, b).RegisterDevice(ctx, moved)
	if err != nil || len(taken) != 1 || taken[0].User != user || taken[0].ID != "d-1" {
		t.Fatalf("taken %+v %v", taken, err)
	}
	if _, err := b.Device(ctx, ws, user, "d-1"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("old holder kept the token: %v", err)
	}
	if got, err := b.Device(ctx, ws, "u-7", "phone"); err != nil || got.Token != d.Token {
		t.Fatalf("new holder %+v %v", got, err)
	}
}

// A user registering another user's token is refused and nothing
// changes; the same user's other device id gives it up; a move
// (RegisterDevice) leaves the old owner a notice, cleared when that
// device id registers again.
func testRegisterUserDeviceKeepsOthersToken(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	d := device("d-1", relay.PlatformIOS)
	d.Name = "Jane's iPhone"
	register(t, b, d)
	bob := d
	bob.User, bob.ID, bob.Name = "bob", "phone", ""
	taken, err := p.RegisterUserDevice(ctx, bob)
	var held *relay.TokenHeldError
	if !errors.As(err, &held) || !errors.Is(err, relay.ErrTokenHeld) || held.Holder.User != user || held.Holder.ID != "d-1" || taken != nil {
		t.Fatalf("bob registering the token: %v %v, want a TokenHeldError naming %s/d-1", taken, err, user)
	}
	if got, err := b.Device(ctx, ws, user, "d-1"); err != nil || got.Token != d.Token {
		t.Fatalf("owner lost the token: %+v %v", got, err)
	}
	if _, err := b.Device(ctx, ws, "bob", "phone"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("refused device stored: %v", err)
	}
	// Same user, new device id: the token follows without proof.
	same := d
	same.ID = "d-2"
	if taken, err := p.RegisterUserDevice(ctx, same); err != nil || len(taken) != 1 || taken[0].ID != "d-1" {
		t.Fatalf("same user's new device id: %v %v", taken, err)
	}
	if moves, err := b.DeviceMoves(ctx, ws, user); err != nil || len(moves) != 0 {
		t.Fatalf("a same-user move left a notice: %v %v", moves, err)
	}
	// A proven move (RegisterDevice) leaves a notice for the old owner.
	bob.UpdatedAt = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if taken, err := p.RegisterDevice(ctx, bob); err != nil || len(taken) != 1 || taken[0].User != user {
		t.Fatalf("move: %v %v", taken, err)
	}
	moves, err := b.DeviceMoves(ctx, ws, user)
	want := relay.DeviceMove{DeviceID: "d-2", Platform: relay.PlatformIOS, App: d.App, Name: "Jane's iPhone", MovedAt: bob.UpdatedAt}
	if err != nil || len(moves) != 1 || !moves[0].MovedAt.Equal(want.MovedAt) {
		t.Fatalf("moves %+v %v, want [%+v]", moves, err, want)
	}
	moves[0].MovedAt = want.MovedAt
	if moves[0] != want {
		t.Fatalf("move %+v, want %+v", moves[0], want)
	}
	if m, err := b.DeviceMoves(ctx, ws, "bob"); err != nil || len(m) != 0 {
		t.Fatalf("the new owner has notices: %v %v", m, err)
	}
	// Now bob holds it: the old owner cannot take it back without proof.
	if _, err := b.RegisterUserDevice(ctx, same); !errors.Is(err, relay.ErrTokenHeld) {
		t.Fatalf("taking it back: %v", err)
	}
	// The old owner registering d-2 again (a new token) clears the notice.
	same.Token = "another-token"
	register(t, b, same)
	if m, err := p.DeviceMoves(ctx, ws, user); err != nil || len(m) != 0 {
		t.Fatalf("notice kept after re-registration: %v %v", m, err)
	}
}

// One token moving between users' devices in a workspace of many: each
// move takes exactly the current holder, the other devices stay, and a
// token given up (new token, delete, removal) is free again.
func testTokenMovesAmongManyDevices(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	const n = 40
	dev := func(u, id, token string) relay.Device {
		d := device(id, relay.PlatformIOS)
		d.User, d.Token = u, token
		return d
	}
	for i := range n {
		register(t, b, dev(fmt.Sprintf("u-%02d", i), "phone", fmt.Sprintf("tok-%02d", i)))
	}
	const moving = "tok-moving"
	holder := ""
	for i, u := range []string{"u-03", "u-17", "u-03", "u-29", "u-17", "u-03"} {
		id := fmt.Sprintf("tablet-%d", i)
		taken, err := []store.Directory{b, p}[i%2].RegisterDevice(ctx, dev(u, id, moving))
		if err != nil {
			t.Fatalf("move %d to %s: %v", i, u, err)
		}
		var got []string
		for _, o := range taken {
			got = append(got, o.User+"/"+o.ID)
		}
		var want []string // the first registration takes nothing
		if holder != "" {
			want = []string{holder}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("move %d to %s took %v, want %v", i, u, got, want)
		}
		holder = u + "/" + id
		_, err = p.RegisterUserDevice(ctx, dev("u-39", "spare", moving))
		var held *relay.TokenHeldError
		if !errors.As(err, &held) || held.Holder.User+"/"+held.Holder.ID != holder {
			t.Fatalf("after move %d: another user registering the token: %v, want it held by %s", i, err, holder)
		}
	}
	for i := range n {
		u := fmt.Sprintf("u-%02d", i)
		ds, err := p.Devices(ctx, ws, u)
		if err != nil {
			t.Fatal(err)
		}
		var tokens []string
		for _, d := range ds {
			tokens = append(tokens, d.ID+"="+d.Token)
		}
		want := []string{"phone=" + fmt.Sprintf("tok-%02d", i)}
		if u == "u-03" {
			want = append(want, "tablet-5="+moving)
		}
		if !slices.Equal(tokens, want) {
			t.Fatalf("devices of %s: %v, want %v", u, tokens, want)
		}
	}
	// Given up three ways, the token is free each time.
	free := func(how string) {
		t.Helper()
		taken, err := b.RegisterUserDevice(ctx, dev("u-39", "spare", moving))
		if err != nil || len(taken) != 0 {
			t.Fatalf("after %s: registering the token took %v, %v; want it free", how, taken, err)
		}
		if taken, err := p.RegisterUserDevice(ctx, dev("u-39", "spare", "tok-spare")); err != nil || len(taken) != 0 {
			t.Fatalf("after %s: a new token for the spare: %v, %v", how, taken, err)
		}
		if taken, err := b.RegisterDevice(ctx, dev("u-03", "tablet-5", moving)); err != nil || len(taken) != 0 {
			t.Fatalf("after %s: the token back to u-03: %v, %v", how, taken, err)
		}
	}
	register(t, b, dev("u-03", "tablet-5", "tok-newer"))
	free("a new token")
	if err := p.DeleteDevice(ctx, ws, "u-03", "tablet-5"); err != nil {
		t.Fatal(err)
	}
	free("a delete")
	if ok, err := b.RemoveDeviceToken(ctx, ws, "u-03", "tablet-5", moving); err != nil || !ok {
		t.Fatalf("remove token: %v %v", ok, err)
	}
	free("a token removal")
}

// A pending proof is one per user, readable, and taken exactly once.
func testTokenProofSingleUse(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	if _, err := b.TokenProof(ctx, ws, user); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("no proof: %v", err)
	}
	if _, err := b.TakeTokenProof(ctx, ws, user); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("take no proof: %v", err)
	}
	exp := time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC)
	first := relay.TokenProof{Workspace: ws, User: user, DeviceID: "phone", TokenHash: relay.HashSecret("tok"), CodeHash: relay.HashSecret("c1"), ExpiresAt: exp}
	second := first
	second.CodeHash = relay.HashSecret("c2")
	for _, pr := range []relay.TokenProof{first, second} {
		if err := b.PutTokenProof(ctx, pr); err != nil {
			t.Fatal(err)
		}
	}
	got, err := p.TokenProof(ctx, ws, user)
	if err != nil || got.CodeHash != second.CodeHash || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("proof %+v %v, want the second", got, err)
	}
	if _, err := b.TokenProof(ctx, ws, "other"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("other user's proof: %v", err)
	}
	// Concurrent takes from two relays: exactly one gets it.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for _, s := range []store.Backend{b, p, b, p} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.TakeTokenProof(ctx, ws, user)
			switch {
			case err == nil && got.CodeHash == second.CodeHash && got.DeviceID == "phone" && got.TokenHash == first.TokenHash:
				wins.Add(1)
			case !errors.Is(err, relay.ErrNotFound):
				t.Errorf("take: %+v %v", got, err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d takes got the proof, want 1", wins.Load())
	}
	if _, err := b.TokenProof(ctx, ws, user); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("proof left after take: %v", err)
	}
}

func testSettingsAndPreferences(t *testing.T, h Harness) {
	b := h.open(t)
	if s, err := b.Settings(ctx, ws); err != nil || len(s) != 0 {
		t.Fatalf("no settings: %v %v", s, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.PutSettings(ctx, ws, map[string]relay.Setting{relay.TypeOTPReceived: relay.SettingEnforced}))
	must(b.PutSettings(ctx, ws, map[string]relay.Setting{relay.TypeAccountShared: relay.SettingDisabled}))
	s, err := h.peer(t, b).Settings(ctx, ws)
	must(err)
	if len(s) != 2 || s[relay.TypeOTPReceived] != relay.SettingEnforced || s[relay.TypeAccountShared] != relay.SettingDisabled {
		t.Fatalf("settings %v, want both merged", s)
	}
	must(b.PutPreferences(ctx, ws, user, map[string]bool{relay.TypeOTPReceived: false}))
	must(b.PutPreferences(ctx, ws, user, map[string]bool{relay.TypeAccountShared: true, relay.TypeOTPReceived: true}))
	pr, err := b.Preferences(ctx, ws, user)
	must(err)
	if len(pr) != 2 || !pr[relay.TypeOTPReceived] || !pr[relay.TypeAccountShared] {
		t.Fatalf("preferences %v", pr)
	}
}

func testPreferencesFromTwoRelays(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	types := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"}
	var wg sync.WaitGroup
	for i, typ := range types {
		s := b
		if i%2 == 1 {
			s = p
		}
		wg.Go(func() {
			if err := s.PutPreferences(ctx, ws, user, map[string]bool{typ: true}); err != nil {
				t.Error(err)
			}
			if err := s.PutSettings(ctx, ws, map[string]relay.Setting{typ: relay.SettingEnforced}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	pr, err := b.Preferences(ctx, ws, user)
	if err != nil || len(pr) != len(types) {
		t.Fatalf("preferences %v %v: concurrent writes from two relays were lost", pr, err)
	}
	st, err := p.Settings(ctx, ws)
	if err != nil || len(st) != len(types) {
		t.Fatalf("settings %v %v: concurrent writes from two relays were lost", st, err)
	}
}

func testLeasePriorityThenDue(t *testing.T, h Harness) {
	b := h.open(t)
	ios, android := device("d-ios", relay.PlatformIOS), device("d-android", relay.PlatformAndroid)
	lane := relay.Lane(app, relay.PlatformIOS)
	for i := range 3 {
		schedule(t, b, event(fmt.Sprintf("n%d", i), relay.PriorityNormal), time.Time{}, ios)
		time.Sleep(2 * time.Millisecond) // distinct due times
	}
	schedule(t, b, event("h0", relay.PriorityHigh), time.Time{}, ios, android)
	schedule(t, b, event("later", relay.PriorityHigh), time.Now().Add(time.Hour), ios)
	got := leaseAll(t, b, lane, "r1", time.Minute, 4, 5*time.Second)
	want := []string{"h0/d-ios", "n0/d-ios", "n1/d-ios", "n2/d-ios"}
	if !slices.Equal(ids(got), want) {
		t.Fatalf("leased %v, want %v (high first, then due order; nothing not due, nothing of another lane)", ids(got), want)
	}
	if more := lease(t, b, lane, "r1", time.Minute, 10); len(more) != 0 {
		t.Fatalf("leased again %v while leased or not due", ids(more))
	}
	if other := leaseAll(t, b, relay.Lane(app, relay.PlatformAndroid), "r1", time.Minute, 1, 5*time.Second); !slices.Equal(ids(other), []string{"h0/d-android"}) {
		t.Fatalf("android lane %v", ids(other))
	}
}

func testLeaseCarries(t *testing.T, h Harness) {
	b := h.open(t)
	d := device("d-1", relay.PlatformIOS)
	d.PublicKey = ""
	e := event("evt-1", relay.PriorityHigh)
	before := time.Now()
	schedule(t, b, e, time.Time{}, d)
	got := leaseAll(t, h.peer(t, b), relay.Lane(app, relay.PlatformIOS), "r2", time.Minute, 1, 5*time.Second)
	if len(got) != 1 {
		t.Fatalf("leased %v", ids(got))
	}
	l := got[0]
	if l.User != user || l.Alert == nil || l.Alert.CollapseID != "c-evt-1" || l.Device.Token != "tok-d-1" ||
		l.Job.App != app || l.Job.State != relay.StatePending || !l.Job.ExpiresAt.Equal(e.ExpiresAt) {
		t.Fatalf("lease %+v", l)
	}
	if l.AcceptedAt.Before(before.Add(-time.Second)) || l.AcceptedAt.After(time.Now()) {
		t.Fatalf("lease accepted at %v, want when the event was added (after %v)", l.AcceptedAt, before)
	}
	// Its end: the TTL after the request, or after the backend took it.
	if l.Until.Before(before.Add(time.Minute)) || l.Until.After(time.Now().Add(time.Minute)) {
		t.Fatalf("lease until %v, want a minute after it was asked for (after %v)", l.Until, before)
	}
	// A device removed after the decision leases with a zero device.
	schedule(t, b, event("evt-2", relay.PriorityHigh), time.Time{}, device("d-2", relay.PlatformIOS))
	if err := b.DeleteDevice(ctx, ws, user, "d-2"); err != nil {
		t.Fatal(err)
	}
	got = leaseAll(t, b, relay.Lane(app, relay.PlatformIOS), "r1", time.Minute, 1, 5*time.Second)
	if len(got) != 1 || got[0].Device.ID != "" || got[0].Job.DeviceID != "d-2" {
		t.Fatalf("lease of a removed device %+v", got)
	}
}

func testLeaseExclusive(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	const n = 60
	devs := []relay.Device{device("d-1", relay.PlatformIOS), device("d-2", relay.PlatformIOS)}
	for i := range n / 2 {
		schedule(t, b, event(fmt.Sprintf("evt-%02d", i), relay.PriorityNormal), time.Time{}, devs...)
	}
	lane := relay.Lane(app, relay.PlatformIOS)
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for w := range 4 {
		s, owner := b, fmt.Sprintf("r%d", w)
		if w%2 == 1 {
			s = p
		}
		wg.Go(func() {
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				got, _, err := s.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: owner, Now: time.Now(), TTL: time.Minute, Max: 7, Wait: 50 * time.Millisecond})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, id := range ids(got) {
					if o, dup := seen[id]; dup {
						t.Errorf("%s leased by %s and %s", id, o, owner)
					}
					seen[id] = owner
				}
				done := len(seen) == n
				mu.Unlock()
				if done {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d of %d jobs leased", len(seen), n)
	}
}

func testLeaseExpires(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	schedule(t, b, event("evt-1", relay.PriorityHigh), time.Time{}, device("d-1", relay.PlatformIOS))
	lane := relay.Lane(app, relay.PlatformIOS)
	first := leaseAll(t, b, lane, "dead-relay", time.Second, 1, 5*time.Second)
	if len(first) != 1 {
		t.Fatalf("leased %v", ids(first))
	}
	if got := lease(t, p, lane, "r2", time.Minute, 1); len(got) != 0 {
		t.Fatalf("leased %v while another relay holds it", ids(got))
	}
	// The lease ends: any relay may take the job.
	second := leaseAll(t, p, lane, "r2", time.Minute, 1, 10*time.Second)
	if len(second) != 1 || second[0].Job.DeviceID != "d-1" {
		t.Fatalf("after the lease ended: %v", ids(second))
	}
	j := first[0].Job
	j.State, j.UpdatedAt = relay.StateDelivered, time.Now()
	if err := b.Settle(ctx, first[0], j); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("settle of a lost lease: %v, want ErrLeaseLost", err)
	}
	settle(t, p, second[0], relay.StateDelivered, time.Time{}, "")
	rec, err := b.Event(ctx, j.Event)
	if err != nil || rec.Jobs[0].State != relay.StateDelivered || rec.Jobs[0].Attempts != 1 {
		t.Fatalf("record %+v %v", rec, err)
	}
}

// leaseOne opens a backend, schedules one high-priority event for one
// iPhone and leases its job (as relay "r1", for a minute).
func leaseOne(t *testing.T, h Harness) (b store.Backend, e relay.Event, lane string, got []store.Leased) {
	t.Helper()
	b = h.open(t)
	e = event("evt-1", relay.PriorityHigh)
	schedule(t, b, e, time.Time{}, device("d-1", relay.PlatformIOS))
	lane = relay.Lane(app, relay.PlatformIOS)
	got = leaseAll(t, b, lane, "r1", time.Minute, 1, 5*time.Second)
	if len(got) != 1 {
		t.Fatalf("leased %v", ids(got))
	}
	return b, e, lane, got
}

func testSettleRetryAndFinal(t *testing.T, h Harness) {
	b, e, lane, got := leaseOne(t, h)
	settle(t, b, got[0], relay.StatePending, time.Now().Add(700*time.Millisecond), "503 ServiceUnavailable")
	rec, err := b.Event(ctx, e.Key())
	if err != nil || rec.Jobs[0].Attempts != 1 || rec.Jobs[0].LastError != "503 ServiceUnavailable" || rec.Jobs[0].State != relay.StatePending {
		t.Fatalf("after retry: %+v %v", rec.Jobs, err)
	}
	if early := lease(t, b, lane, "r1", time.Minute, 1); len(early) != 0 {
		t.Fatalf("leased %v before its retry time", ids(early))
	}
	got = leaseAll(t, b, lane, "r1", time.Minute, 1, 10*time.Second)
	if len(got) != 1 || got[0].Job.Attempts != 1 {
		t.Fatalf("retry lease %+v", got)
	}
	settle(t, b, got[0], relay.StateDelivered, time.Time{}, "")
	rec, err = b.Event(ctx, e.Key())
	if err != nil || rec.Jobs[0].State != relay.StateDelivered || rec.Jobs[0].Attempts != 2 {
		t.Fatalf("after delivery: %+v %v", rec.Jobs, err)
	}
	if c, err := b.OpenJobs(ctx); err != nil || c.Total() != 0 {
		t.Fatalf("open jobs %+v %v, want none", c, err)
	}
	if more := lease(t, b, lane, "r1", time.Minute, 1); len(more) != 0 {
		t.Fatalf("delivered job leased again: %v", ids(more))
	}
}

// testSettleWithdrawDue: a delivered alert waiting for its expiry
// withdraw (relay.StateWithdrawDue) is an open job due at its NextAt, with
// its alert, that LaneStats does not count as waiting or expired.
func testSettleWithdrawDue(t *testing.T, h Harness) {
	b, e, lane, got := leaseOne(t, h)
	settle(t, b, got[0], relay.StateWithdrawDue, time.Now().Add(700*time.Millisecond), "")
	rec, err := b.Event(ctx, e.Key())
	if err != nil || rec.Jobs[0].State != relay.StateWithdrawDue || rec.Jobs[0].Attempts != 1 {
		t.Fatalf("after delivery: %+v %v", rec.Jobs, err)
	}
	if c, err := b.OpenJobs(ctx); err != nil || c.High != 1 || c.Total() != 1 {
		t.Fatalf("open jobs %+v %v, want the high-priority one", c, err)
	}
	stats, err := b.LaneStats(ctx, e.ExpiresAt.Add(time.Minute))
	if err != nil || len(stats) != 1 || stats[0].Expired != 0 || !stats[0].OldestOpen.IsZero() {
		t.Fatalf("lane stats past the expiry %+v %v: want no job waiting or expired", stats, err)
	}
	if early := lease(t, b, lane, "r1", time.Minute, 1); len(early) != 0 {
		t.Fatalf("leased %v before its withdraw was due", ids(early))
	}
	got = leaseAll(t, b, lane, "r1", time.Minute, 1, 10*time.Second)
	if len(got) != 1 || got[0].Job.State != relay.StateWithdrawDue || got[0].Alert == nil || got[0].Alert.CollapseID != "c-evt-1" {
		t.Fatalf("withdraw lease %+v", got)
	}
	l := got[0]
	j := l.Job
	j.State, j.NextAt, j.UpdatedAt = relay.StateDelivered, time.Time{}, time.Now()
	if err := b.Settle(ctx, l, j); err != nil {
		t.Fatal(err)
	}
	rec, err = b.Event(ctx, e.Key())
	if err != nil || rec.Jobs[0].State != relay.StateDelivered || rec.Jobs[0].Attempts != 1 {
		t.Fatalf("after the withdraw: %+v %v", rec.Jobs, err)
	}
	if c, err := b.OpenJobs(ctx); err != nil || c.Total() != 0 {
		t.Fatalf("open jobs %+v %v, want none", c, err)
	}
}

func testDeadLetters(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	lane := relay.Lane(app, relay.PlatformIOS)
	for _, id := range []string{"evt-1", "evt-2"} {
		schedule(t, b, event(id, relay.PriorityHigh), time.Time{}, device("d-1", relay.PlatformIOS))
	}
	got := leaseAll(t, b, lane, "r1", time.Minute, 2, 5*time.Second)
	if len(got) != 2 {
		t.Fatalf("leased %v", ids(got))
	}
	for _, l := range got {
		settle(t, b, l, relay.StateFailed, time.Time{}, "400 BadTopic")
	}
	dls, err := p.DeadLetters(ctx, "", 10)
	if err != nil || len(dls) != 2 {
		t.Fatalf("dead letters %+v %v", dls, err)
	}
	if dls[0].Event.ID != "evt-2" || dls[0].Reason != "400 BadTopic" || dls[0].Attempts != 1 || dls[0].DeviceID != "d-1" {
		t.Fatalf("newest dead letter %+v", dls[0])
	}
	page, err := b.DeadLetters(ctx, dls[0].ID, 10)
	if err != nil || len(page) != 1 || page[0].ID != dls[1].ID {
		t.Fatalf("page after %s: %+v %v", dls[0].ID, page, err)
	}
	j, err := p.ReplayDeadLetter(ctx, dls[1].ID, time.Now())
	if err != nil || j.Event.ID != "evt-1" || j.State != relay.StatePending || j.Attempts != 0 {
		t.Fatalf("replay %+v %v", j, err)
	}
	if _, err := b.ReplayDeadLetter(ctx, dls[1].ID, time.Now()); !errors.Is(err, store.ErrReplayed) {
		t.Fatalf("replay twice: %v", err)
	}
	if _, err := b.ReplayDeadLetter(ctx, "no-such-id", time.Now()); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("replay unknown: %v", err)
	}
	again := leaseAll(t, b, lane, "r1", time.Minute, 1, 5*time.Second)
	if !slices.Equal(ids(again), []string{"evt-1/d-1"}) {
		t.Fatalf("replayed job not leased: %v", ids(again))
	}
	dls, _ = b.DeadLetters(ctx, "", 10)
	if len(dls) != 2 || dls[1].ReplayedAt.IsZero() {
		t.Fatalf("replayed dead letter not marked: %+v", dls)
	}
}

func testCountsAndLaneStats(t *testing.T, h Harness) {
	b := h.open(t)
	ios, android := device("d-ios", relay.PlatformIOS), device("d-android", relay.PlatformAndroid)
	schedule(t, b, event("h", relay.PriorityHigh), time.Time{}, ios, android)
	schedule(t, b, event("n1", relay.PriorityNormal), time.Time{}, ios)
	schedule(t, b, event("n2", relay.PriorityNormal), time.Now().Add(time.Hour), ios)
	p := h.peer(t, b)
	var c store.OpenCounts
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err = p.OpenJobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if (c == store.OpenCounts{High: 2, Normal: 2}) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c != (store.OpenCounts{High: 2, Normal: 2}) {
		t.Fatalf("open %+v, want 2 high, 2 normal", c)
	}
	leaseAll(t, b, relay.Lane(app, relay.PlatformIOS), "r1", time.Minute, 1, 5*time.Second)
	stats, err := p.LaneStats(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	byLane := map[string]store.LaneStats{}
	for _, s := range stats {
		byLane[s.Lane] = s
	}
	is, an := byLane[relay.Lane(app, relay.PlatformIOS)], byLane[relay.Lane(app, relay.PlatformAndroid)]
	if is.High != 1 || is.Normal != 2 || is.Leased != 1 || an.High != 1 || an.Normal != 0 {
		t.Fatalf("lane stats %+v", stats)
	}
	if is.Due != 1 || is.OldestDue.IsZero() {
		t.Fatalf("ios lane: %d due (oldest %v), want 1 (one leased, one not due)", is.Due, is.OldestDue)
	}
}

// testLaneStatsAge: a lane's oldest open job counts whether or not it is
// due (a retry, a job parked behind an open breaker, a lease), from when
// its event was accepted; open jobs past their expiry are counted.
func testLaneStatsAge(t *testing.T, h Harness) {
	b := h.open(t)
	lane := relay.Lane(app, relay.PlatformIOS)
	ios := device("d-ios", relay.PlatformIOS)
	before := time.Now()
	old := event("old", relay.PriorityNormal)
	schedule(t, b, old, time.Now().Add(time.Hour), ios) // parked: due in an hour
	accepted := time.Now()
	schedule(t, b, event("new", relay.PriorityHigh), time.Now().Add(30*time.Minute), ios)
	stats, err := b.LaneStats(ctx, time.Now())
	if err != nil || len(stats) != 1 {
		t.Fatalf("lane stats %+v %v", stats, err)
	}
	s := stats[0]
	if s.Lane != lane || s.Due != 0 || !s.OldestDue.IsZero() {
		t.Fatalf("lane %+v: want nothing due", s)
	}
	if s.OldestOpen.Before(before.Add(-time.Second)) || s.OldestOpen.After(accepted) || s.Expired != 0 {
		t.Fatalf("oldest open %v, want when %q was accepted (between %v and %v); expired %d, want 0", s.OldestOpen, old.ID, before, accepted, s.Expired)
	}
	// Past the events' expiry (10 minutes), both jobs are counted expired.
	if stats, err = b.LaneStats(ctx, time.Now().Add(11*time.Minute)); err != nil || stats[0].Expired != 2 {
		t.Fatalf("11 minutes on: %+v %v, want 2 expired", stats, err)
	}
	// A leased job still waits.
	later := time.Now().Add(2 * time.Hour)
	var got []store.Leased
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
		got, _, err = b.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: "r1", Now: later, TTL: time.Minute, Max: 2, Wait: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) == 0 {
		t.Fatal("nothing leased")
	}
	if stats, err = b.LaneStats(ctx, later); err != nil || stats[0].OldestOpen.IsZero() {
		t.Fatalf("leased: %+v %v, want the oldest still counted", stats, err)
	}
}

func testAnswers(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 6 {
		s := b
		if i%2 == 1 {
			s = p
		}
		wg.Go(func() {
			a := relay.Answer{Event: relay.EventKey{Workspace: ws, ID: "evt-1"}, User: user, DeviceID: fmt.Sprintf("d-%d", i),
				Action: "approve", AnsweredAt: now}
			got, err := s.AnswerAction(ctx, a)
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case errors.Is(err, relay.ErrConflict):
				if got.Seq == 0 || got.Event.ID != "evt-1" {
					t.Errorf("conflict returns the stored answer, got %+v", got)
				}
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d answers won, want 1", wins)
	}
	for i := 2; i <= 4; i++ {
		a := relay.Answer{Event: relay.EventKey{Workspace: ws, ID: fmt.Sprintf("evt-%d", i)}, User: user, DeviceID: "d-1",
			Action: "deny", AnsweredAt: now.Add(time.Duration(i) * time.Second)}
		if _, err := b.AnswerAction(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	all, err := p.Answers(ctx, 0, 100)
	if err != nil || len(all) != 4 {
		t.Fatalf("answers %+v %v", all, err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatalf("sequence not increasing: %+v", all)
		}
	}
	page, err := b.Answers(ctx, all[1].Seq, 1)
	if err != nil || len(page) != 1 || page[0].Seq != all[2].Seq {
		t.Fatalf("page after %d: %+v %v", all[1].Seq, page, err)
	}
	n, err := b.PruneAnswers(ctx, now.Add(3*time.Second))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d %v, want 2", n, err)
	}
	rest, _ := p.Answers(ctx, 0, 100)
	if len(rest) != 2 || rest[0].Seq != all[2].Seq {
		t.Fatalf("after prune %+v", rest)
	}
	// Pruning the log does not forget that evt-1 was answered.
	if _, err := b.AnswerAction(ctx, relay.Answer{Event: relay.EventKey{Workspace: ws, ID: "evt-1"}, User: user, DeviceID: "d-9",
		Action: "deny", AnsweredAt: now}); !errors.Is(err, relay.ErrConflict) {
		t.Fatalf("answer after prune: %v, want conflict", err)
	}
}

// testRecentCounts: CountRecent counts and answers the counts including
// the event; old buckets leave their windows; Recent reads without
// counting.
func testRecentCounts(t *testing.T, h Harness) {
	b := h.open(t)
	now := time.Now().Truncate(time.Minute).Add(30 * time.Second)
	for i := 1; i <= 3; i++ {
		got, err := b.CountRecent(ctx, ws, user, relay.TypeIdentityVerification, fmt.Sprint("mfa-", i), now)
		if err != nil {
			t.Fatal(err)
		}
		if want := (store.RecentCounts{M1: i, M10: i, H1: i}); got[relay.TypeIdentityVerification] != want {
			t.Fatalf("count %d: got %+v, want %+v", i, got, want)
		}
	}
	// The last event counted again (its decision is retried) is not
	// counted twice.
	if got, err := b.CountRecent(ctx, ws, user, relay.TypeIdentityVerification, "mfa-3", now); err != nil ||
		got[relay.TypeIdentityVerification] != (store.RecentCounts{M1: 3, M10: 3, H1: 3}) {
		t.Fatalf("mfa-3 counted again: %+v, %v; want the counts unchanged", got, err)
	}
	// Another type is counted apart; the answer carries every type.
	got, err := b.CountRecent(ctx, ws, user, relay.TypeOTPReceived, "otp-1", now.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got[relay.TypeOTPReceived] != (store.RecentCounts{M1: 1, M10: 1, H1: 1}) ||
		got[relay.TypeIdentityVerification] != (store.RecentCounts{M1: 0, M10: 3, H1: 3}) {
		t.Fatalf("two minutes later: %+v", got)
	}
	if r, err := b.Recent(ctx, ws, user, now.Add(11*time.Minute)); err != nil ||
		r[relay.TypeIdentityVerification] != (store.RecentCounts{H1: 3}) {
		t.Fatalf("eleven minutes later: %+v %v", r, err)
	}
	if r, err := b.Recent(ctx, ws, user, now.Add(63*time.Minute)); err != nil || r != nil {
		t.Fatalf("past the hour: %+v %v", r, err)
	}
	if r, err := b.Recent(ctx, ws, "nobody", now); err != nil || r != nil {
		t.Fatalf("a user never counted: %+v %v", r, err)
	}
	if _, err := b.CountRecent(ctx, "", user, relay.TypeOTPReceived, "otp-2", now); err == nil {
		t.Fatal("empty workspace: no error")
	}
}

// testRecentCountsFromTwoRelays: concurrent counts from two relays are
// never lost and each call sees a distinct count (the push-bombing guard
// relies on exactly one decision seeing max+1).
func testRecentCountsFromTwoRelays(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	now := time.Now()
	const n = 8
	seen := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		s := b
		if i%2 == 1 {
			s = p
		}
		wg.Go(func() {
			got, err := s.CountRecent(ctx, ws, user, relay.TypeIdentityVerification, fmt.Sprint("mfa-", i), now)
			if err != nil {
				t.Error(err)
				return
			}
			seen <- got[relay.TypeIdentityVerification].M10
		})
	}
	wg.Wait()
	close(seen)
	var counts []int
	for c := range seen {
		counts = append(counts, c)
	}
	slices.Sort(counts)
	if want := []int{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(counts, want) {
		t.Fatalf("counts seen %v, want each of %v once", counts, want)
	}
	if r, err := b.Recent(ctx, ws, user, now); err != nil || r[relay.TypeIdentityVerification].M10 != n {
		t.Fatalf("total %+v %v, want %d", r, err, n)
	}
}

// testAnsweredAndCancel: Answered reads the first answer from any relay;
// an upstream cancel is a first answer like a device's, so it and a
// device's answer exclude each other.
func testAnsweredAndCancel(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	key := relay.EventKey{Workspace: ws, ID: "evt-c"}
	if _, err := p.Answered(ctx, key); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("no answer yet: %v", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	cancel := relay.Answer{Event: key, User: user, DeviceID: relay.CancelDevice, Action: relay.CancelAction, AnsweredAt: now, Cancelled: true}
	if _, err := b.AnswerAction(ctx, cancel); err != nil {
		t.Fatal(err)
	}
	got, err := p.Answered(ctx, key)
	if err != nil || !got.Cancelled || got.Action != relay.CancelAction || got.Seq == 0 {
		t.Fatalf("Answered after a cancel: %+v %v", got, err)
	}
	stored, err := p.AnswerAction(ctx, relay.Answer{Event: key, User: user, DeviceID: "d-1", Action: "approve", AnsweredAt: now})
	if !errors.Is(err, relay.ErrConflict) || !stored.Cancelled {
		t.Fatalf("answer after a cancel: %+v %v, want a conflict with the cancel", stored, err)
	}
}

// testDeviceLimitConcurrent registers 20 new devices at once, from two
// relays, for a user allowed 15 with 5 already: exactly 10 fit.
func testDeviceLimitConcurrent(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	const limit = 15
	for i := range 5 {
		if _, err := b.RegisterDeviceLimit(ctx, device(fmt.Sprintf("old-%d", i), relay.PlatformIOS), limit); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var ok, refused atomicCount
	for i := range 20 {
		s := b
		if i%2 == 1 {
			s = p
		}
		wg.Go(func() {
			_, err := s.RegisterDeviceLimit(ctx, device(fmt.Sprintf("new-%02d", i), relay.PlatformAndroid), limit)
			switch {
			case err == nil:
				ok.add()
			case errors.Is(err, store.ErrTooManyDevices):
				refused.add()
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	devs, err := b.Devices(ctx, ws, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != limit || ok.get() != 10 || refused.get() != 10 {
		t.Fatalf("%d devices (%d registered, %d refused), want %d", len(devs), ok.get(), refused.get(), limit)
	}
	// Re-registering one of them is fine; a new one is not, until one is
	// deleted.
	if _, err := p.RegisterDeviceLimit(ctx, device("old-1", relay.PlatformIOS), limit); err != nil {
		t.Fatalf("re-register at the limit: %v", err)
	}
	if _, err := p.RegisterDeviceLimit(ctx, device("one-more", relay.PlatformIOS), limit); !errors.Is(err, store.ErrTooManyDevices) {
		t.Fatalf("one more: %v, want ErrTooManyDevices", err)
	}
	if err := b.DeleteDevice(ctx, ws, user, "old-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RegisterDeviceLimit(ctx, device("one-more", relay.PlatformIOS), limit); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
}

type atomicCount struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCount) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCount) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// testPruneEventsForgetsAnswer: once an answered event is pruned, its id
// can be used again and the new event answered (issue 11: the answered
// mark outlived the event).
func testPruneEventsForgetsAnswer(t *testing.T, h Harness) {
	b := h.open(t)
	old := event("mfa-1", relay.PriorityHigh)
	old.OccurredAt = old.OccurredAt.Add(-2 * time.Hour)
	old.ExpiresAt = time.Now().Add(-time.Hour)
	add(t, b, old)
	if err := b.Decide(ctx, old.Key(), relay.Decision{Verdict: relay.VerdictSuppress, Reason: "expired"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	ans := relay.Answer{Event: old.Key(), User: user, DeviceID: "d-1", Action: "approve", AnsweredAt: time.Now().UTC().Add(-time.Hour)}
	if _, err := b.AnswerAction(ctx, ans); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PruneAnswers(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := b.PruneEvents(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	again := event("mfa-1", relay.PriorityHigh)
	add(t, b, again)
	ans.AnsweredAt = time.Now().UTC()
	ans.Action = "deny"
	got, err := b.AnswerAction(ctx, ans)
	if err != nil || got.Action != "deny" {
		t.Fatalf("answer to the reused id: %+v, %v", got, err)
	}
}

// eraseFixture gives user (in workspace ws) and other a device each,
// preferences, an event with an open job, one delivered, one dead letter
// and an answer, on a lane of its own (app "app-"+tag).
func eraseFixture(t *testing.T, b store.Backend, workspace, who, tag string) {
	t.Helper()
	dev := device("phone-"+tag, relay.PlatformIOS)
	dev.Workspace, dev.User, dev.App = workspace, who, "app-"+tag // a lane of its own
	if err := b.PutPreferences(ctx, workspace, who, map[string]bool{relay.TypeOTPReceived: false}); err != nil {
		t.Fatal(err)
	}
	lane := relay.Lane(dev.App, relay.PlatformIOS)
	for i, want := range []relay.DeliveryState{relay.StateDelivered, relay.StateFailed, relay.StatePending} {
		ev := event(fmt.Sprintf("evt-%s-%d", tag, i), relay.PriorityNormal)
		ev.Workspace, ev.User = workspace, who
		ev.Body = "secret of " + who
		schedule(t, b, ev, time.Time{}, dev)
		if want == relay.StatePending {
			continue
		}
		got := leaseAll(t, b, lane, "r1", time.Minute, 1, 5*time.Second)
		if len(got) != 1 {
			t.Fatalf("leased %v", ids(got))
		}
		settle(t, b, got[0], want, time.Time{}, "400 BadDeviceToken")
	}
	a := relay.Answer{Event: relay.EventKey{Workspace: workspace, ID: "evt-" + tag + "-0"}, User: who, DeviceID: dev.ID, Action: "approve", AnsweredAt: time.Now().UTC()}
	if _, err := b.AnswerAction(ctx, a); err != nil {
		t.Fatal(err)
	}
	// A spare phone whose token another user took (a move notice for
	// who), and a pending token proof of who's.
	spare := device("spare-"+tag, relay.PlatformAndroid)
	spare.Workspace, spare.User = workspace, who
	taker := spare
	taker.User, taker.ID = "taker-"+tag, "taken-"+tag
	register(t, b, spare, taker)
	if err := b.PutTokenProof(ctx, relay.TokenProof{Workspace: workspace, User: who, DeviceID: "new-" + tag,
		TokenHash: relay.HashSecret("t"), CodeHash: relay.HashSecret("c"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// user.recent counters (their key names the user).
	if _, err := b.CountRecent(ctx, workspace, who, relay.TypeIdentityVerification, "mfa-"+tag, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// mentions returns the entries of dump that contain s.
func mentions(dump []string, s string) []string {
	var out []string
	for _, e := range dump {
		if strings.Contains(e, s) {
			out = append(out, e)
		}
	}
	return out
}

// tokenOf is how the jetstream backend writes a key part (base64url).
func tokenOf(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// testEraseUser erases one user of a workspace: nothing of theirs is left
// (and a scan of the raw store finds no trace), the other user keeps all.
func testEraseUser(t *testing.T, h Harness) {
	b := h.open(t)
	const gone, stays = "leaver-7f3a", "stayer-2b9c"
	eraseFixture(t, b, ws, gone, "g")
	eraseFixture(t, b, ws, stays, "s")
	before, err := b.OpenJobs(ctx)
	if err != nil || before.Total() != 2 {
		t.Fatalf("open jobs %+v %v, want 2", before, err)
	}
	got, err := b.Erase(ctx, ws, gone)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Erased{Devices: 1, Preferences: 1, Events: 3, Answers: 1, DeadLetters: 1}
	if got != want {
		t.Fatalf("erased %+v, want %+v", got, want)
	}
	if devs, _ := b.Devices(ctx, ws, gone); len(devs) != 0 {
		t.Errorf("devices left: %+v", devs)
	}
	if p, _ := b.Preferences(ctx, ws, gone); len(p) != 0 {
		t.Errorf("preferences left: %+v", p)
	}
	for i := range 3 {
		if _, err := b.Event(ctx, relay.EventKey{Workspace: ws, ID: fmt.Sprintf("evt-g-%d", i)}); !errors.Is(err, relay.ErrNotFound) {
			t.Errorf("event evt-g-%d: %v", i, err)
		}
	}
	answers, _ := b.Answers(ctx, 0, 100)
	dls, _ := b.DeadLetters(ctx, "", 100)
	if len(answers) != 1 || answers[0].User != stays || len(dls) != 1 || dls[0].Event.ID != "evt-s-1" {
		t.Errorf("answers %+v, dead letters %+v: want only the other user's", answers, dls)
	}
	if after, _ := b.OpenJobs(ctx); after.Total() != 1 {
		t.Errorf("open jobs after erase %+v, want 1", after)
	}
	// The schedule hands out only the other user's job.
	if leased := leaseAll(t, b, relay.Lane("app-g", relay.PlatformIOS), "r1", time.Minute, 1, 300*time.Millisecond); len(leased) != 0 {
		t.Errorf("erased job leased: %v", ids(leased))
	}
	if leased := leaseAll(t, b, relay.Lane("app-s", relay.PlatformIOS), "r1", time.Minute, 1, 5*time.Second); !slices.Equal(ids(leased), []string{"evt-s-2/phone-s"}) {
		t.Errorf("leased after erase: %v", ids(leased))
	}
	if d, _ := b.Devices(ctx, ws, stays); len(d) != 1 {
		t.Errorf("the other user's devices: %+v", d)
	}
	if h.Dump != nil {
		dump := h.Dump(t, b)
		for _, s := range []string{gone, tokenOf(gone), "secret of " + gone, "phone-g", tokenOf("phone-g"), "evt-g-", tokenOf("evt-g-0"), tokenOf("spare-g"), "new-g"} {
			if m := mentions(dump, s); len(m) > 0 {
				t.Errorf("%q still in the store: %q", s, m)
			}
		}
		if len(mentions(dump, "secret of "+stays)) == 0 {
			t.Errorf("the dump misses the other user: it proves nothing")
		}
	}
	// Erasing again finds nothing.
	if again, err := b.Erase(ctx, ws, gone); err != nil || again != (store.Erased{}) {
		t.Errorf("erase again: %+v %v", again, err)
	}
}

// testEraseWorkspace erases a whole workspace, settings too; another
// workspace keeps everything.
func testEraseWorkspace(t *testing.T, h Harness) {
	b := h.open(t)
	eraseFixture(t, b, "gone-ws", "u1", "a")
	eraseFixture(t, b, "gone-ws", "u2", "b")
	eraseFixture(t, b, "kept-ws", "u1", "c")
	if err := b.PutSettings(ctx, "gone-ws", map[string]relay.Setting{relay.TypeOTPReceived: relay.SettingEnforced}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Erase(ctx, "gone-ws", "")
	if err != nil {
		t.Fatal(err)
	}
	want := store.Erased{Devices: 4, Preferences: 2, Settings: 1, Events: 6, Answers: 2, DeadLetters: 2} // with the takers'
	if got != want {
		t.Fatalf("erased %+v, want %+v", got, want)
	}
	if s, _ := b.Settings(ctx, "gone-ws"); len(s) != 0 {
		t.Errorf("settings left: %+v", s)
	}
	if d, _ := b.Devices(ctx, "kept-ws", "u1"); len(d) != 1 {
		t.Errorf("other workspace's devices: %+v", d)
	}
	if h.Dump != nil {
		dump := h.Dump(t, b)
		for _, s := range []string{"gone-ws", tokenOf("gone-ws")} {
			if m := mentions(dump, s); len(m) > 0 {
				t.Errorf("%q still in the store: %q", s, m)
			}
		}
	}
}

// testPruneDeadLettersAndDevices: retention of dead letters (by failure
// time) and inactive devices (by last registration).
func testPruneDeadLettersAndDevices(t *testing.T, h Harness) {
	b := h.open(t)
	eraseFixture(t, b, ws, user, "x") // one dead letter
	if n, err := b.PruneDeadLetters(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruned %d recent dead letters, %v", n, err)
	}
	if n, err := b.PruneDeadLetters(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("pruned %d dead letters, %v; want 1", n, err)
	}
	if dls, _ := b.DeadLetters(ctx, "", 10); len(dls) != 0 {
		t.Fatalf("dead letters left: %+v", dls)
	}
	old := device("old", relay.PlatformAndroid)
	old.UpdatedAt = time.Now().Add(-48 * time.Hour).UTC()
	register(t, b, old, device("fresh", relay.PlatformAndroid))
	n, err := b.PruneDevices(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d devices, %v; want 1", n, err)
	}
	devs, _ := b.Devices(ctx, ws, user)
	var names []string
	for _, d := range devs {
		names = append(names, d.ID)
	}
	if !slices.Equal(names, []string{"fresh", "phone-x"}) {
		t.Fatalf("devices left %v", names)
	}
	// A pruned device's place under the device limit is free again.
	if _, err := b.RegisterDeviceLimit(ctx, device("new", relay.PlatformAndroid), 3); err != nil {
		t.Fatalf("register after prune: %v", err)
	}
}

func testAuditLog(t *testing.T, h Harness) {
	b := h.open(t)
	p := h.peer(t, b)
	now := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := b.AppendAudit(ctx, relay.AuditEntry{Time: now, Actor: relay.Actor{Kind: relay.ActorSystem}}); err == nil || !strings.Contains(err.Error(), "action") {
		t.Fatalf("entry without action: %v, want an error naming action", err)
	}
	if _, err := b.Audit(ctx, store.AuditFilter{}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("no limit: %v, want an error naming limit", err)
	}
	if got, err := b.Audit(ctx, store.AuditFilter{Limit: 10}); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty log: %#v %v, want an empty slice", got, err)
	}
	entries := []relay.AuditEntry{
		{Time: now, Actor: relay.SocketActor(1000, 42), Action: relay.AuditSettingsPut, Workspace: ws,
			Before: json.RawMessage(`{"otp_received":"enabled"}`), After: json.RawMessage(`{"otp_received":"enforced"}`)},
		{Time: now.Add(time.Second), Actor: relay.Actor{Kind: relay.ActorApp, Subject: "admin-1", Workspace: ws, Role: "admin"},
			Action: relay.AuditPreferencesPut, Workspace: ws, User: user, After: json.RawMessage(`{"otp_received":false}`)},
		{Time: now.Add(2 * time.Second), Actor: relay.SocketActor(0, 7), Action: relay.AuditDeviceDelete, Workspace: "other", User: user, Target: "d-1"},
		{Time: now.Add(3 * time.Second), Actor: relay.Actor{Kind: relay.ActorSystem}, Action: relay.AuditPluginLoad, Target: "quiet"},
	}
	var seqs []uint64
	for i, e := range entries {
		s := b
		if i%2 == 1 {
			s = p // both relays append to one log
		}
		got, err := s.AppendAudit(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) > 0 && got.Seq <= seqs[len(seqs)-1] {
			t.Fatalf("seq %d after %d: not increasing", got.Seq, seqs[len(seqs)-1])
		}
		seqs = append(seqs, got.Seq)
	}
	all, err := p.Audit(ctx, store.AuditFilter{Limit: 100})
	if err != nil || len(all) != 4 {
		t.Fatalf("audit %+v %v", all, err)
	}
	for i, e := range all { // newest first, stored as given
		want := entries[3-i]
		want.Seq = seqs[3-i]
		if e.Seq != want.Seq || !e.Time.Equal(want.Time) || e.Action != want.Action || e.Target != want.Target ||
			e.Actor.Kind != want.Actor.Kind || e.Actor.Subject != want.Actor.Subject || string(e.Before) != string(want.Before) ||
			string(e.After) != string(want.After) {
			t.Fatalf("entry %d = %+v, want %+v", i, e, want)
		}
	}
	if a := all[3].Actor; a.UID == nil || *a.UID != 1000 || a.PID == nil || *a.PID != 42 {
		t.Fatalf("socket actor %+v, want uid 1000 pid 42", a)
	}
	if a := all[1].Actor; a.UID == nil || *a.UID != 0 {
		t.Fatalf("root's uid 0 must survive: %+v", a)
	}
	for _, tc := range []struct {
		f    store.AuditFilter
		want []uint64
	}{
		{store.AuditFilter{Workspace: ws, Limit: 10}, []uint64{seqs[1], seqs[0]}},
		{store.AuditFilter{User: user, Limit: 10}, []uint64{seqs[2], seqs[1]}},
		{store.AuditFilter{Action: relay.AuditSettingsPut, Limit: 10}, []uint64{seqs[0]}},
		{store.AuditFilter{Since: now.Add(2 * time.Second), Limit: 10}, []uint64{seqs[3], seqs[2]}},
		{store.AuditFilter{Before: seqs[2], Limit: 1}, []uint64{seqs[1]}},
		{store.AuditFilter{Limit: 2}, []uint64{seqs[3], seqs[2]}},
	} {
		got, err := b.Audit(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var gs []uint64
		for _, e := range got {
			gs = append(gs, e.Seq)
		}
		if !slices.Equal(gs, tc.want) {
			t.Errorf("filter %+v: seqs %v, want %v", tc.f, gs, tc.want)
		}
	}
	n, err := b.PruneAudit(ctx, now.Add(2*time.Second))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d %v, want 2", n, err)
	}
	rest, err := p.Audit(ctx, store.AuditFilter{Limit: 10})
	if err != nil || len(rest) != 2 || rest[1].Seq != seqs[2] {
		t.Fatalf("after prune %+v %v", rest, err)
	}
	// Sequence numbers keep growing after a prune.
	e, err := b.AppendAudit(ctx, relay.AuditEntry{Time: now.Add(4 * time.Second), Actor: relay.Actor{Kind: relay.ActorSystem}, Action: relay.AuditPluginUnload})
	if err != nil || e.Seq <= seqs[3] {
		t.Fatalf("append after prune: %+v %v", e, err)
	}
	// An erasure drops the entries about the user, then the workspace's.
	for _, u := range []string{user, user, "other", ""} {
		if _, err := b.AppendAudit(ctx, relay.AuditEntry{Time: now.Add(5 * time.Second), Actor: relay.SocketActor(0, 1),
			Action: relay.AuditPreferencesPut, Workspace: ws, User: u}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := p.EraseAudit(ctx, ws, user); err != nil || n != 2 {
		t.Fatalf("erase user: %d %v, want 2", n, err)
	}
	if got, err := b.Audit(ctx, store.AuditFilter{Workspace: ws, Limit: 10}); err != nil || len(got) != 2 || got[0].User != "" || got[1].User != "other" {
		t.Fatalf("after erasing %s: %+v %v", user, got, err)
	}
	if n, err := b.EraseAudit(ctx, ws, ""); err != nil || n != 2 {
		t.Fatalf("erase workspace: %d %v, want 2", n, err)
	}
	if got, err := p.Audit(ctx, store.AuditFilter{Limit: 10}); err != nil || len(got) != 3 {
		t.Fatalf("after erasing %s: %+v %v, want the 3 entries of other workspaces", ws, got, err)
	}
}
