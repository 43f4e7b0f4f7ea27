package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// FillDelivered stores n delivered sign-in prompts for 1,000 users of
// workspace "bench" (an iPhone each, app "demo", push token token(user)),
// as a relay that sent them leaves them once they expired unanswered:
// decided on accept, leased and settled delivered (withdraw_due), then
// leased at their expiry and settled delivered (the expiry withdraw sent),
// 1,000 at a time. For benchmarks of a big store.
func FillDelivered(tb testing.TB, s store.Backend, n int, now time.Time, token func(user string) string) {
	tb.Helper()
	ctx := context.Background()
	for u := range 1000 {
		user := fmt.Sprintf("u-%d", u)
		if _, err := s.RegisterDevice(ctx, relay.Device{Workspace: "bench", User: user, ID: "iphone",
			Platform: relay.PlatformIOS, App: "demo", Token: token(user)}); err != nil {
			tb.Fatal(err)
		}
	}
	lane := relay.Lane("demo", relay.PlatformIOS)
	for lo := 0; lo < n; lo += 1000 {
		var evs []relay.Event
		var ds []*store.Decided
		for i := lo; i < min(lo+1000, n); i++ {
			e := relay.Event{ID: fmt.Sprintf("e-%d", i), Workspace: "bench", User: fmt.Sprintf("u-%d", i%1000), Type: relay.TypeIdentityVerification,
				Title: "Sign-in", Body: "Approve sign-in from 203.0.113.9?", Actions: []string{"approve", "deny"}, Priority: relay.PriorityHigh,
				ExpiresAt: now.Add(2 * time.Minute)}
			a := &relay.Alert{EventID: e.ID, Workspace: e.Workspace, Type: e.Type, Title: e.Title, Body: e.Body, Actions: e.Actions,
				Category: "APPROVE_DENY", Priority: e.Priority, InterruptionLevel: "time-sensitive", CollapseID: fmt.Sprintf("%032x", i), ExpiresAt: e.ExpiresAt}
			evs = append(evs, e)
			ds = append(ds, &store.Decided{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnforced, Plugins: []relay.PluginDecision{}},
				Alert: a, Jobs: []relay.Job{{Event: e.Key(), DeviceID: "iphone", Platform: relay.PlatformIOS, App: "demo", State: relay.StatePending, ExpiresAt: e.ExpiresAt, UpdatedAt: now}}})
		}
		if _, err := s.AddDecided(ctx, evs, ds, now); err != nil {
			tb.Fatal(err)
		}
		// Delivered: each job waits for its prompt's expiry (withdraw_due),
		// then its expiry withdraw is sent and it ends delivered.
		settleAll(tb, s, lane, time.Now(), func(j *relay.Job) {
			j.State, j.Attempts, j.NextAt, j.UpdatedAt = relay.StateWithdrawDue, 1, j.ExpiresAt, time.Now()
		})
		settleAll(tb, s, lane, now.Add(3*time.Minute), func(j *relay.Job) {
			j.State, j.NextAt, j.UpdatedAt = relay.StateDelivered, time.Time{}, time.Now()
		})
	}
}

// settleAll leases up to 1,000 jobs of lane due at now and settles each
// as set changes it, concurrently (as a relay's send pool does).
func settleAll(tb testing.TB, s store.Backend, lane string, now time.Time, set func(*relay.Job)) {
	tb.Helper()
	ctx := context.Background()
	leased, _, err := s.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: "r", Now: now, TTL: time.Minute, Max: 1000})
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, l := range leased {
		wg.Go(func() {
			j := l.Job
			set(&j)
			if err := s.Settle(ctx, l, j); err != nil {
				tb.Error(err)
			}
		})
	}
	wg.Wait()
}
