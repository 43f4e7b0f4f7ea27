package relay

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
