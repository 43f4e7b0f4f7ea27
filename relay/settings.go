package relay

import (
	"errors"
	"fmt"
)

// Setting is a workspace admin's choice for a notification type.
type Setting string

// Settings.
const (
	SettingEnabled  Setting = "enabled"
	SettingDisabled Setting = "disabled"
	SettingEnforced Setting = "enforced"
)

// Valid reports whether s is a known setting.
func (s Setting) Valid() bool {
	return s == SettingEnabled || s == SettingDisabled || s == SettingEnforced
}

// Notification types the product ships with. More may be declared in config.
const (
	TypeIdentityVerification = "identity_verification"
	TypeNewTrustedDevice     = "new_trusted_device"
	TypeAccountShared        = "account_shared"
	TypeOTPReceived          = "otp_received"
)

// Baseline reasons.
const (
	ReasonWorkspaceDisabled = "workspace_disabled"
	ReasonEnforced          = "enforced"
	ReasonEnabled           = "enabled"
	ReasonUserOptOut        = "user_opt_out"
	ReasonNoDevices         = "no_devices"
	ReasonExpired           = "expired"
)

// Baseline applies DESIGN.md's rules: a disabled type is suppressed, an
// enforced type is delivered whatever the user says, an enabled type follows
// the user's preference (on when the user never said).
func Baseline(s Setting, pref *bool) Decision {
	switch s {
	case SettingDisabled:
		return Decision{Verdict: VerdictSuppress, Reason: ReasonWorkspaceDisabled}
	case SettingEnforced:
		return Decision{Verdict: VerdictDeliver, Reason: ReasonEnforced, Enforced: true}
	}
	if pref != nil && !*pref {
		return Decision{Verdict: VerdictSuppress, Reason: ReasonUserOptOut}
	}
	return Decision{Verdict: VerdictDeliver, Reason: ReasonEnabled}
}

// ErrLocked: a user tried to turn off a type the workspace enforces.
var ErrLocked = errors.New("locked by the workspace")

// EffectiveSettings returns the setting of every type in defaults (type →
// its configured default) for a workspace with the explicit choices given:
// the choice when there is a valid one, else the default. Types not in
// defaults are left out.
func EffectiveSettings(defaults, explicit map[string]Setting) map[string]Setting {
	eff := make(map[string]Setting, len(defaults))
	for t, def := range defaults {
		eff[t] = EffectiveSetting(t, def, explicit)
	}
	return eff
}

// EffectiveSetting is one type's setting: the workspace's valid explicit
// choice, else the type's default def.
func EffectiveSetting(typ string, def Setting, explicit map[string]Setting) Setting {
	if v, ok := explicit[typ]; ok && v.Valid() {
		return v
	}
	return def
}

// Preference is one type's state for a user: the workspace's setting,
// whether the user gets the type, and whether the user may change it.
type Preference struct {
	Enabled   bool    `json:"enabled"`
	Workspace Setting `json:"workspace"`
	Locked    bool    `json:"locked"`
}

// EffectivePreference combines a workspace setting and a user's explicit
// preference (nil: never set) by the Baseline rules.
func EffectivePreference(s Setting, pref *bool) Preference {
	return Preference{Enabled: Baseline(s, pref).Verdict == VerdictDeliver, Workspace: s, Locked: s != SettingEnabled}
}

// CheckPreference reports whether a user may set type typ to on under
// setting s: turning off an enforced type fails with ErrLocked.
func CheckPreference(typ string, s Setting, on bool) error {
	if !on && s == SettingEnforced {
		return fmt.Errorf("%s is enforced by the workspace and cannot be turned off: %w", typ, ErrLocked)
	}
	return nil
}
