package queue

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Dead-letter listing limits.
const (
	DefaultDeadLetterLimit = 100
	MaxDeadLetterLimit     = 1000
)

// DeadLetterList is the answer of GET /v1/deadletters.
type DeadLetterList struct {
	DeadLetters []store.DeadLetter `json:"dead_letters"`
	// Next is the "after" value for the next page; empty on the last.
	Next string `json:"next,omitempty"`
}

// ReplayResult is the answer of POST /v1/deadletters/{id}/replay.
type ReplayResult struct {
	ID       string              `json:"id"`
	Event    relay.EventKey      `json:"event"`
	DeviceID string              `json:"device_id"`
	State    relay.DeliveryState `json:"state"`
}

// DeadLettersHandler serves GET /v1/deadletters: dead letters newest first,
// at most limit (query parameter, default 100, at most 1000) after the id
// given as after.
func (q *Queue) DeadLettersHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := DefaultDeadLetterLimit
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxDeadLetterLimit {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("query parameter %q: %q is not a number from 1 to %d", "limit", v, MaxDeadLetterLimit))
				return
			}
			limit = n
		}
		after := r.URL.Query().Get("after")
		if after != "" {
			if n, err := strconv.ParseUint(after, 10, 64); err != nil || n == 0 {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("query parameter %q: %q is not a dead letter id", "after", after))
				return
			}
		}
		list, err := q.opts.Schedule.DeadLetters(r.Context(), after, limit)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		out := DeadLetterList{DeadLetters: list}
		if out.DeadLetters == nil {
			out.DeadLetters = []store.DeadLetter{}
		}
		if len(list) == limit {
			out.Next = list[len(list)-1].ID
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// ReplayHandler serves POST /v1/deadletters/{id}/replay: the dead letter's
// job is queued again as a fresh pending job. It answers 404 for an unknown
// id, 409 when the dead letter was replayed before, the event expired or
// the device is gone.
func (q *Queue) ReplayHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		res, err := q.Replay(r.Context(), id)
		switch {
		case errors.Is(err, relay.ErrNotFound):
			writeError(w, http.StatusNotFound, "not_found", err.Error())
		case errors.Is(err, store.ErrReplayed), errors.Is(err, relay.ErrExpired), errors.Is(err, errCannotSend):
			writeError(w, http.StatusConflict, "conflict", err.Error())
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		default:
			writeJSON(w, http.StatusOK, res)
		}
	})
}

// errCannotSend: a replayed job cannot be sent (no provider for its lane).
var errCannotSend = errors.New("cannot send")

// Replay re-opens dead letter id as a fresh pending job, due now.
func (q *Queue) Replay(ctx context.Context, id string) (ReplayResult, error) {
	j, err := q.opts.Schedule.ReplayDeadLetter(ctx, id, q.opts.Now())
	if err != nil {
		return ReplayResult{}, err
	}
	res := ReplayResult{ID: id, Event: j.Event, DeviceID: j.DeviceID, State: j.State}
	q.Scheduled(j.Lane(), "", 0)
	q.log.Info("dead letter replayed", "dead_letter", id, relay.LogKeyEventID, j.Event.ID,
		relay.LogKeyWorkspace, j.Event.Workspace, relay.LogKeyDevice, j.DeviceID, "lane", j.Lane())
	if q.lanes[j.Lane()] == nil {
		return res, fmt.Errorf("replay dead letter %s: %w: no provider for lane %s on this relay; the job waits in the schedule", id, errCannotSend, j.Lane())
	}
	return res, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }

// writeError answers the socket API's JSON error {"error":{"code","message"}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	httpjson.Error(w, status, code, msg)
}
