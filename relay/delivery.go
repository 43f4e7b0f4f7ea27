package relay

import "time"

// DeliveryState is where one (event, device) job stands.
type DeliveryState string

// Delivery states, as GET /v1/events reports them.
const (
	StatePending      DeliveryState = "pending"
	StateDeferred     DeliveryState = "deferred"
	StateDelivered    DeliveryState = "delivered"
	StateSuppressed   DeliveryState = "suppressed"
	StateExpired      DeliveryState = "expired"
	StateFailed       DeliveryState = "failed"
	StateTokenRemoved DeliveryState = "token_removed"
)

// Final reports whether no more sends will happen for a job in state s.
func (s DeliveryState) Final() bool {
	return s != StatePending && s != StateDeferred
}

// Job is one (event, device) delivery.
type Job struct {
	Event    EventKey `json:"event"`
	DeviceID string   `json:"device_id"`
	Platform Platform `json:"platform"`
	// App is the device's app when the job was made: with Platform it
	// names the lane (provider) that sends the job.
	App       string        `json:"app,omitempty"`
	State     DeliveryState `json:"state"`
	Attempts  int           `json:"attempts"`
	LastError string        `json:"last_error,omitempty"`
	NextAt    time.Time     `json:"next_at,omitzero"`
	ExpiresAt time.Time     `json:"expires_at"`
	UpdatedAt time.Time     `json:"updated_at"`
}

// JobKey identifies a job.
type JobKey struct {
	Event    EventKey
	DeviceID string
}

// Key returns the job's key.
func (j *Job) Key() JobKey { return JobKey{Event: j.Event, DeviceID: j.DeviceID} }

// Alert is what a notifier sends to one device: the event after the decision
// chain, rendered for push.
type Alert struct {
	EventID           string            // the event's id, for the app and logs
	Workspace         string            // the event's workspace
	Type              string            // notification type
	Title             string            // visible title
	Body              string            // visible body
	Data              map[string]string // custom data (ids, never secrets unless sealed)
	Category          string            // APNs category / Android click action for actionable types
	Actions           []string          // offered answers (approve, deny)
	Priority          Priority          // high | normal
	InterruptionLevel string            // passive | active | time-sensitive | critical
	Sound             string            // sound name
	ThreadID          string            // thread / group id
	CollapseID        string            // stable per event, ≤ 64 bytes
	ExpiresAt         time.Time         // never delivered after
	Silent            bool              // background push (no visible alert)
	MutableContent    bool              // APNs mutable-content: 1 (the app's extension opens a sealed alert)
}

// Lane names the provider connection that sends a device's pushes: one per
// app and platform. A slow or failing lane never holds up another.
func Lane(app string, p Platform) string { return app + "/" + string(p) }

// Lane returns the job's lane.
func (j *Job) Lane() string { return Lane(j.App, j.Platform) }
