package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// DeviceList is the answer of GET /v1/devices: the caller's devices and,
// when some of the caller's devices lost their push token to another
// user's proven registration, those moves (kept until the device id
// registers again).
type DeviceList struct {
	Devices []relay.Device     `json:"devices"`
	Moved   []relay.DeviceMove `json:"moved,omitempty"`
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
	moved, err := s.st.DeviceMoves(r.Context(), c.Workspace, c.Subject)
	if err != nil {
		s.storeError(w, r, "list device moves", err)
		return
	}
	writeJSON(w, http.StatusOK, DeviceList{Devices: devs, Moved: moved})
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
// held by another device id of the caller moves to this one. A token held
// by another user's device moves only with proof that the caller's app
// holds the device (moveToken); until then the owner keeps it.
func (s *Server) putDevice(w http.ResponseWriter, r *http.Request, c *Claims) {
	id, ok := s.pathID(w, r, c, "device_id")
	if !ok {
		return
	}
	body, ok := s.readBody(w, r, c)
	if !ok {
		return
	}
	req, err := decodeDevice(body, func(app string) bool { return s.cfg.Load().AppByName(app) != nil })
	if err != nil {
		s.badRequest(w, r, c, err)
		return
	}
	d := relay.Device{
		Workspace: c.Workspace, User: c.Subject, ID: id,
		Platform: req.Platform, Token: req.Token, App: req.App, Environment: req.Environment,
		Name: req.Name, PublicKey: req.PublicKey, UpdatedAt: s.now().UTC(),
	}
	// The store counts the user's devices in the same write: concurrent
	// registrations never pass the limit.
	taken, err := s.st.RegisterUserDeviceLimit(r.Context(), d, s.opts.MaxDevicesPerUser)
	if errors.Is(err, store.ErrTooManyDevices) {
		s.deny(w, r, c, http.StatusConflict, CodeTooManyDevices,
			fmt.Sprintf("at most %d devices per user; delete one first", s.opts.MaxDevicesPerUser), "device limit")
		return
	}
	var held *relay.TokenHeldError
	if errors.As(err, &held) {
		if taken, ok = s.moveToken(w, r, c, d, req.Proof, held.Holder); !ok {
			return
		}
		err = nil
	}
	if err != nil {
		s.storeError(w, r, "register device", err)
		return
	}
	for _, o := range taken {
		if o.User != c.Subject {
			// The token is never logged, only who lost and who got it.
			s.log.Info("device token moved to another user", relay.LogKeyWorkspace, c.Workspace,
				"from_user", o.User, "from_device", o.ID, relay.LogKeyUser, c.Subject, relay.LogKeyDevice, id, "proven", true)
			continue
		}
		s.log.Info("device token moved", relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject,
			"from_device", o.ID, relay.LogKeyDevice, id)
	}
	s.log.Info("device registered", relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject, relay.LogKeyDevice, id,
		relay.LogKeyPlatform, d.Platform, relay.LogKeyApp, d.App, "sealed", d.PublicKey != "")
	writeJSON(w, http.StatusOK, d)
}

// TokenProofTTL is how long a token move's one-time code stays valid.
const TokenProofTTL = 5 * time.Minute

// moveToken handles a registration of a token held by holder, a device of
// another user. Without proof it sends a one-time code to holder's token
// by silent push (at most one per user and token while the code is valid)
// and answers 409 token_proof_required. With proof it
// takes the user's pending code (single use, whatever the outcome),
// checks it is this code, for this token and device id, unexpired, and
// registers d, taking the token. ok is false when it answered.
func (s *Server) moveToken(w http.ResponseWriter, r *http.Request, c *Claims, d relay.Device, proof string, holder relay.Device) ([]relay.Device, bool) {
	ctx := r.Context()
	now := s.now()
	tokenHash := relay.HashSecret(d.Token)
	if proof == "" {
		if s.opts.SendTokenProof == nil {
			s.deny(w, r, c, http.StatusConflict, CodeTokenProofRequired,
				"this push token is registered to another user and this relay cannot send a proof", "token held by another user")
			return nil, false
		}
		p, err := s.st.TokenProof(ctx, c.Workspace, c.Subject)
		if err != nil && !errors.Is(err, relay.ErrNotFound) {
			s.storeError(w, r, "read token proof", err)
			return nil, false
		}
		// One push per user and token while its code is valid, whatever
		// the device id asked for: retries cannot flood the holder.
		pending := err == nil && p.TokenHash == tokenHash && now.Before(p.ExpiresAt)
		if !pending {
			code := rand.Text()
			p = relay.TokenProof{Workspace: c.Workspace, User: c.Subject, DeviceID: d.ID, TokenHash: tokenHash,
				CodeHash: relay.HashSecret(code), ExpiresAt: now.Add(TokenProofTTL).UTC()}
			if err := s.st.PutTokenProof(ctx, p); err != nil {
				s.storeError(w, r, "store token proof", err)
				return nil, false
			}
			if err := s.opts.SendTokenProof(context.WithoutCancel(ctx), holder, code, p); err != nil {
				// Drop the code no push carries, so the next request sends one.
				if _, terr := s.st.TakeTokenProof(context.WithoutCancel(ctx), c.Workspace, c.Subject); terr != nil {
					s.log.Warn("drop unsent token proof", relay.LogKeyUser, c.Subject, relay.LogKeyError, terr)
				}
				s.storeError(w, r, "send token proof", err)
				return nil, false
			}
			s.log.Info("device token held by another user: proof sent", relay.LogKeyWorkspace, c.Workspace,
				"holder_user", holder.User, "holder_device", holder.ID, relay.LogKeyUser, c.Subject, relay.LogKeyDevice, d.ID)
		}
		s.deny(w, r, c, http.StatusConflict, CodeTokenProofRequired,
			fmt.Sprintf("this push token is registered to another user; a one-time code for device id %s was sent to the device by silent push (data %q); "+
				"repeat that registration with \"proof\": the code before %s", quote(p.DeviceID), relay.DataTokenProof, p.ExpiresAt.Format(time.RFC3339)),
			"token held by another user")
		return nil, false
	}
	p, err := s.st.TakeTokenProof(ctx, c.Workspace, c.Subject)
	if err != nil && !errors.Is(err, relay.ErrNotFound) {
		s.storeError(w, r, "take token proof", err)
		return nil, false
	}
	var why string
	switch {
	case err != nil:
		why = "no code is pending"
	case !now.Before(p.ExpiresAt):
		why = "the code expired"
	case p.DeviceID != d.ID || p.TokenHash != tokenHash:
		why = "the code was sent for another token or device id"
	case subtle.ConstantTimeCompare([]byte(p.CodeHash), []byte(relay.HashSecret(proof))) != 1:
		why = "the code is wrong"
	}
	if why != "" {
		s.deny(w, r, c, http.StatusConflict, CodeTokenProofInvalid,
			"token proof refused: "+why+"; repeat the request without \"proof\" for a new code", "token proof refused: "+why)
		return nil, false
	}
	taken, err := s.st.RegisterDeviceLimit(ctx, d, s.opts.MaxDevicesPerUser)
	if errors.Is(err, store.ErrTooManyDevices) {
		s.deny(w, r, c, http.StatusConflict, CodeTooManyDevices,
			fmt.Sprintf("at most %d devices per user; delete one first", s.opts.MaxDevicesPerUser), "device limit")
		return nil, false
	}
	if err != nil {
		s.storeError(w, r, "register device", err)
		return nil, false
	}
	return taken, true
}

// effectiveSettings returns the setting of every configured type in a
// workspace: its explicit choice, or the type's default.
func (s *Server) effectiveSettings(ctx context.Context, ws string) (map[string]relay.Setting, error) {
	explicit, err := s.st.Settings(ctx, ws)
	if err != nil {
		return nil, err
	}
	return relay.EffectiveSettings(s.cfg.Load().Defaults(), explicit), nil
}

func (s *Server) knownType(t string) bool { return s.cfg.Load().Notifications[t] != nil }

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
		before, err := s.effectiveSettings(r.Context(), c.Workspace)
		if err != nil {
			s.storeError(w, r, "read settings", err)
			return
		}
		if err := s.st.PutSettings(r.Context(), c.Workspace, set); err != nil {
			s.storeError(w, r, "store settings", err)
			return
		}
		s.log.Info("workspace settings changed", relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject,
			"role", c.Role, "settings", fmt.Sprint(set))
		changed := make(map[string]relay.Setting, len(set))
		for t := range set {
			changed[t] = before[t]
		}
		s.audit(r.Context(), c, relay.AuditEntry{Action: relay.AuditSettingsPut, Workspace: c.Workspace,
			Before: relay.AuditJSON(changed), After: relay.AuditJSON(set)})
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
	// Only a prompt the relay decided to send can be answered: not one a
	// baseline or a plugin suppressed, nor one not decided yet (it may
	// still be suppressed, e.g. by the push-bombing guard).
	if rec.Decision == nil || rec.Decision.Verdict == relay.VerdictSuppress {
		s.deny(w, r, c, http.StatusConflict, CodeNotDelivered, "event "+quote(id)+" was not delivered", "answer to a suppressed or undecided event")
		return
	}
	ans, err := s.st.AnswerAction(ctx, relay.Answer{Event: key, User: c.Subject, DeviceID: req.DeviceID, Action: req.Action, AnsweredAt: now.UTC()})
	if errors.Is(err, relay.ErrConflict) && ans.Cancelled {
		s.deny(w, r, c, http.StatusConflict, CodeCancelled, "event "+quote(id)+" was cancelled by its sender", "answer after cancel")
		return
	}
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

// audit records a change made by the caller of c. The change is made, so
// a failure to record it is logged, not answered.
func (s *Server) audit(ctx context.Context, c *Claims, e relay.AuditEntry) {
	if s.opts.Audit == nil {
		return
	}
	e.Time = s.now().UTC()
	e.Actor = relay.Actor{Kind: relay.ActorApp, Subject: c.Subject, Workspace: c.Workspace, Role: c.Role}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.opts.Audit.AppendAudit(ctx, e); err != nil {
		s.log.Error("audit entry not recorded", "action", e.Action, relay.LogKeyWorkspace, e.Workspace, relay.LogKeyUser, c.Subject,
			"before", string(e.Before), "after", string(e.After), relay.LogKeyError, err)
	}
}
