// Package quiethours is the quiet_hours policy: during a user's quiet
// window (a daily local-time interval in an IANA time zone, from the
// plugin config) it defers non-urgent notifications to the end of the window,
// or suppresses them. Enforced notifications and exempt types (by default
// identity_verification, the MFA prompts) always pass.
//
// Config (the manifest's config {} block):
//
//	{"default": {"start": "22:00", "end": "07:00", "tz": "Europe/Paris"},
//	 "users":   {"u-42": {"start": "23:00", "end": "06:30", "tz": "America/New_York"}},
//	 "action":  "defer",                      // or "suppress"
//	 "exempt":  ["identity_verification"]}    // types that always pass
//
// A user without an entry uses "default"; without either, nothing is quiet.
// The package holds plain logic, tested natively; policies/quiet_hours/wasm
// exports it as a plugin.
package quiethours
