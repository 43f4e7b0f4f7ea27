package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/store"
)

// cancelStore is what the socket's cancel needs of the store.
type cancelStore interface {
	Event(ctx context.Context, key relay.EventKey) (*store.Record, error)
	AnswerAction(ctx context.Context, a relay.Answer) (relay.Answer, error)
}

// cancelResult is the answer of DELETE /v1/events/{workspace}/{id}.
type cancelResult struct {
	ID        string   `json:"id"`
	Workspace string   `json:"workspace"`
	Status    string   `json:"status"`    // "cancelled"
	Withdrawn []string `json:"withdrawn"` // devices sent the withdraw push by this call
}

// cancelHandler serves the socket's DELETE /v1/events/{workspace}/{id}:
// the upstream no longer needs an actionable alert. The cancel is stored
// as the event's first answer (so it and a device's answer exclude each
// other), the devices the alert went to get the withdraw push, jobs not
// sent yet are dropped when leased (answerGate), and the app API refuses
// later answers (409 cancelled).
func cancelHandler(st cancelStore, wd *withdrawer, now func() time.Time, log hclog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := relay.EventKey{Workspace: r.PathValue("workspace"), ID: r.PathValue("id")}
		ctx := r.Context()
		rec, err := st.Event(ctx, key)
		if errors.Is(err, relay.ErrNotFound) {
			httpjson.Error(w, http.StatusNotFound, "not_found", fmt.Sprintf("event %q not found in workspace %q", key.ID, key.Workspace))
			return
		}
		if err != nil {
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "read event: "+err.Error())
			return
		}
		if len(rec.Event.Actions) == 0 {
			httpjson.Error(w, http.StatusConflict, "not_actionable",
				fmt.Sprintf("event %q offers no actions: only an actionable alert can be cancelled", key.ID))
			return
		}
		cancel := relay.Answer{Event: key, User: rec.Event.User, DeviceID: relay.CancelDevice, Action: relay.CancelAction,
			AnsweredAt: now().UTC(), Cancelled: true}
		stored, err := st.AnswerAction(ctx, cancel)
		switch {
		case errors.Is(err, relay.ErrConflict) && stored.Cancelled:
			httpjson.Write(w, http.StatusOK, cancelResult{ID: key.ID, Workspace: key.Workspace, Status: "cancelled", Withdrawn: []string{}})
			return
		case errors.Is(err, relay.ErrConflict):
			httpjson.Error(w, http.StatusConflict, "already_answered",
				fmt.Sprintf("event %q was already answered (%s): too late to cancel", key.ID, stored.Action))
			return
		case err != nil:
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "store cancel: "+err.Error())
			return
		}
		withdrawn := wd.onCancel(ctx, stored, rec)
		log.Info("alert cancelled by the upstream", relay.LogKeyEventID, key.ID, relay.LogKeyWorkspace, key.Workspace,
			"withdrawn", len(withdrawn))
		httpjson.Write(w, http.StatusOK, cancelResult{ID: key.ID, Workspace: key.Workspace, Status: "cancelled", Withdrawn: withdrawn})
	})
}
