package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/tetratelabs/wazero/sys"

	"github.com/edgerelay/edgerelay/relay"
)

// FailureKind says how a plugin call failed.
type FailureKind string

// Failure kinds. Only KindTimeout wraps relay.ErrPolicyTimeout; every other
// kind wraps relay.ErrPolicyTrap.
const (
	KindTimeout       FailureKind = "timeout"        // ran past its deadline
	KindTrap          FailureKind = "trap"           // a wasm trap (unreachable, out of bounds, ...)
	KindPanic         FailureKind = "panic"          // a guest language panic (reported on stderr, then a trap or exit)
	KindExit          FailureKind = "exit"           // the guest called proc_exit
	KindMemory        FailureKind = "memory"         // the guest ran out of linear memory
	KindStackOverflow FailureKind = "stack_overflow" // the guest recursed too deep
	KindBadOutput     FailureKind = "bad_output"     // a bad pointer, length or output
)

// Error is a plugin failure: a trap, panic, exit, timeout, memory overrun
// or bad output. It matches relay.ErrPolicyTimeout (KindTimeout) or
// relay.ErrPolicyTrap (every other kind) with errors.Is.
//
// Error() never includes what the guest printed: a guest's output can hold
// event data (a panic message with an OTP), so it stays in Stderr, for
// callers that may show it (relayctl plugin test, debug logs via
// GuestOutput).
type Error struct {
	Plugin string      // the plugin's name
	Kind   FailureKind // what went wrong
	Stderr string      // the first or last bytes (at most 300) the guest wrote to stdout/stderr
	Err    error       // the underlying error
}

// GuestOutput returns Stderr fit for a log: every run of 4 or more digits
// masked, control characters escaped.
func (e *Error) GuestOutput() string {
	return maskDigits(e.Stderr)
}

// maskDigits replaces every run of 4 or more decimal digits (any script)
// with "••••".
func maskDigits(s string) string {
	var b strings.Builder
	run := 0
	flush := func(digits string) {
		if run >= 4 {
			b.WriteString("••••")
		} else {
			b.WriteString(digits)
		}
		run = 0
	}
	start := 0
	for i, r := range s {
		if unicode.IsDigit(r) {
			if run == 0 {
				start = i
			}
			run++
			continue
		}
		if run > 0 {
			flush(s[start:i])
		}
		b.WriteRune(r)
	}
	if run > 0 {
		flush(s[start:])
	}
	return b.String()
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("policy ")
	b.WriteString(e.Plugin)
	b.WriteString(": ")
	b.WriteString(string(e.Kind))
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Stderr != "" {
		b.WriteString(" (the guest printed output: see debug logs)")
	}
	return b.String()
}

// Unwrap returns the sentinel for the kind and the underlying error.
func (e *Error) Unwrap() []error {
	s := relay.ErrPolicyTrap
	if e.Kind == KindTimeout {
		s = relay.ErrPolicyTimeout
	}
	return []error{s, e.Err}
}

// badOutputError is a host-side check on what the guest returned.
type badOutputError struct{ msg string }

func (e *badOutputError) Error() string { return e.msg }

func badOutput(format string, args ...any) error {
	return &badOutputError{msg: fmt.Sprintf(format, args...)}
}

// classify names the kind of a guest failure from the error wazero returned
// and what the guest printed.
func classify(err error, stderr string, memFull bool) FailureKind {
	var bo *badOutputError
	if errors.As(err, &bo) {
		return KindBadOutput
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errKillSwitch) {
		return KindTimeout
	}
	if errors.Is(err, errCallDepth) {
		return KindStackOverflow
	}
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case sys.ExitCodeDeadlineExceeded, sys.ExitCodeContextCanceled:
			return KindTimeout
		}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "stack overflow") || strings.Contains(stderr, "stack overflow") ||
		strings.Contains(stderr, "stack exceeds"):
		return KindStackOverflow
	case strings.Contains(stderr, "out of memory") || strings.Contains(stderr, "memory allocation of"):
		return KindMemory
	case strings.Contains(stderr, "panic:") || strings.Contains(stderr, "panicked at"):
		return KindPanic
	}
	if ee != nil {
		return KindExit
	}
	if memFull {
		return KindMemory
	}
	return KindTrap
}
