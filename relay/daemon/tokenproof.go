package daemon

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/pipeline"
)

// tokenProofType is the type of the internal events that carry a token
// move's one-time code. Like withdrawType it is no configured type, so
// recovery suppresses such an event if relayd stopped before deciding it.
const tokenProofType = "edgerelay.token_proof"

// sendTokenProof queues the silent push with a token move's one-time code
// to holder, the device that holds the token now (api.Options.
// SendTokenProof): an internal event with one job, sent through the
// normal queue and provider path, expiring with the code. The push has no
// visible content; its data carries relay.DataTokenProof and the device
// id asked for. The code is kept in the event's stored alert until the
// event is pruned (it expires within api.TokenProofTTL).
func (w *withdrawer) sendTokenProof(ctx context.Context, holder relay.Device, code string, p relay.TokenProof) error {
	now := w.now()
	nonce := rand.Text()
	ev := relay.Event{ID: relay.InternalID(relay.InternalTokenProof, nonce), Workspace: holder.Workspace, User: holder.User,
		Type: tokenProofType, ExpiresAt: p.ExpiresAt, OccurredAt: now}
	errs, err := w.st.AddEvents(ctx, []relay.Event{ev}, now)
	if err == nil && len(errs) > 0 {
		err = errs[0]
	}
	if err != nil {
		return fmt.Errorf("store token proof push: %w", err)
	}
	alert := &relay.Alert{EventID: ev.ID, Workspace: ev.Workspace, Type: tokenProofType,
		Data:     map[string]string{relay.DataTokenProof: code, "device_id": p.DeviceID},
		Priority: relay.PriorityNormal, CollapseID: "tp-" + nonce, ExpiresAt: p.ExpiresAt, Silent: true}
	jobs := []relay.Job{{Event: ev.Key(), DeviceID: holder.ID, Platform: holder.Platform, App: holder.App,
		State: relay.StatePending, ExpiresAt: ev.ExpiresAt, UpdatedAt: now}}
	dec := relay.Decision{Verdict: relay.VerdictDeliver, Reason: "token_proof", Plugins: []relay.PluginDecision{}}
	if err := w.st.Decide(ctx, ev.Key(), dec, alert, jobs); err != nil {
		return fmt.Errorf("record token proof push: %w", err)
	}
	pipeline.Scheduled(w.q, alert.Priority, jobs)
	return nil
}
