package api

import (
	"slices"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// WithdrawAlert returns the silent push that tells the user's other
// devices an alert was answered (relay.WithdrawAlert), or nil when the
// event was never rendered as an alert (nothing to withdraw).
func WithdrawAlert(rec *store.Record, ans relay.Answer) *relay.Alert {
	if rec == nil {
		return nil
	}
	return relay.WithdrawAlert(rec.Alert, ans.Action, ans.AnsweredAt)
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
