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
	// StateWithdrawDue is a delivered actionable alert whose job stays in
	// the schedule until the alert expires: then, if it was neither
	// answered nor cancelled, the device gets the silent push that
	// withdraws the prompt (ExpiryWithdraw), and the job ends delivered.
	// It is internal: GET /v1/events shows it as delivered (Public).
	StateWithdrawDue DeliveryState = "withdraw_due"
)

// Final reports whether no more sends will happen for a job in state s.
func (s DeliveryState) Final() bool {
	return s != StatePending && s != StateDeferred && s != StateWithdrawDue
}

// Public is the state as GET /v1/events reports it: StateWithdrawDue is
// delivered.
func (s DeliveryState) Public() DeliveryState {
	if s == StateWithdrawDue {
		return StateDelivered
	}
	return s
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

// WithdrawTTL is how long after an answer, a cancel or the expiry of an
// alert its withdraw push may still be delivered.
const WithdrawTTL = 10 * time.Minute

// A withdraw push's data "action" is the answer's action; a push that is
// not an answer's also carries data "reason" (WithdrawReasonKey): why the
// alert went away.
const (
	WithdrawReasonKey = "reason"
	WithdrawExpired   = "expired"   // expired unanswered (data "action" too)
	WithdrawCancelled = "cancelled" // the upstream cancelled it
)

// WithdrawAlert returns the silent push that tells a device to remove the
// prompt a, which went away at at (answered with action, cancelled or
// expired): same event id, type, thread and collapse id as a, Silent (APNs
// background push with content-available; FCM data message; both
// notifiers add "withdraw":"true", "event_id" and "type"), Data
// {"action": action}, normal priority, expiring WithdrawTTL after at. nil
// when a is nil (nothing was rendered to withdraw).
func WithdrawAlert(a *Alert, action string, at time.Time) *Alert {
	if a == nil {
		return nil
	}
	return &Alert{
		EventID:    a.EventID,
		Workspace:  a.Workspace,
		Type:       a.Type,
		Data:       map[string]string{"action": action},
		Priority:   PriorityNormal,
		ThreadID:   a.ThreadID,
		CollapseID: a.CollapseID,
		ExpiresAt:  at.Add(WithdrawTTL),
		Silent:     true,
	}
}

// ExpiryWithdraw returns the withdraw push of actionable alert a once it
// expired unanswered (data "action" and "reason" both "expired"); nil when
// a is nil.
func ExpiryWithdraw(a *Alert) *Alert {
	if a == nil {
		return nil
	}
	w := WithdrawAlert(a, WithdrawExpired, a.ExpiresAt)
	w.Data[WithdrawReasonKey] = WithdrawExpired
	return w
}

// Withdrawable reports whether a delivered alert a is withdrawn from its
// device when it expires unanswered: a visible prompt with actions.
func Withdrawable(a *Alert) bool { return a != nil && len(a.Actions) > 0 && !a.Silent }

// Lane names the provider connection that sends a device's pushes: one per
// app and platform. A slow or failing lane never holds up another.
func Lane(app string, p Platform) string { return app + "/" + string(p) }

// Lane returns the job's lane.
func (j *Job) Lane() string { return Lane(j.App, j.Platform) }
