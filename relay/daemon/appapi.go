package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/api"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/seal"
	"github.com/edgerelay/edgerelay/relay/store"
)

// appAPIEnabled reports whether the config gives the app API a key to
// verify tokens with; without one the API is not served.
func appAPIEnabled(cfg *config.Config) bool {
	return cfg.Auth.HS256SecretFile != "" || cfg.Auth.PublicKeyFile != "" || cfg.Auth.JWKSURL != ""
}

// withdrawType is the type of the derived events that carry withdraw
// pushes. It is not a configured notification type, so if relayd stops
// between storing such an event and deciding it, recovery suppresses it
// (unknown type) instead of sending anything.
const withdrawType = "edgerelay.withdraw"

// withdrawer sends the silent "withdraw the prompt" push to a user's other
// devices once an alert is answered. The push is stored like any delivery
// (a derived event relay.WithdrawID(id) with its own jobs), so it survives a
// restart and shows in GET /v1/events.
type withdrawer struct {
	st  withdrawStore
	q   pipeline.Queue
	now func() time.Time
	log interface {
		Error(string, ...any)
	}
}

// withdrawStore is what the withdrawer needs of the store.
type withdrawStore interface {
	AddEvents(ctx context.Context, events []relay.Event, receivedAt time.Time) ([]error, error)
	Decide(ctx context.Context, key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) error
	Device(ctx context.Context, workspace, user, id string) (relay.Device, error)
	Devices(ctx context.Context, workspace, user string) ([]relay.Device, error)
}

func (w *withdrawer) onAnswer(ctx context.Context, a relay.Answer, rec *store.Record) {
	// The answer is already stored; the withdraw must not depend on the
	// phone's request staying open.
	w.push(context.WithoutCancel(ctx), rec, a, "", relay.WithdrawID(rec.Event.ID), api.WithdrawDevices(rec, a))
}

// onCancel withdraws a cancelled alert from every device it was sent or is
// being sent to. It returns the devices the push goes to.
func (w *withdrawer) onCancel(ctx context.Context, cancel relay.Answer, rec *store.Record) []string {
	ids := api.WithdrawDevices(rec, cancel)
	if !w.push(context.WithoutCancel(ctx), rec, cancel, relay.WithdrawCancelled, relay.WithdrawID(rec.Event.ID), ids) {
		return []string{}
	}
	return ids
}

// push stores the derived event id carrying rec's withdraw push to the
// devices ids, with data "reason" when reason is set, and schedules it. It
// reports whether it scheduled a push (false: nothing to withdraw, done
// before, or an error, logged). (An alert that expires unanswered is
// withdrawn by its own job: queue.Options.WithdrawOnExpiry.)
func (w *withdrawer) push(ctx context.Context, rec *store.Record, a relay.Answer, reason, id string, ids []string) bool {
	alert := api.WithdrawAlert(rec, a)
	if alert == nil || len(ids) == 0 {
		return false
	}
	if reason != "" {
		alert.Data[relay.WithdrawReasonKey] = reason
	}
	now := w.now()
	ev := relay.Event{ID: id, Workspace: rec.Event.Workspace, User: rec.Event.User,
		Type: withdrawType, ExpiresAt: alert.ExpiresAt, OccurredAt: now}
	var jobs []relay.Job
	for _, id := range ids {
		d, err := w.st.Device(ctx, rec.Event.Workspace, rec.Event.User, id)
		if err != nil {
			continue // no longer registered: nothing to withdraw from
		}
		jobs = append(jobs, relay.Job{Event: ev.Key(), DeviceID: id, Platform: d.Platform, App: d.App,
			State: relay.StatePending, ExpiresAt: ev.ExpiresAt, UpdatedAt: now})
	}
	errs, err := w.st.AddEvents(ctx, []relay.Event{ev}, now)
	if err == nil && len(errs) > 0 {
		err = errs[0] // the event's own result
	}
	if errors.Is(err, relay.ErrDuplicate) {
		return false // sent before
	}
	if err != nil {
		w.log.Error("store withdraw push", relay.LogKeyEventID, rec.Event.ID, relay.LogKeyError, err)
		return false
	}
	dec := relay.Decision{Verdict: relay.VerdictDeliver, Reason: "withdraw", Plugins: []relay.PluginDecision{}}
	if err := w.st.Decide(ctx, ev.Key(), dec, alert, jobs); err != nil {
		w.log.Error("record withdraw push", relay.LogKeyEventID, rec.Event.ID, relay.LogKeyError, err)
		return false
	}
	pipeline.Scheduled(w.q, alert.Priority, jobs)
	return true
}

// answerGate holds back sends that an answer or a cancel made pointless:
// a prompt the upstream cancelled (its jobs not yet sent end expired), and
// the expiry withdraw of an alert already withdrawn by its answer or
// cancel.
type answerGate struct {
	next delivery.Notifier
	st   answeredReader
}

type answeredReader interface {
	Answered(ctx context.Context, key relay.EventKey) (relay.Answer, error)
}

func (g answerGate) Notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	key := relay.EventKey{Workspace: a.Workspace, ID: a.EventID}
	switch {
	case a.Silent && a.Data["action"] == relay.WithdrawExpired && a.Data[relay.WithdrawReasonKey] == relay.WithdrawExpired:
		if _, err := g.st.Answered(ctx, key); err == nil {
			return fmt.Errorf("withdrawn when answered or cancelled: %w", relay.ErrExpired)
		}
	case !a.Silent && len(a.Actions) > 0:
		if ans, err := g.st.Answered(ctx, key); err == nil && ans.Cancelled {
			return fmt.Errorf("cancelled by the upstream: %w", relay.ErrExpired)
		}
	}
	return g.next.Notify(ctx, d, a)
}

// sealingNotifier seals an alert to the device's public key when the type's
// notification block says seal = true or "required", so Apple and Google
// carry only ciphertext bound to the alert (relay/seal, format v2). A
// device without a key gets the plain alert under true, and under
// "required" a generic alert with no content (the app fetches it with GET
// /v1/events/{id}). If sealing fails the send fails permanently: never
// fall back to plaintext.
type sealingNotifier struct {
	next delivery.Notifier
	cfg  *config.Config
}

func (s sealingNotifier) Notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	n := s.cfg.Notifications[a.Type]
	switch {
	case a.Silent || n == nil || !n.Seal:
		return s.next.Notify(ctx, d, a)
	case d.PublicKey == "" && n.SealRequired:
		return s.next.Notify(ctx, d, seal.Generic(a))
	case d.PublicKey == "":
		return s.next.Notify(ctx, d, a)
	}
	sealed, err := seal.Alert(a, d.PublicKey)
	if err != nil {
		return &delivery.Error{Provider: "seal", Reason: "SealFailed", Outcome: delivery.Permanent, Err: err}
	}
	return s.next.Notify(ctx, d, sealed)
}
