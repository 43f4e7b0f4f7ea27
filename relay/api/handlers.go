package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// DeviceList is the answer of GET /v1/devices.
type DeviceList struct {
	Devices []relay.Device `json:"devices"`
}

// Preference is one type's entry in GET /v1/preferences: whether the
// caller gets it (the effective state), the workspace's setting, and
// whether the caller may change it (locked: enforced or disabled).
type Preference = relay.Preference

// Preferences is the answer of GET|PUT /v1/preferences.
type Preferences struct {
	Preferences map[string]Preference `json:"preferences"`
}

// Settings is the answer of GET|PUT /v1/workspace/settings: the effective
// setting of every type.
type Settings struct {
	Workspace string                   `json:"workspace"`
	Settings  map[string]relay.Setting `json:"settings"`
}

// ActionResult is the answer of a successful POST /v1/events/{id}/actions.
type ActionResult struct {
	Seq        uint64    `json:"seq"`
	EventID    string    `json:"event_id"`
	Action     string    `json:"action"`
	AnsweredAt time.Time `json:"answered_at"`
}

// pathID reads and checks a path parameter; on failure it answers.
func (s *Server) pathID(w http.ResponseWriter, r *http.Request, c *Claims, name string) (string, bool) {
	v := r.PathValue(name)
	if err := checkID(name, v); err != nil {
		s.deny(w, r, c, http.StatusBadRequest, CodeBadRequest, "path parameter "+err.Error(), "bad path parameter")
		return "", false
	}
	return v, true
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, c *Claims) {
	devs, err := s.st.Devices(r.Context(), c.Workspace, c.Subject)
	if err != nil {
		s.storeError(w, r, "list devices", err)
		return
	}
	if devs == nil {
		devs = []relay.Device{}
	}
	writeJSON(w, http.StatusOK, DeviceList{Devices: devs})
}

// getDevice answers one of the caller's devices. Another user's device is
// 404, as if absent: the API does not reveal which ids exist.
func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, c *Claims) {
	id, ok := s.pathID(w, r, c, "device_id")
	if !ok {
		return
	}
	d, err := s.st.Device(r.Context(), c.Workspace, c.Subject, id)
	if errors.Is(err, relay.ErrNotFound) {
		s.deny(w, r, c, http.StatusNotFound, CodeNotFound, "no such device", "device not found for this user")
		return
	}
	if err != nil {
		s.storeError(w, r, "get device", err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, c *Claims) {
	id, ok := s.pathID(w, r, c, "device_id")
	if !ok {
		return
	}
	err := s.st.DeleteDevice(r.Context(), c.Workspace, c.Subject, id)
	if errors.Is(err, relay.ErrNotFound) {
		s.deny(w, r, c, http.StatusNotFound, CodeNotFound, "no such device", "device not found for this user")
		return
	}
	if err != nil {
		s.storeError(w, r, "delete device", err)
		return
	}
	s.log.Info("device deleted", relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject, relay.LogKeyDevice, id)
	w.WriteHeader(http.StatusNoContent)
}

// putDevice registers or replaces one of the caller's devices. A token
// held by another device of the workspace (another user's, or this user's
// under another id) is taken from it.
func (s *Server) putDevice(w http.ResponseWriter, r *http.Request, c *Claims) {
	id, ok := s.pathID(w, r, c, "device_id")
	if !ok {
		return
	}
	body, ok := s.readBody(w, r, c)
	if !ok {
		return
	}
	req, err := decodeDevice(body, func(app string) bool { return s.cfg.AppByName(app) != nil })
	if err != nil {
		s.badRequest(w, r, c, err)
		return
	}
	existing, err := s.st.Devices(r.Context(), c.Workspace, c.Subject)
	if err != nil {
		s.storeError(w, r, "list devices", err)
		return
	}
	if len(existing) >= s.opts.MaxDevicesPerUser && !slices.ContainsFunc(existing, func(d relay.Device) bool { return d.ID == id }) {
		s.deny(w, r, c, http.StatusConflict, CodeTooManyDevices,
			fmt.Sprintf("at most %d devices per user; delete one first", s.opts.MaxDevicesPerUser), "device limit")
		return
	}
	d := relay.Device{
		Workspace: c.Workspace, User: c.Subject, ID: id,
		Platform: req.Platform, Token: req.Token, App: req.App, Environment: req.Environment,
		Name: req.Name, PublicKey: req.PublicKey, UpdatedAt: s.now().UTC(),
	}
	taken, err := s.st.RegisterDevice(r.Context(), d)
	if err != nil {
		s.storeError(w, r, "register device", err)
		return
	}
	for _, o := range taken {
		s.log.Info("device token moved", relay.LogKeyWorkspace, c.Workspace, "from_user", o.User, "from_device", o.ID,
			relay.LogKeyUser, c.Subject, relay.LogKeyDevice, id)
	}
	s.log.Info("device registered", relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject, relay.LogKeyDevice, id,
		relay.LogKeyPlatform, d.Platform, relay.LogKeyApp, d.App, "sealed", d.PublicKey != "")
	writeJSON(w, http.StatusOK, d)
}

// effectiveSettings returns the setting of every configured type in a
// workspace: its explicit choice, or the type's default.
func (s *Server) effectiveSettings(ctx context.Context, ws string) (map[string]relay.Setting, error) {
	explicit, err := s.st.Settings(ctx, ws)
	if err != nil {
		return nil, err
	}
	return relay.EffectiveSettings(s.cfg.Defaults(), explicit), nil
}

func (s *Server) knownType(t string) bool { return s.cfg.Notifications[t] != nil }

func (s *Server) getPreferences(w http.ResponseWriter, r *http.Request, c *Claims) {
	settings, err := s.effectiveSettings(r.Context(), c.Workspace)
	if err != nil {
		s.storeError(w, r, "read settings", err)
		return
	}
	prefs, err := s.st.Preferences(r.Context(), c.Workspace, c.Subject)
	if err != nil {
		s.storeError(w, r, "read preferences", err)
		return
	}
	out := make(map[string]Preference, len(settings))
	for t, st := range settings {
		var pref *bool
		if v, ok := prefs[t]; ok {
			pref = &v
		}
		out[t] = relay.EffectivePreference(st, pref)
	}
	writeJSON(w, http.StatusOK, Preferences{Preferences: out})
}

// putPreferences merges the caller's preferences. Turning off a type the
// workspace enforces is refused with 409 locked, and nothing is stored.
func (s *Server) putPreferences(w http.ResponseWriter, r *http.Request, c *Claims) {
	body, ok := s.readBody(w, r, c)
	if !ok {
		return
	}
	prefs, err := decodePreferences(body, s.knownType)
	if err != nil {
		s.badRequest(w, r, c, err)
		return
	}
	settings, err := s.effectiveSettings(r.Context(), c.Workspace)
	if err != nil {
		s.storeError(w, r, "read settings", err)
		return
	}
	types := make([]string, 0, len(prefs))
	for t := range prefs {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		if err := relay.CheckPreference(t, settings[t], prefs[t]); err != nil {
			s.deny(w, r, c, http.StatusConflict, CodeLocked,
				fmt.Sprintf("workspace %s enforces %s; it cannot be turned off", c.Workspace, t), "preference locked: "+t)
			return
		}
	}
	if len(prefs) > 0 {
		if err := s.st.PutPreferences(r.Context(), c.Workspace, c.Subject, prefs); err != nil {
			s.storeError(w, r, "store preferences", err)
			return
		}
		s.log.Info("preferences changed", relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject, "preferences", fmt.Sprint(prefs))
	}
	s.getPreferences(w, r, c)
}

func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request, c *Claims) bool {
	if c.Admin() {
		return true
	}
	s.deny(w, r, c, http.StatusForbidden, CodeForbidden, "workspace settings need an admin role", "role "+c.Role+" is not an admin role")
	return false
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, c *Claims) {
	if !s.requireAdmin(w, r, c) {
		return
	}
	eff, err := s.effectiveSettings(r.Context(), c.Workspace)
	if err != nil {
		s.storeError(w, r, "read settings", err)
		return
	}
	writeJSON(w, http.StatusOK, Settings{Workspace: c.Workspace, Settings: eff})
}

func (s *Server) putSettings(w http.ResponseWriter, r *http.Request, c *Claims) {
	if !s.requireAdmin(w, r, c) {
		return
	}
	body, ok := s.readBody(w, r, c)
	if !ok {
		return
	}
	set, err := decodeSettings(body, s.knownType)
	if err != nil {
		s.badRequest(w, r, c, err)
		return
	}
	if len(set) > 0 {
		if err := s.st.PutSettings(r.Context(), c.Workspace, set); err != nil {
			s.storeError(w, r, "store settings", err)
			return
		}
		s.log.Info("workspace settings changed", relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject,
			"role", c.Role, "settings", fmt.Sprint(set))
	}
	s.getSettings(w, r, c)
}

// postAction stores the caller's answer to an actionable alert: only the
// recipient, from one of their devices, an action the event offered,
// before it expires; the first answer wins.
func (s *Server) postAction(w http.ResponseWriter, r *http.Request, c *Claims) {
	id, ok := s.pathID(w, r, c, "id")
	if !ok {
		return
	}
	body, ok := s.readBody(w, r, c)
	if !ok {
		return
	}
	req, err := decodeAction(body)
	if err != nil {
		s.badRequest(w, r, c, err)
		return
	}
	ctx := r.Context()
	key := relay.EventKey{Workspace: c.Workspace, ID: id}
	// Events are looked up in the token's workspace only: another
	// workspace's event is not found.
	rec, err := s.st.Event(ctx, key)
	if errors.Is(err, relay.ErrNotFound) {
		s.deny(w, r, c, http.StatusNotFound, CodeNotFound, "no such event", "event not found in workspace")
		return
	}
	if err != nil {
		s.storeError(w, r, "read event", err)
		return
	}
	ev := &rec.Event
	if ev.User != c.Subject {
		s.deny(w, r, c, http.StatusForbidden, CodeForbidden, "this alert is not yours to answer", "not the recipient of "+key.String())
		return
	}
	if _, err := s.st.Device(ctx, c.Workspace, c.Subject, req.DeviceID); err != nil {
		if errors.Is(err, relay.ErrNotFound) {
			s.deny(w, r, c, http.StatusForbidden, CodeForbidden, "device "+quote(req.DeviceID)+" is not registered to you", "answering device not the user's")
			return
		}
		s.storeError(w, r, "read device", err)
		return
	}
	if len(ev.Actions) == 0 {
		s.deny(w, r, c, http.StatusBadRequest, CodeActionNotOffered, "event "+quote(id)+" offers no actions", "event not actionable")
		return
	}
	if !slices.Contains(ev.Actions, req.Action) {
		s.deny(w, r, c, http.StatusBadRequest, CodeActionNotOffered,
			fmt.Sprintf("action %s not offered; the event offers %v", quote(req.Action), ev.Actions), "action not offered")
		return
	}
	now := s.now()
	if ev.Expired(now) {
		s.deny(w, r, c, http.StatusConflict, CodeExpired, "event "+quote(id)+" expired at "+ev.ExpiresAt.UTC().Format(time.RFC3339), "answer after expiry")
		return
	}
	if rec.Decision != nil && rec.Decision.Verdict == relay.VerdictSuppress {
		s.deny(w, r, c, http.StatusConflict, CodeNotDelivered, "event "+quote(id)+" was not delivered", "answer to a suppressed event")
		return
	}
	ans, err := s.st.AnswerAction(ctx, relay.Answer{Event: key, User: c.Subject, DeviceID: req.DeviceID, Action: req.Action, AnsweredAt: now.UTC()})
	if errors.Is(err, relay.ErrConflict) {
		s.deny(w, r, c, http.StatusConflict, CodeAlreadyAnswered,
			fmt.Sprintf("event %s was already answered (%s)", quote(id), ans.Action), "already answered")
		return
	}
	if err != nil {
		s.storeError(w, r, "store answer", err)
		return
	}
	s.log.Info("alert answered", relay.LogKeyEventID, id, relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject,
		relay.LogKeyDevice, req.DeviceID, "action", req.Action, "seq", ans.Seq)
	if s.opts.Hub != nil {
		s.opts.Hub.Notify()
	}
	if s.opts.OnAnswer != nil {
		s.opts.OnAnswer(context.WithoutCancel(ctx), ans, rec)
	}
	writeJSON(w, http.StatusOK, ActionResult{Seq: ans.Seq, EventID: id, Action: ans.Action, AnsweredAt: ans.AnsweredAt})
}
