package api

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// EventContent is the answer of GET /v1/events/{id}: the alert as the
// relay rendered it (after the pipeline and plugins), for the app to show
// when the push carried none (seal = "required" and no device key) or did
// not open.
type EventContent struct {
	EventID   string            `json:"event_id"`
	Type      string            `json:"type"`
	Title     string            `json:"title"`
	Body      string            `json:"body"`
	Data      map[string]string `json:"data"`
	Category  string            `json:"category,omitempty"`
	Actions   []string          `json:"actions"`
	Sound     string            `json:"sound,omitempty"`
	ThreadID  string            `json:"thread_id,omitempty"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// getEvent answers the content of one of the caller's alerts. Another
// user's event, or another workspace's, is 404 as if absent (admins
// included: the content is the recipient's alone). After expires_at the
// content is gone (404 expired); an event that was not delivered has none
// (409 not_delivered).
//
// Expired is 404 with code expired rather than 410: DESIGN.md lists the
// statuses the APIs use, and 410 is not among them.
func (s *Server) getEvent(w http.ResponseWriter, r *http.Request, c *Claims) {
	id, ok := s.pathID(w, r, c, "id")
	if !ok {
		return
	}
	key := relay.EventKey{Workspace: c.Workspace, ID: id}
	rec, err := s.st.Event(r.Context(), key)
	if errors.Is(err, relay.ErrNotFound) || err == nil && rec.Event.User != c.Subject {
		s.deny(w, r, c, http.StatusNotFound, CodeNotFound, "no such event", "event not found for this user")
		return
	}
	if err != nil {
		s.storeError(w, r, "read event", err)
		return
	}
	a := rec.Alert
	// Withdraw pushes and other silent derived events have no content.
	if a != nil && a.Silent {
		s.deny(w, r, c, http.StatusNotFound, CodeNotFound, "no such event", "silent event has no content")
		return
	}
	if ev := &rec.Event; ev.Expired(s.now()) {
		s.deny(w, r, c, http.StatusNotFound, CodeExpired, "event "+quote(id)+" expired at "+ev.ExpiresAt.UTC().Format(time.RFC3339), "content after expiry")
		return
	}
	if a == nil {
		s.deny(w, r, c, http.StatusConflict, CodeNotDelivered, "event "+quote(id)+" was not delivered", "content of an event not delivered")
		return
	}
	out := EventContent{EventID: id, Type: a.Type, Title: a.Title, Body: a.Body, Data: maps.Clone(a.Data),
		Category: a.Category, Actions: slices.Clone(a.Actions), Sound: a.Sound, ThreadID: a.ThreadID, ExpiresAt: a.ExpiresAt.UTC()}
	if out.Data == nil {
		out.Data = map[string]string{}
	}
	if out.Actions == nil {
		out.Actions = []string{}
	}
	s.log.Info("alert content fetched", relay.LogKeyEventID, id, relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject)
	writeJSON(w, http.StatusOK, out)
}
