// Package newdeviceescalation is the new_device_escalation policy: an
// identity_verification or new_trusted_device event whose data "country" is
// not one of the user's usual countries is escalated — its interruption
// level raised (time-sensitive by default, or critical) and its title
// replaced by a clear question such as "New sign-in from BR — was this you?".
//
// Config:
//
//	{"usual":   {"u-42": ["FR", "DE"]},   // per-user usual countries
//	 "default": ["US"],                   // for users without an entry
//	 "level":   "time-sensitive"}         // or "critical", "active", "passive"
//
// Countries compare case-insensitively. An event without a country, or a
// user with no usual countries at all, passes unchanged.
package newdeviceescalation
