package relay

import (
	"errors"
	"time"
)

// ErrConflict: the write lost to an earlier one (an actionable alert was
// already answered).
var ErrConflict = errors.New("conflict")

// Answer is a device's answer to an actionable alert (approve, deny). The
// first answer to an event wins; the store numbers answers in the order it
// committed them, and Seq is the id of the answer on the socket's
// GET /v1/actions/stream.
type Answer struct {
	Seq        uint64    `json:"seq"`
	Event      EventKey  `json:"event"`
	User       string    `json:"user"`
	DeviceID   string    `json:"device_id"`
	Action     string    `json:"action"`
	AnsweredAt time.Time `json:"answered_at"`
	// Cancelled marks the upstream's cancel (socket DELETE
	// /v1/events/{ws}/{id}), stored as the event's first answer so that
	// it and a device's answer exclude each other atomically. Its Action is
	// CancelAction and DeviceID CancelDevice; the actions stream skips it.
	Cancelled bool `json:"cancelled,omitempty"`
}

// The Action and DeviceID of an upstream cancel's Answer.
const (
	CancelAction = "cancel"
	CancelDevice = "upstream"
)
