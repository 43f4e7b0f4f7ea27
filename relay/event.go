package relay

import (
	"time"
)

// Limits on what the socket API accepts (DESIGN.md "Event").
const (
	MaxEventBytes   = 16 << 10 // one JSON event
	MaxBatchEvents  = 10_000   // events in one NDJSON batch
	MaxIDLen        = 128      // id, workspace, user, device id
	MaxTitleLen     = 256
	MaxBodyLen      = 4096
	MaxActions      = 8
	MaxDataEntries  = 32
	MaxActionLen    = 64
	MaxDataKeyLen   = 64
	MaxDataValueLen = 1024
)

// Priority of a notification.
type Priority string

// Priorities.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
)

// Valid reports whether p is a known priority.
func (p Priority) Valid() bool { return p == PriorityHigh || p == PriorityNormal }

// Event is what an upstream service posts on the socket. (Workspace, ID) is
// its idempotency key. ExpiresAt is filled at ingest from the type's TTL when
// the poster leaves it empty, and never changes afterwards.
type Event struct {
	ID         string            `json:"id"`
	Workspace  string            `json:"workspace"`
	User       string            `json:"user"`
	Type       string            `json:"type"`
	Title      string            `json:"title,omitempty"`
	Body       string            `json:"body,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	Actions    []string          `json:"actions,omitempty"`
	Priority   Priority          `json:"priority,omitempty"`
	OccurredAt time.Time         `json:"occurred_at,omitzero"`
	ExpiresAt  time.Time         `json:"expires_at,omitzero"`
}

// Key returns the event's idempotency key.
func (e *Event) Key() EventKey { return EventKey{Workspace: e.Workspace, ID: e.ID} }

// Expired reports whether the event must no longer be delivered at now.
func (e *Event) Expired(now time.Time) bool {
	return !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt)
}

// EventKey identifies an event: (workspace, id).
type EventKey struct {
	Workspace string `json:"workspace"`
	ID        string `json:"id"`
}

func (k EventKey) String() string { return k.Workspace + "/" + k.ID }
