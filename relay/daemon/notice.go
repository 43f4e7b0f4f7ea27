package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/pipeline"
)

// noticeType is the type of the derived events that carry plugins'
// notices (abi.Notice). Like withdrawType it is not a configured type: it
// has no actions, so nothing can answer it, and recovery suppresses such
// an event left undecided instead of sending it.
const noticeType = "edgerelay.notice"

// noticeTTL is how long a notice may wait for a device: a warning about a
// burst of prompts is still worth reading some minutes later.
const noticeTTL = 15 * time.Minute

// noticer sends the informational alerts plugins ask for as derived
// events "NoticeID(id, plugin)", stored and scheduled like any delivery
// (so they survive a restart and show in GET /v1/events). Storing one
// twice is a duplicate: a notice is sent once per event and plugin.
type noticer struct {
	st  withdrawStore
	cfg *config.Config
	q   pipeline.Queue
	now func() time.Time
	log interface {
		Error(string, ...any)
	}
}

func (n *noticer) send(ctx context.Context, src relay.Event, notices []pipeline.Notice) {
	ctx = context.WithoutCancel(ctx) // the decision is recorded; finish the notice
	for _, nt := range notices {
		if err := n.sendOne(ctx, src, nt); err != nil {
			n.log.Error("send plugin notice", relay.LogKeyEventID, src.ID, relay.LogKeyWorkspace, src.Workspace,
				relay.LogKeyPolicy, nt.Plugin, relay.LogKeyError, err)
		}
	}
}

func (n *noticer) sendOne(ctx context.Context, src relay.Event, nt pipeline.Notice) error {
	now := n.now()
	ev := relay.Event{ID: relay.NoticeID(src.ID, nt.Plugin), Workspace: src.Workspace, User: src.User,
		Type: noticeType, Title: nt.Title, Body: nt.Body, Data: nt.Data, Priority: relay.PriorityHigh,
		OccurredAt: now, ExpiresAt: now.Add(noticeTTL)}
	errs, err := n.st.AddEvents(ctx, []relay.Event{ev}, now)
	if err != nil {
		return err
	}
	if errs[0] != nil {
		if errors.Is(errs[0], relay.ErrDuplicate) {
			return nil // sent before (a decision retried)
		}
		return errs[0]
	}
	devices, err := n.st.Devices(ctx, ev.Workspace, ev.User)
	if err != nil {
		return err
	}
	var jobs []relay.Job
	for _, d := range devices {
		if a := n.cfg.AppByName(d.App); a == nil ||
			(d.Platform == relay.PlatformIOS && a.APNS == nil) || (d.Platform == relay.PlatformAndroid && a.FCM == nil) {
			continue
		}
		jobs = append(jobs, relay.Job{Event: ev.Key(), DeviceID: d.ID, Platform: d.Platform, App: d.App,
			State: relay.StatePending, ExpiresAt: ev.ExpiresAt, UpdatedAt: now})
	}
	// No actions, no category: an informational alert nobody can answer.
	alert := &relay.Alert{EventID: ev.ID, Workspace: ev.Workspace, Type: noticeType, Title: ev.Title, Body: ev.Body,
		Data: ev.Data, Priority: relay.PriorityHigh, InterruptionLevel: "time-sensitive",
		CollapseID: pipeline.CollapseID(ev.Key()), ExpiresAt: ev.ExpiresAt}
	dec := relay.Decision{Verdict: relay.VerdictDeliver, Reason: "notice from " + nt.Plugin, Plugins: []relay.PluginDecision{}}
	if err := n.st.Decide(ctx, ev.Key(), dec, alert, jobs); err != nil {
		return err
	}
	pipeline.Scheduled(n.q, alert.Priority, jobs)
	return nil
}
