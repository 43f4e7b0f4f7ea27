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
}
