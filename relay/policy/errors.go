package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
type Error struct {
	Plugin string      // the plugin's name
	Kind   FailureKind // what went wrong
	Stderr string      // the last bytes (at most 300) the guest wrote to stdout/stderr
	Err    error       // the underlying error
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
		fmt.Fprintf(&b, " (guest output: %q)", e.Stderr)
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
