package relay

import "errors"

// Errors shared between packages.
var (
	// ErrNotFound: no such event, device or dead letter.
	ErrNotFound = errors.New("not found")
	// ErrDuplicate: an event with the same (workspace, id) was accepted before.
	ErrDuplicate = errors.New("duplicate")
	// ErrUnregistered: the provider says the device token is dead.
	ErrUnregistered = errors.New("device token unregistered")
	// ErrExpired: the event's expires_at has passed.
	ErrExpired = errors.New("expired")
	// ErrClosed: the component is shut down.
	ErrClosed = errors.New("closed")
	// ErrPolicyTimeout: a plugin ran past its deadline.
	ErrPolicyTimeout = errors.New("policy timeout")
	// ErrPolicyTrap: a plugin trapped, panicked or exited.
	ErrPolicyTrap = errors.New("policy trap")
)
