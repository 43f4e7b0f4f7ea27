package relay

import "time"

// Platform is a device's push platform.
type Platform string

// Platforms.
const (
	PlatformIOS     Platform = "ios"
	PlatformAndroid Platform = "android"
)

// Valid reports whether p is a known platform.
func (p Platform) Valid() bool { return p == PlatformIOS || p == PlatformAndroid }

// Environment of an APNs token: which Apple host it belongs to.
const (
	EnvironmentProduction = "production"
	EnvironmentSandbox    = "sandbox"
)

// Device is a phone registered by a user of a workspace.
type Device struct {
	Workspace   string    `json:"workspace"`
	User        string    `json:"user"`
	ID          string    `json:"device_id"`
	Platform    Platform  `json:"platform"`
	Token       string    `json:"token"`
	App         string    `json:"app"`
	Environment string    `json:"environment,omitempty"`
	Name        string    `json:"name,omitempty"`
	PublicKey   string    `json:"public_key,omitempty"`
	UpdatedAt   time.Time `json:"updated_at"`
}
