package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	bbolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		// The crash child never returns from its test; skip leak checks.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// openTest opens a store in a fresh directory and closes it at cleanup.
func openTest(tb testing.TB) *Store {
	tb.Helper()
	return openAt(tb, filepath.Join(tb.TempDir(), "relay.db"))
}

func openAt(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Open(path, Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			tb.Error(err)
		}
	})
	return s
}

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// farFuture is after every test's receive times: Undecided walks all.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

func ev(ws, id string) relay.Event {
	return relay.Event{
		ID: id, Workspace: ws, User: "u-42", Type: relay.TypeOTPReceived,
		Title: "Code for GitHub", Body: "Tap to copy",
		Data:    map[string]string{"account": "github"},
		Actions: []string{"approve", "deny"}, Priority: relay.PriorityHigh,
		OccurredAt: t0, ExpiresAt: t0.Add(5 * time.Minute),
	}
}

func mustAdd(tb testing.TB, s *Store, events ...relay.Event) []error {
	tb.Helper()
	res, err := s.AddEvents(context.Background(), events, t0.Add(time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	if len(res) != len(events) {
		tb.Fatalf("got %d results for %d events", len(res), len(events))
	}
	return res
}

func TestAddEventsAndEvent(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	e := ev("acme", "evt-1")
	if res := mustAdd(t, s, e); res[0] != nil {
		t.Fatalf("add: %v", res[0])
	}
	rec, err := s.Event(ctx, e.Key())
	if err != nil {
		t.Fatal(err)
	}
	want := &store.Record{Event: e, ReceivedAt: t0.Add(time.Second)}
	if !reflect.DeepEqual(rec, want) {
		t.Fatalf("record:\n got %+v\nwant %+v", rec, want)
	}
	_, err = s.Event(ctx, relay.EventKey{Workspace: "acme", ID: "nope"})
	if !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("missing event: got %v, want ErrNotFound", err)
	}
	// A key that is a prefix of another must not match it.
	_, err = s.Event(ctx, relay.EventKey{Workspace: "acme", ID: "evt"})
	if !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("prefix key: got %v, want ErrNotFound", err)
	}
}

func TestAddEventsDuplicates(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a, b := ev("acme", "a"), ev("acme", "b")
	a2 := a
	a2.Title = "second"
	otherWS := ev("other", "a")
	res := mustAdd(t, s, a, b, a2, otherWS)
	want := []error{nil, nil, relay.ErrDuplicate, nil}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("results: got %v, want %v", res, want)
	}
	rec, err := s.Event(ctx, a.Key())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Event.Title != a.Title {
		t.Fatalf("first of a duplicate pair must win: title %q", rec.Event.Title)
	}
	res = mustAdd(t, s, ev("acme", "c"), a, otherWS)
	want = []error{nil, relay.ErrDuplicate, relay.ErrDuplicate}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("results across calls: got %v, want %v", res, want)
	}
	// Only the three first occurrences plus c are undecided, once each.
	var ids []string
	if err := s.Undecided(ctx, farFuture, func(e relay.Event) error { ids = append(ids, e.Key().String()); return nil }); err != nil {
		t.Fatal(err)
	}
	if w := []string{"acme/a", "acme/b", "other/a", "acme/c"}; !slices.Equal(ids, w) {
		t.Fatalf("undecided: got %v, want %v", ids, w)
	}
}

func TestAddEventsInvalidKeys(t *testing.T) {
	s := openTest(t)
	res := mustAdd(t, s, ev("acme", "ok"), ev("acme", "bad\x00id"), ev("", "x"), ev("acme", strings.Repeat("x", maxPartLen+1)))
	if res[0] != nil {
		t.Fatalf("valid event: %v", res[0])
	}
	for i, frag := range []string{"must not contain NUL", "workspace: must not be empty", "longer than"} {
		if err := res[i+1]; err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("event %d: got %v, want error containing %q", i+1, err, frag)
		}
	}
	// Nothing valid at all: no commit, per-event errors only.
	res = mustAdd(t, s, ev("a\x00b", "x"))
	if res[0] == nil || !strings.Contains(res[0].Error(), "workspace") {
		t.Fatalf("got %v", res[0])
	}
	if res := mustAdd(t, s); len(res) != 0 {
		t.Fatalf("empty call: %v", res)
	}
}

func TestAddEventsConcurrent(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const workers, calls, per = 50, 10, 5
	var (
		mu       sync.Mutex
		accepted = map[string]int{}
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for c := range calls {
				var batch []relay.Event
				for i := range per {
					batch = append(batch, ev("acme", fmt.Sprintf("w%d-c%d-%d", w, c, i)))
				}
				// Every worker also races for the same shared ids.
				batch = append(batch, ev("acme", fmt.Sprintf("shared-%d", c)))
				res, err := s.AddEvents(ctx, batch, t0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for i, r := range res {
					switch {
					case r == nil:
						accepted[batch[i].ID]++
					case errors.Is(r, relay.ErrDuplicate) && strings.HasPrefix(batch[i].ID, "shared-"):
					default:
						t.Errorf("%s: %v", batch[i].ID, r)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if want := workers*calls*per + calls; len(accepted) != want {
		t.Fatalf("accepted %d distinct ids, want %d", len(accepted), want)
	}
	for id, n := range accepted {
		if n != 1 {
			t.Errorf("%s accepted %d times", id, n)
		}
		if _, err := s.Event(ctx, relay.EventKey{Workspace: "acme", ID: id}); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	n := 0
	if err := s.Undecided(ctx, farFuture, func(relay.Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(accepted) {
		t.Fatalf("undecided has %d, want %d", n, len(accepted))
	}
}

func job(key relay.EventKey, dev string, st relay.DeliveryState) relay.Job {
	return relay.Job{
		Event: key, DeviceID: dev, Platform: relay.PlatformIOS, State: st,
		ExpiresAt: t0.Add(5 * time.Minute), UpdatedAt: t0,
	}
}

func openJobs(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			j, err := decodeJob(k, v)
			if place, _ := jobPlace(v); place != nil {
				out = append(out, j.Event.String()+"#"+j.DeviceID+":"+string(j.State))
			}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecideErrors(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	e := ev("acme", "e")
	mustAdd(t, s, e)
	d := relay.Decision{Verdict: relay.VerdictDeliver}
	tests := []struct {
		name string
		key  relay.EventKey
		jobs []relay.Job
		want string
	}{
		{"unknown event", relay.EventKey{Workspace: "acme", ID: "nope"}, nil, "not found"},
		{"nul in id", relay.EventKey{Workspace: "acme", ID: "a\x00"}, nil, "must not contain NUL"},
		{"other event's job", e.Key(), []relay.Job{job(relay.EventKey{Workspace: "acme", ID: "x"}, "p", relay.StatePending)}, "not the decided event"},
		{"empty device", e.Key(), []relay.Job{job(e.Key(), "", relay.StatePending)}, "device_id: must not be empty"},
		{"device twice", e.Key(), []relay.Job{job(e.Key(), "p", relay.StatePending), job(e.Key(), "p", relay.StatePending)}, "appears twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Decide(ctx, tc.key, d, nil, tc.jobs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	if err := s.Decide(ctx, relay.EventKey{Workspace: "acme", ID: "nope"}, d, nil, nil); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	// Failed decisions left e undecided and without jobs.
	rec, err := s.Event(ctx, e.Key())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Decision != nil || len(rec.Jobs) != 0 {
		t.Fatalf("record changed: %+v", rec)
	}
}

func TestUndecidedOrderAndWalks(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const n = 3*walkChunk + 7
	var want []string
	for i := 0; i < n; i += 10 {
		var batch []relay.Event
		for j := i; j < min(i+10, n); j++ {
			// Ids sort differently from insertion order.
			id := fmt.Sprintf("%05d", (j*7919)%100000)
			batch = append(batch, ev("acme", id))
			want = append(want, id)
		}
		mustAdd(t, s, batch...)
	}
	// Decide every third event while walking: fn may write.
	var got []string
	err := s.Undecided(ctx, farFuture, func(e relay.Event) error {
		got = append(got, e.ID)
		if len(got)%3 == 0 {
			return s.Decide(ctx, e.Key(), relay.Decision{Verdict: relay.VerdictSuppress}, nil, nil)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("undecided order: got %d ids, want %d (first %v vs %v)", len(got), len(want), got[:5], want[:5])
	}
	var left []string
	for i, id := range want {
		if (i+1)%3 != 0 {
			left = append(left, id)
		}
	}
	got = got[:0]
	stop := errors.New("stop")
	err = s.Undecided(ctx, farFuture, func(e relay.Event) error {
		got = append(got, e.ID)
		if len(got) == walkChunk+1 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("fn error: got %v, want it returned as is", err)
	}
	if !slices.Equal(got, left[:walkChunk+1]) {
		t.Fatalf("second walk order wrong")
	}
	cctx, cancel := context.WithCancel(ctx)
	calls := 0
	err = s.Undecided(cctx, farFuture, func(relay.Event) error { calls++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("canceled walk: err %v after %d calls", err, calls)
	}
}

func TestDevices(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	dev := func(user, id, token string) relay.Device {
		return relay.Device{Workspace: "acme", User: user, ID: id, Platform: relay.PlatformIOS, Token: token,
			App: "demo", Environment: relay.EnvironmentSandbox, Name: "phone", UpdatedAt: t0}
	}
	for _, d := range []relay.Device{dev("u1", "z", "t1"), dev("u1", "a", "t2"), dev("u10", "a", "t3"), dev("u1", "a", "t4")} {
		if err := s.PutDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Device(ctx, "acme", "u1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := dev("u1", "a", "t4"); !reflect.DeepEqual(got, want) {
		t.Fatalf("device: got %+v, want %+v", got, want)
	}
	list, err := s.Devices(ctx, "acme", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "a" || list[1].ID != "z" {
		t.Fatalf("devices of u1 (not u10): %+v", list)
	}
	if list, err := s.Devices(ctx, "acme", "nobody"); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("no devices: %v %v", list, err)
	}
	if _, err := s.Device(ctx, "acme", "u1", "nope"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("missing device: %v", err)
	}

	removed, err := s.RemoveDeviceToken(ctx, "acme", "u1", "a", "t2") // stale token
	if err != nil || removed {
		t.Fatalf("stale token: removed %v err %v", removed, err)
	}
	removed, err = s.RemoveDeviceToken(ctx, "acme", "u1", "a", "t4")
	if err != nil || !removed {
		t.Fatalf("current token: removed %v err %v", removed, err)
	}
	removed, err = s.RemoveDeviceToken(ctx, "acme", "u1", "a", "t4")
	if err != nil || removed {
		t.Fatalf("absent device: removed %v err %v", removed, err)
	}
	if err := s.DeleteDevice(ctx, "acme", "u1", "z"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDevice(ctx, "acme", "u1", "z"); !errors.Is(err, relay.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if list, _ := s.Devices(ctx, "acme", "u1"); len(list) != 0 {
		t.Fatalf("devices left: %+v", list)
	}
	if err := s.PutDevice(ctx, dev("u\x00", "a", "t")); err == nil || !strings.Contains(err.Error(), "user") {
		t.Fatalf("NUL in user: %v", err)
	}
	if _, err := s.Device(ctx, "acme", "", "a"); err == nil || !strings.Contains(err.Error(), "user: must not be empty") {
		t.Fatalf("empty user: %v", err)
	}
}

// TestRemoveDeviceTokenRace: a re-registration racing a token removal
// always leaves the device registered with its new token.
func TestRemoveDeviceTokenRace(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for i := range 50 {
		id := fmt.Sprintf("d%d", i)
		old := relay.Device{Workspace: "acme", User: "u", ID: id, Platform: relay.PlatformAndroid, Token: "old"}
		if err := s.PutDevice(ctx, old); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			nd := old
			nd.Token = "new"
			if err := s.PutDevice(ctx, nd); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := s.RemoveDeviceToken(ctx, "acme", "u", id, "old"); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		d, err := s.Device(ctx, "acme", "u", id)
		if err != nil || d.Token != "new" {
			t.Fatalf("round %d: device %+v err %v, want token new", i, d, err)
		}
	}
}

func TestSettingsAndPreferences(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if m, err := s.Settings(ctx, "acme"); err != nil || m == nil || len(m) != 0 {
		t.Fatalf("empty settings: %v %v", m, err)
	}
	in := map[string]relay.Setting{relay.TypeOTPReceived: relay.SettingEnforced, relay.TypeAccountShared: relay.SettingDisabled}
	if err := s.PutSettings(ctx, "acme", in); err != nil {
		t.Fatal(err)
	}
	in[relay.TypeOTPReceived] = relay.SettingDisabled // not retained
	if err := s.PutSettings(ctx, "acme", map[string]relay.Setting{relay.TypeAccountShared: relay.SettingEnabled}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Settings(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]relay.Setting{relay.TypeOTPReceived: relay.SettingEnforced, relay.TypeAccountShared: relay.SettingEnabled}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("settings: got %v, want %v", got, want)
	}
	err = s.PutSettings(ctx, "acme", map[string]relay.Setting{relay.TypeOTPReceived: "on"})
	if err == nil || !strings.Contains(err.Error(), `setting "on"`) {
		t.Fatalf("bad setting: %v", err)
	}
	if m, _ := s.Settings(ctx, "other"); len(m) != 0 {
		t.Fatalf("other workspace: %v", m)
	}

	if err := s.PutPreferences(ctx, "acme", "u1", map[string]bool{"a": false, "b": true}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPreferences(ctx, "acme", "u1", map[string]bool{"b": false}); err != nil {
		t.Fatal(err)
	}
	p, err := s.Preferences(ctx, "acme", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, map[string]bool{"a": false, "b": false}) {
		t.Fatalf("preferences: %v", p)
	}
	if p, err := s.Preferences(ctx, "acme", "u2"); err != nil || len(p) != 0 {
		t.Fatalf("other user: %v %v", p, err)
	}
	if err := s.PutPreferences(ctx, "acme", "u\x001", map[string]bool{"a": true}); err == nil {
		t.Fatal("NUL in user accepted")
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "relay.db")
	ctx := context.Background()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := ev("acme", "e1"), ev("acme", "e2")
	if _, err := s.AddEvents(ctx, []relay.Event{e1, e2}, t0); err != nil {
		t.Fatal(err)
	}
	d := relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnforced, Enforced: true}
	if err := s.Decide(ctx, e1.Key(), d, &relay.Alert{Title: "x"}, []relay.Job{job(e1.Key(), "p", relay.StatePending)}); err != nil {
		t.Fatal(err)
	}
	dev := relay.Device{Workspace: "acme", User: "u", ID: "p", Platform: relay.PlatformIOS, Token: "t"}
	if err := s.PutDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSettings(ctx, "acme", map[string]relay.Setting{"x": relay.SettingEnforced}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPreferences(ctx, "acme", "u", map[string]bool{"x": false}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Event(ctx, e1.Key()); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if _, err := s.AddEvents(ctx, []relay.Event{e1}, t0); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("add after close: %v", err)
	}
	for _, p := range []string{filepath.Dir(path), filepath.Dir(filepath.Dir(path))} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("dir %s: %v %v", p, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", fi.Mode(), err)
	}

	s = openAt(t, path)
	rec, err := s.Event(ctx, e1.Key())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rec.Decision.Plugins, []relay.PluginDecision(nil)) || rec.Decision.Reason != relay.ReasonEnforced || rec.Alert.Title != "x" || len(rec.Jobs) != 1 {
		t.Fatalf("record after reopen: %+v", rec)
	}
	var und []string
	if err := s.Undecided(ctx, farFuture, func(e relay.Event) error { und = append(und, e.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(und, []string{"e2"}) {
		t.Fatalf("undecided after reopen: %v", und)
	}
	if got := openJobs(t, s); !slices.Equal(got, []string{"acme/e1#p:pending"}) {
		t.Fatalf("open jobs after reopen: %v", got)
	}
	if got, err := s.Device(ctx, "acme", "u", "p"); err != nil || got.Token != "t" {
		t.Fatalf("device after reopen: %+v %v", got, err)
	}
	if m, _ := s.Settings(ctx, "acme"); m["x"] != relay.SettingEnforced {
		t.Fatalf("settings after reopen: %v", m)
	}
	if m, _ := s.Preferences(ctx, "acme", "u"); len(m) != 1 || m["x"] {
		t.Fatalf("preferences after reopen: %v", m)
	}
	// New events continue after the old ones in the undecided order.
	mustAdd(t, s, ev("acme", "e0"))
	und = und[:0]
	if err := s.Undecided(ctx, farFuture, func(e relay.Event) error { und = append(und, e.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(und, []string{"e2", "e0"}) {
		t.Fatalf("undecided order after reopen: %v", und)
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	openAt(t, path)
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "store "+path+" is locked by another relayd") {
		t.Fatalf("got %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a bolt file ", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk, Options{}); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "store "+junk) {
		t.Fatalf("junk file: %v", err)
	}
	if _, err := Open("", Options{}); err == nil {
		t.Fatal("empty path accepted")
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "relay.db"), Options{}); err == nil || !strings.Contains(err.Error(), "create directory") {
		t.Fatalf("parent is a file: %v", err)
	}
}

// TestCloseWaitsAndStopsWalks: Close lets queued writes commit and stops
// walks at their next entry.
func TestCloseWaitsAndStopsWalks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	ctx := context.Background()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := ev("acme", "a")
	mustAdd(t, s, e, ev("acme", "b"))

	var closeErr = make(chan error, 1)
	var writeRes = make(chan error, 1)
	walkErr := s.Undecided(ctx, farFuture, func(relay.Event) error {
		// A write queued before Close must commit.
		started := make(chan struct{})
		go func() {
			close(started)
			res, err := s.AddEvents(ctx, []relay.Event{ev("acme", "late")}, t0)
			if err == nil {
				err = res[0]
			}
			writeRes <- err
		}()
		<-started
		deadline := time.Now().Add(10 * time.Second)
		for s.inflight.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // poll until the write is in flight
		}
		go func() { closeErr <- s.Close(ctx) }()
		<-s.done
		return nil
	})
	if !errors.Is(walkErr, relay.ErrClosed) {
		t.Fatalf("walk: got %v, want ErrClosed", walkErr)
	}
	if err := <-closeErr; err != nil {
		t.Fatal(err)
	}
	if err := <-writeRes; err != nil {
		t.Fatalf("write in flight at Close: %v", err)
	}
	s2 := openAt(t, path)
	if _, err := s2.Event(ctx, relay.EventKey{Workspace: "acme", ID: "late"}); err != nil {
		t.Fatalf("write in flight at Close is missing: %v", err)
	}
}

func TestCheckIntegrity(t *testing.T) {
	s := openTest(t)
	mustAdd(t, s, ev("acme", "a"))
	checkDB(t, s.db)
}

// checkDB runs bbolt's consistency check.
func checkDB(tb testing.TB, db *bbolt.DB) {
	tb.Helper()
	err := db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			tb.Error(err)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// TestBatchRetry: when another function of the same commit fails, the
// commit is rolled back and the others run again. Results must come out as
// if each ran once.
func TestBatchRetry(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "relay.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	injected := errors.New("injected")
	stop := make(chan struct{})
	var failures sync.WaitGroup
	for range 4 {
		failures.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.write(func(*bbolt.Tx) error { return injected }); err != injected {
					t.Errorf("failing batch fn: got %v", err)
					return
				}
			}
		})
	}
	var (
		mu       sync.Mutex
		accepted = map[string]int{}
		wg       sync.WaitGroup
	)
	for w := range 20 {
		wg.Go(func() {
			for c := range 20 {
				mine := ev("acme", fmt.Sprintf("w%d-c%d", w, c))
				batch := []relay.Event{mine, ev("acme", fmt.Sprintf("shared-%d", c)), mine}
				res, err := s.AddEvents(ctx, batch, t0)
				if err != nil {
					t.Error(err)
					return
				}
				if res[0] != nil || res[2] != relay.ErrDuplicate || (res[1] != nil && res[1] != relay.ErrDuplicate) {
					t.Errorf("results %v", res)
				}
				mu.Lock()
				for i, r := range res[:2] {
					if r == nil {
						accepted[batch[i].ID]++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	failures.Wait()
	if want := 20*20 + 20; len(accepted) != want {
		t.Fatalf("accepted %d ids, want %d", len(accepted), want)
	}
	for id, n := range accepted {
		if n != 1 {
			t.Errorf("%s accepted %d times", id, n)
		}
	}
	n := 0
	if err := s.Undecided(ctx, farFuture, func(relay.Event) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(accepted) {
		t.Fatalf("undecided has %d entries, want %d", n, len(accepted))
	}
	checkDB(t, s.db)
}

// TestWritePanicStaysWithItsCaller: a write function that panics panics in
// its own caller; the writes sharing its commit still commit.
func TestWritePanicStaysWithItsCaller(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if i%10 == 0 {
				defer func() {
					if p := recover(); p != "boom" {
						t.Errorf("recovered %v, want the write's panic", p)
					}
				}()
				_ = s.write(func(*bbolt.Tx) error { panic("boom") })
				return
			}
			mustAdd(t, s, ev("acme", fmt.Sprintf("e%d", i)))
		})
	}
	wg.Wait()
	for i := range 50 {
		_, err := s.Event(ctx, relay.EventKey{Workspace: "acme", ID: fmt.Sprintf("e%d", i)})
		if (i%10 == 0) != errors.Is(err, relay.ErrNotFound) {
			t.Errorf("event e%d: %v", i, err)
		}
	}
}

// TestFreelistSynced: the store writes its freelist, so a restart reads one
// page instead of scanning the whole file; a file written without one (as
// before) gets it at its first open.
func TestFreelistSynced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	old, err := bbolt.Open(path, 0o600, &bbolt.Options{NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	old.Close()
	freelist := func() uint64 {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var best meta
		for _, off := range []int64{0, int64(os.Getpagesize())} {
			buf := make([]byte, pageHeaderSize+metaSize)
			if _, err := f.ReadAt(buf, off); err != nil {
				t.Fatal(err)
			}
			if m, err := parseMeta(buf); err == nil && m.txid >= best.txid {
				best = m
			}
		}
		return best.freelist
	}
	if freelist() != noFreelist {
		t.Fatal("the old-style file has a freelist page")
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, ev("acme", "a"))
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if freelist() == noFreelist {
		t.Fatal("no freelist page after the store wrote to the file")
	}
	checkDB(t, openAt(t, path).db)
}

// ReadUsers answers, user by user, what Preferences and Devices answer: a
// user whose id is a prefix of another's gets only their own devices, and
// a user with nothing stored gets empty ones.
func TestReadUsersMatchesOneByOne(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for _, d := range []relay.Device{
		{Workspace: "w", User: "u", ID: "phone", Platform: relay.PlatformIOS, Token: "t1", App: "demo"},
		{Workspace: "w", User: "u", ID: "tablet", Platform: relay.PlatformAndroid, Token: "t2", App: "demo"},
		{Workspace: "w", User: "u2", ID: "phone", Platform: relay.PlatformIOS, Token: "t3", App: "demo"},
		{Workspace: "w2", User: "u", ID: "other", Platform: relay.PlatformIOS, Token: "t4", App: "demo"},
	} {
		if _, err := s.RegisterDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutPreferences(ctx, "w", "u2", map[string]bool{relay.TypeOTPReceived: false}); err != nil {
		t.Fatal(err)
	}
	users := []string{"u2", "nobody", "u"}
	prefs, devices, err := s.ReadUsers(ctx, "w", users)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range users {
		wantP, err := s.Preferences(ctx, "w", u)
		if err != nil {
			t.Fatal(err)
		}
		wantD, err := s.Devices(ctx, "w", u)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(prefs[i], wantP) || !reflect.DeepEqual(devices[i], wantD) {
			t.Fatalf("user %s: ReadUsers %v %+v, one by one %v %+v", u, prefs[i], devices[i], wantP, wantD)
		}
	}
	if len(devices[2]) != 2 || len(devices[0]) != 1 || devices[1] == nil || prefs[1] == nil {
		t.Fatalf("devices %+v prefs %v", devices, prefs)
	}
	if _, _, err := s.ReadUsers(ctx, "w", []string{"ok", ""}); err == nil || !strings.Contains(err.Error(), "user") {
		t.Fatalf("empty user id: %v, want an error naming the user", err)
	}
}
