package api

import (
	"slices"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// WithdrawTTL is how long after an answer the withdraw push may still be
// delivered.
const WithdrawTTL = 10 * time.Minute

// WithdrawAlert returns the silent push that tells the user's other
// devices an alert was answered, so they remove the prompt: same event id,
// type and collapse id as the alert they got, Silent (APNs background push
// with content-available; FCM data message; both notifiers add
// "withdraw":"true", "event_id" and "type"), Data {"action": the answer},
// normal priority, expiring WithdrawTTL after the answer. It returns nil
// when the event was never rendered as an alert (nothing to withdraw).
func WithdrawAlert(rec *store.Record, ans relay.Answer) *relay.Alert {
	if rec == nil || rec.Alert == nil {
		return nil
	}
	a := rec.Alert
	return &relay.Alert{
		EventID:    a.EventID,
		Workspace:  a.Workspace,
		Type:       a.Type,
		Data:       map[string]string{"action": ans.Action},
		Priority:   relay.PriorityNormal,
		ThreadID:   a.ThreadID,
		CollapseID: a.CollapseID,
		ExpiresAt:  ans.AnsweredAt.Add(WithdrawTTL),
		Silent:     true,
	}
}

// WithdrawDevices returns the ids of the devices that should get the
// withdraw push: every device the event was sent (or is being sent) to,
// except the one that answered and those whose token was removed, in id
// order.
func WithdrawDevices(rec *store.Record, ans relay.Answer) []string {
	if rec == nil {
		return nil
	}
	var ids []string
	for _, j := range rec.Jobs {
		switch {
		case j.DeviceID == ans.DeviceID, j.State == relay.StateTokenRemoved, j.State == relay.StateSuppressed:
			continue
		}
		ids = append(ids, j.DeviceID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
