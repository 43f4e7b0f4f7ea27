package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

type countingNotifier struct{ sent []string }

func (c *countingNotifier) Notify(_ context.Context, _ relay.Device, a *relay.Alert) error {
	c.sent = append(c.sent, a.EventID)
	return nil
}

// TestAnswerGate: a cancelled prompt's unsent jobs end expired instead of
// being sent; an answered one's are still sent (first answer wins, the
// withdraw follows); the expiry withdraw is dropped once an answer or a
// cancel withdrew the alert, and sent otherwise (the queue sends it only
// for a delivered alert: queue.TestWithdrawOnExpiry).
func TestAnswerGate(t *testing.T) {
	st := bolttest.Open(t)
	ctx := t.Context()
	now := time.Now().UTC()
	answer := func(id string, cancelled bool) {
		a := relay.Answer{Event: relay.EventKey{Workspace: "w", ID: id}, User: "u", DeviceID: "phone", Action: "approve", AnsweredAt: now}
		if cancelled {
			a.DeviceID, a.Action, a.Cancelled = relay.CancelDevice, relay.CancelAction, true
		}
		if _, err := st.AnswerAction(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// Every prompt was delivered to the phone.
	for _, id := range []string{"cancelled", "answered", "open"} {
		ev := relay.Event{ID: id, Workspace: "w", User: "u", Type: relay.TypeIdentityVerification, ExpiresAt: now.Add(time.Minute)}
		if _, err := st.AddEvents(ctx, []relay.Event{ev}, now); err != nil {
			t.Fatal(err)
		}
		state := relay.StateWithdrawDue
		if err := st.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, nil,
			[]relay.Job{{Event: ev.Key(), DeviceID: "phone", Platform: relay.PlatformIOS, App: "demo", State: state, ExpiresAt: ev.ExpiresAt, UpdatedAt: now}}); err != nil {
			t.Fatal(err)
		}
	}
	answer("cancelled", true)
	answer("answered", false)
	next := &countingNotifier{}
	g := answerGate{next: next, st: st}
	prompt := func(id string) *relay.Alert {
		return &relay.Alert{EventID: id, Workspace: "w", Type: relay.TypeIdentityVerification, Actions: []string{"approve", "deny"}}
	}
	expiry := func(id string) *relay.Alert {
		return &relay.Alert{EventID: id, Workspace: "w", Silent: true,
			Data: map[string]string{"action": relay.WithdrawExpired, relay.WithdrawReasonKey: relay.WithdrawExpired}}
	}
	for _, tc := range []struct {
		alert   *relay.Alert
		dropped bool
	}{
		{prompt("cancelled"), true},
		{prompt("answered"), false},
		{prompt("open"), false},
		{&relay.Alert{EventID: "cancelled", Workspace: "w", Silent: true, Data: map[string]string{"action": "cancel", relay.WithdrawReasonKey: relay.WithdrawCancelled}}, false},
		{expiry("cancelled"), true},
		{expiry("answered"), true},
		{expiry("open"), false},
	} {
		before := len(next.sent)
		err := g.Notify(ctx, relay.Device{ID: "phone"}, tc.alert)
		if tc.dropped != errors.Is(err, relay.ErrExpired) || tc.dropped == (len(next.sent) > before) {
			t.Errorf("%s silent=%v: err %v, sent %v; want dropped %v", tc.alert.EventID, tc.alert.Silent, err, next.sent[before:], tc.dropped)
		}
	}
}

// failingAdds is a real store whose AddEvents fails as a store does when
// its disk is gone: no per-event results, an error.
type failingAdds struct{ *bolt.Store }

func (failingAdds) AddEvents(context.Context, []relay.Event, time.Time) ([]error, error) {
	return nil, errors.New("disk gone")
}

// TestWithdrawPushStoreFailure: a withdraw push the store cannot keep is
// logged and reported not sent; it does not panic.
func TestWithdrawPushStoreFailure(t *testing.T) {
	st := bolttest.Open(t)
	ctx := t.Context()
	if _, err := st.RegisterDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: "pixel", Platform: relay.PlatformAndroid, App: "demo", Token: "tok"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rec := &store.Record{Event: relay.Event{ID: "e", Workspace: "w", User: "u", Type: relay.TypeIdentityVerification},
		Alert: &relay.Alert{EventID: "e", Workspace: "w", Type: relay.TypeIdentityVerification, Actions: []string{"approve", "deny"}, ExpiresAt: now.Add(time.Minute)}}
	var logged []string
	w := &withdrawer{st: failingAdds{st}, now: time.Now, log: logFunc(func(msg string, _ ...any) { logged = append(logged, msg) })}
	a := relay.Answer{Event: relay.EventKey{Workspace: "w", ID: "e"}, User: "u", DeviceID: "phone", Action: "approve", AnsweredAt: now}
	if w.push(ctx, rec, a, "", relay.WithdrawID("e"), []string{"pixel"}) {
		t.Fatal("push reported sent with the store failing")
	}
	if len(logged) != 1 || logged[0] != "store withdraw push" {
		t.Fatalf("logged %q", logged)
	}
}

// logFunc is an Error logger.
type logFunc func(msg string, args ...any)

func (f logFunc) Error(msg string, args ...any) { f(msg, args...) }
