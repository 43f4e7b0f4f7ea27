package relay

// Log keys used across components, so lines about the same thing grep alike.
const (
	LogKeyEventID   = "event_id"
	LogKeyWorkspace = "workspace"
	LogKeyUser      = "user"
	LogKeyDevice    = "device_id"
	LogKeyProvider  = "provider"
	LogKeyPlatform  = "platform"
	LogKeyApp       = "app"
	LogKeyPolicy    = "policy"
	LogKeyAttempt   = "attempt"
	LogKeyType      = "type"
	LogKeyError     = "error"
)
