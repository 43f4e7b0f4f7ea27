package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/seal"
)

// Limits on device registration.
const (
	MaxTokenLen      = 4096 // push token, printable ASCII
	MaxDeviceNameLen = 256
)

// DeviceList is the answer of GET /v1/workspaces/{ws}/users/{user}/devices.
type DeviceList struct {
	Devices []relay.Device `json:"devices"`
}

// pathNames reads and checks path parameters that are ids.
func pathNames(w http.ResponseWriter, r *http.Request, names ...string) ([]string, bool) {
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = r.PathValue(n)
		var fe *FieldError
		if err := checkID(n, vals[i]); errors.As(err, &fe) {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("path parameter %q: %s", n, fe.Reason))
			return nil, false
		}
	}
	return vals, true
}

// readObject reads a JSON object body of at most maxAdminBodyBytes into
// its raw members. On failure it answers the request.
func readObject(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, []string, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, fmt.Sprintf("body larger than %d bytes", tooBig.Limit))
		return nil, nil, false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("read body: %v", err))
		return nil, nil, false
	}
	d := decoder{data: body}
	if c := d.peek(); c != '{' {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "body: expected a JSON object, got "+d.kind())
		return nil, nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("body: invalid JSON: %v", err))
		return nil, nil, false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return m, keys, true
}

func badRequest(w http.ResponseWriter, err error) {
	writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
}

// rawString decodes a member that must be a string; null is absent.
func rawString(field string, raw json.RawMessage) (string, bool, error) {
	d := decoder{data: raw}
	switch c := d.peek(); c {
	case 'n':
		return "", false, nil
	case '"':
		s, err := d.str(field)
		return s, err == nil, err
	default:
		return "", false, &FieldError{Field: field, Reason: "expected string, got " + d.kind()}
	}
}

func (s *Server) effectiveSettings(explicit map[string]relay.Setting) map[string]relay.Setting {
	if s.opts.Types == nil {
		if explicit == nil {
			explicit = map[string]relay.Setting{}
		}
		return explicit
	}
	return relay.EffectiveSettings(s.opts.Types(), explicit)
}

// getSettings answers a workspace's effective settings: every known type,
// with the workspace's choice or the type's default (only the choices when
// Options.Types is nil).
func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) {
	p, ok := pathNames(w, r, "ws")
	if !ok {
		return
	}
	explicit, err := s.opts.Store.Settings(r.Context(), p[0])
	if err != nil {
		s.storeError(w, "read settings", err)
		return
	}
	writeJSON(w, http.StatusOK, s.effectiveSettings(explicit))
}

// putSettings merges settings into a workspace's and answers the
// effective settings.
func (s *Server) putSettings(w http.ResponseWriter, r *http.Request) {
	p, ok := pathNames(w, r, "ws")
	if !ok {
		return
	}
	m, keys, ok := readObject(w, r)
	if !ok {
		return
	}
	known := s.knownType()
	set := make(map[string]relay.Setting, len(m))
	for _, k := range keys {
		if !known(k) {
			badRequest(w, &FieldError{Reason: "unknown notification type " + quoteShort(k)})
			return
		}
		v, present, err := rawString(k, m[k])
		if err == nil && (!present || !relay.Setting(v).Valid()) {
			got := "null"
			if present {
				got = quoteShort(v)
			}
			err = &FieldError{Field: k, Reason: "must be enabled, disabled or enforced, got " + got}
		}
		if err != nil {
			badRequest(w, err)
			return
		}
		set[k] = relay.Setting(v)
	}
	if len(set) > 0 {
		explicit, err := s.opts.Store.Settings(r.Context(), p[0])
		if err != nil {
			s.storeError(w, "read settings", err)
			return
		}
		if err := s.opts.Store.PutSettings(r.Context(), p[0], set); err != nil {
			s.storeError(w, "store settings", err)
			return
		}
		s.log.Info("workspace settings changed", relay.LogKeyWorkspace, p[0], "settings", fmt.Sprint(set))
		eff := s.effectiveSettings(explicit)
		before := make(map[string]relay.Setting, len(set))
		for t := range set {
			before[t] = eff[t]
		}
		s.record(r, relay.AuditEntry{Action: relay.AuditSettingsPut, Workspace: p[0],
			Before: relay.AuditJSON(before), After: relay.AuditJSON(set)})
	}
	s.getSettings(w, r)
}

func (s *Server) effectivePreferences(explicit map[string]bool) map[string]bool {
	if s.opts.Types == nil {
		if explicit == nil {
			explicit = map[string]bool{}
		}
		return explicit
	}
	types := s.opts.Types()
	eff := make(map[string]bool, len(types))
	for t := range types {
		v, ok := explicit[t]
		eff[t] = v || !ok
	}
	return eff
}

// getPreferences answers a user's preferences for every known type (on
// unless the user turned it off).
func (s *Server) getPreferences(w http.ResponseWriter, r *http.Request) {
	p, ok := pathNames(w, r, "ws", "user")
	if !ok {
		return
	}
	explicit, err := s.opts.Store.Preferences(r.Context(), p[0], p[1])
	if err != nil {
		s.storeError(w, "read preferences", err)
		return
	}
	writeJSON(w, http.StatusOK, s.effectivePreferences(explicit))
}

// putPreferences merges preferences into a user's. The socket is the
// operator's: unlike the app API it may turn off an enforced type (the
// workspace setting still wins when deciding).
func (s *Server) putPreferences(w http.ResponseWriter, r *http.Request) {
	p, ok := pathNames(w, r, "ws", "user")
	if !ok {
		return
	}
	m, keys, ok := readObject(w, r)
	if !ok {
		return
	}
	known := s.knownType()
	set := make(map[string]bool, len(m))
	for _, k := range keys {
		if !known(k) {
			badRequest(w, &FieldError{Reason: "unknown notification type " + quoteShort(k)})
			return
		}
		var v bool
		if err := json.Unmarshal(m[k], &v); err != nil || string(m[k]) == "null" {
			d := decoder{data: m[k]}
			badRequest(w, &FieldError{Field: k, Reason: "expected boolean, got " + d.kind()})
			return
		}
		set[k] = v
	}
	if len(set) > 0 {
		explicit, err := s.opts.Store.Preferences(r.Context(), p[0], p[1])
		if err != nil {
			s.storeError(w, "read preferences", err)
			return
		}
		if err := s.opts.Store.PutPreferences(r.Context(), p[0], p[1], set); err != nil {
			s.storeError(w, "store preferences", err)
			return
		}
		// Always someone other than the user: the operator.
		eff := s.effectivePreferences(explicit)
		before := make(map[string]bool, len(set))
		for t := range set {
			v, ok := eff[t]
			before[t] = v || !ok
		}
		s.record(r, relay.AuditEntry{Action: relay.AuditPreferencesPut, Workspace: p[0], User: p[1],
			Before: relay.AuditJSON(before), After: relay.AuditJSON(set)})
	}
	s.getPreferences(w, r)
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	p, ok := pathNames(w, r, "ws", "user")
	if !ok {
		return
	}
	devs, err := s.opts.Store.Devices(r.Context(), p[0], p[1])
	if err != nil {
		s.storeError(w, "read devices", err)
		return
	}
	if devs == nil {
		devs = []relay.Device{}
	}
	writeJSON(w, http.StatusOK, DeviceList{Devices: devs})
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	p, ok := pathNames(w, r, "ws", "user", "device_id")
	if !ok {
		return
	}
	d, err := s.opts.Store.Device(r.Context(), p[0], p[1], p[2])
	if errors.Is(err, relay.ErrNotFound) {
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("device %q not found", p[2]))
		return
	}
	if err != nil {
		s.storeError(w, "read device", err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request) {
	p, ok := pathNames(w, r, "ws", "user", "device_id")
	if !ok {
		return
	}
	before, err := s.opts.Store.Device(r.Context(), p[0], p[1], p[2])
	if err == nil {
		err = s.opts.Store.DeleteDevice(r.Context(), p[0], p[1], p[2])
	}
	if errors.Is(err, relay.ErrNotFound) {
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("device %q not found", p[2]))
		return
	}
	if err != nil {
		s.storeError(w, "delete device", err)
		return
	}
	s.log.Info("device deleted", relay.LogKeyWorkspace, p[0], relay.LogKeyUser, p[1], relay.LogKeyDevice, p[2])
	s.record(r, relay.AuditEntry{Action: relay.AuditDeviceDelete, Workspace: p[0], User: p[1], Target: p[2],
		Before: relay.AuditJSON(AuditDevice(before))})
	w.WriteHeader(http.StatusNoContent)
}

// putDevice registers or replaces a device and answers it.
func (s *Server) putDevice(w http.ResponseWriter, r *http.Request) {
	p, ok := pathNames(w, r, "ws", "user", "device_id")
	if !ok {
		return
	}
	m, keys, ok := readObject(w, r)
	if !ok {
		return
	}
	d, err := s.decodeDevice(m, keys)
	if err != nil {
		badRequest(w, err)
		return
	}
	d.Workspace, d.User, d.ID = p[0], p[1], p[2]
	d.UpdatedAt = time.Now().UTC()
	// The same registration as the app API's: a token registered for
	// another device of the workspace moves here.
	taken, err := s.opts.Store.RegisterDevice(r.Context(), d)
	if err != nil {
		s.storeError(w, "store device", err)
		return
	}
	s.log.Info("device registered", relay.LogKeyWorkspace, d.Workspace, relay.LogKeyUser, d.User, relay.LogKeyDevice, d.ID, relay.LogKeyPlatform, d.Platform, relay.LogKeyApp, d.App)
	for _, o := range taken {
		s.log.Info("device removed: its push token moved to another device", relay.LogKeyWorkspace, o.Workspace,
			relay.LogKeyUser, o.User, relay.LogKeyDevice, o.ID)
		s.record(r, relay.AuditEntry{Action: relay.AuditDeviceDelete, Workspace: o.Workspace, User: o.User, Target: o.ID,
			Before: relay.AuditJSON(AuditDevice(o)),
			After:  relay.AuditJSON(map[string]string{"reason": "push token registered for " + d.User + "/" + d.ID})})
	}
	writeJSON(w, http.StatusOK, d)
}

// decodeDevice checks a device registration body (DESIGN.md "App API",
// PUT /v1/devices/{device_id}).
func (s *Server) decodeDevice(m map[string]json.RawMessage, keys []string) (relay.Device, error) {
	var (
		d        relay.Device
		platform string
		seen     = map[string]bool{}
	)
	for _, k := range keys {
		var dst *string
		switch k {
		case "platform":
			dst = &platform
		case "token":
			dst = &d.Token
		case "app":
			dst = &d.App
		case "environment":
			dst = &d.Environment
		case "name":
			dst = &d.Name
		case "public_key":
			dst = &d.PublicKey
		default:
			return d, &FieldError{Field: k, Reason: reasonUnknownField}
		}
		v, present, err := rawString(k, m[k])
		if err != nil {
			return d, err
		}
		*dst, seen[k] = v, present
	}
	d.Platform = relay.Platform(platform)
	for _, k := range []string{"platform", "token", "app"} {
		if !seen[k] {
			return d, &FieldError{Field: k, Reason: reasonMissingField}
		}
	}
	if !d.Platform.Valid() {
		return d, &FieldError{Field: "platform", Reason: `must be "ios" or "android", got ` + quoteShort(string(d.Platform))}
	}
	if err := checkToken(d.Token); err != nil {
		return d, err
	}
	if err := checkName("app", d.App); err != nil {
		return d, err
	}
	if s.opts.KnownApp != nil && !s.opts.KnownApp(d.App) {
		return d, &FieldError{Field: "app", Reason: "unknown app " + quoteShort(d.App)}
	}
	switch d.Environment {
	case relay.EnvironmentProduction, relay.EnvironmentSandbox:
	case "":
		if d.Platform == relay.PlatformIOS {
			d.Environment = relay.EnvironmentProduction
		}
	default:
		return d, &FieldError{Field: "environment", Reason: `must be "production" or "sandbox", got ` + quoteShort(d.Environment)}
	}
	if err := checkText("name", d.Name, MaxDeviceNameLen, false); err != nil {
		return d, err
	}
	if d.PublicKey != "" {
		key, err := publicKey(d.PublicKey)
		if err != nil {
			return d, err
		}
		d.PublicKey = key
	}
	return d, nil
}

func checkToken(t string) error {
	if t == "" {
		return &FieldError{Field: "token", Reason: "must not be empty"}
	}
	if len(t) > MaxTokenLen {
		return &FieldError{Field: "token", Reason: fmt.Sprintf("is longer than %d characters", MaxTokenLen)}
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return &FieldError{Field: "token", Reason: "must be printable ASCII without spaces"}
		}
	}
	return nil
}

// publicKey checks a device's X25519 public key the way sealing will use
// it (relay/seal) and returns it normalized to standard base64.
func publicKey(b64 string) (string, error) {
	key, err := seal.NormalizePublicKey(b64)
	var ke *seal.KeyError
	if errors.As(err, &ke) {
		return "", &FieldError{Field: "public_key", Reason: ke.Reason}
	}
	return key, err
}

// AuditDevice is what the audit log keeps of a device: not its push token
// or public key (secrets of the phone, useless to an auditor).
func AuditDevice(d relay.Device) map[string]any {
	return map[string]any{"id": d.ID, "platform": d.Platform, "app": d.App, "environment": d.Environment,
		"name": d.Name, "updated_at": d.UpdatedAt}
}
