package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// Notifier sends one alert to one device.
//
// # Notes
//
//   - Notify is safe for concurrent use and makes exactly one delivery attempt
//     as far as the caller can tell (a provider SDK may retry inside it, but
//     never past ctx's deadline or the alert's ExpiresAt).
//   - It returns nil when the provider accepted the push, an error wrapping
//     relay.ErrExpired when the alert expired before it could be sent, and a
//     *Error otherwise. Callers inspect the error with Classify or errors.As.
//   - Notify does not modify d or a.
type Notifier interface {
	Notify(ctx context.Context, d relay.Device, a *relay.Alert) error
}

// Outcome says what the caller should do after a failed send. The zero value
// means no outcome (a nil error).
type Outcome int

// Outcomes of a failed send.
const (
	// Retry: a transient failure; send again later, after RetryAfter if set.
	Retry Outcome = iota + 1
	// DropToken: the device token is dead; remove the device, never retry.
	DropToken
	// Permanent: this message can never be delivered as it is; do not retry.
	Permanent
	// ConfigError: the relay's provider configuration (key, certificate,
	// topic, project) is wrong; retrying will not help until an operator
	// fixes it. Callers may keep the message queued until it expires.
	ConfigError
)

// String returns the outcome's lowercase name.
func (o Outcome) String() string {
	switch o {
	case Retry:
		return "retry"
	case DropToken:
		return "drop-token"
	case Permanent:
		return "permanent"
	case ConfigError:
		return "config-error"
	}
	return "none"
}

// ErrNotSent marks a send whose context ended before its request began
// (in the work before it, such as the relay's answer check on a store
// under load). It says nothing about the provider, and the job was not
// attempted: the queue hands it back. A send that timed out waiting for a
// free stream is not marked: every stream busy until then is the
// provider's doing as often as not.
var ErrNotSent = errors.New("not sent")

// Error is a failed send, classified.
type Error struct {
	Provider    string        // "apns" or "fcm"
	Status      int           // HTTP status, 0 when no response came back
	Reason      string        // the provider's reason or error code, e.g. "Unregistered"
	Outcome     Outcome       // what to do next
	RetryAfter  time.Duration // the provider's hint (0: use the caller's backoff)
	TokenDeadAt time.Time     // APNs 410: when the token stopped being valid (zero: unknown)
	Err         error         // the underlying error, if any
}

// Error describes the failure, e.g.
// "apns: 410 Unregistered (drop-token)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Provider)
	b.WriteString(":")
	if e.Status != 0 {
		fmt.Fprintf(&b, " %d", e.Status)
	}
	if e.Reason != "" {
		b.WriteString(" ")
		b.WriteString(e.Reason)
	}
	fmt.Fprintf(&b, " (%s", e.Outcome)
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
	}
	b.WriteString(")")
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is makes a DropToken error match relay.ErrUnregistered.
func (e *Error) Is(target error) bool {
	return target == relay.ErrUnregistered && e.Outcome == DropToken
}

// Retryable reports whether the send may be tried again.
func (e *Error) Retryable() bool { return e.Outcome == Retry }

// Classify says what to do after err. A *Error (anywhere in the chain) gives
// its own Outcome and RetryAfter. Otherwise: nil has no outcome (0);
// relay.ErrExpired is Permanent; relay.ErrUnregistered is DropToken;
// context deadlines, cancellations and any other error (transport failures)
// are Retry.
func Classify(err error) (Outcome, time.Duration) {
	if err == nil {
		return 0, 0
	}
	var de *Error
	if errors.As(err, &de) {
		return de.Outcome, de.RetryAfter
	}
	switch {
	case errors.Is(err, relay.ErrExpired):
		return Permanent, 0
	case errors.Is(err, relay.ErrUnregistered):
		return DropToken, 0
	}
	return Retry, 0
}

// SendTimeout bounds one provider attempt when neither the caller's context
// nor the alert's expiry is sooner.
const SendTimeout = 30 * time.Second

// Deadline returns the deadline of one send started at now: the earliest of
// ctx's deadline, the alert's ExpiresAt (when set) and now+max.
func Deadline(ctx context.Context, now time.Time, expiresAt time.Time, max time.Duration) time.Time {
	dl := now.Add(max)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	if !expiresAt.IsZero() && expiresAt.Before(dl) {
		dl = expiresAt
	}
	return dl
}

// SendContext returns ctx bounded by Deadline(ctx, now, expiresAt, max),
// and its cancel function. When ctx's own deadline is already that
// deadline (the queue bounds every send by its lease), it returns ctx
// itself: a derived context costs a timer per push.
func SendContext(ctx context.Context, now time.Time, expiresAt time.Time, max time.Duration) (context.Context, context.CancelFunc) {
	dl := Deadline(ctx, now, expiresAt, max)
	if d, ok := ctx.Deadline(); ok && !dl.Before(d) {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, dl)
}

// ParseRetryAfter reads a Retry-After header value, in seconds or as an HTTP
// date, relative to now. It returns 0 for an empty, malformed or past value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// maxRetryAfter caps a provider's hint so that a bogus value cannot park a
// message forever.
const maxRetryAfter = 24 * time.Hour

// redactedToken stands for a device token in error messages.
const redactedToken = "<device-token>"

// StripToken returns err with every occurrence of the device token removed
// from its message: transport errors name the request URL (APNs puts the
// token in the path) and provider messages may quote it, and these
// messages end up in a job's last_error, readable over the socket API, and
// in logs. A *Error keeps its fields; its Err is replaced by an error with
// the cleaned message that still unwraps to the original, so errors.Is and
// errors.As work as before (do not log what they find). nil stays nil.
func StripToken(err error, token string) error {
	if err == nil || token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	var de *Error
	if errors.As(err, &de) && de == err {
		cp := *de
		if cp.Err != nil {
			cp.Err = &strippedError{msg: strings.ReplaceAll(cp.Err.Error(), token, redactedToken), err: cp.Err}
		}
		cp.Reason = strings.ReplaceAll(cp.Reason, token, redactedToken)
		return &cp
	}
	return &strippedError{msg: strings.ReplaceAll(err.Error(), token, redactedToken), err: err}
}

// strippedError is an error whose message had a device token removed.
type strippedError struct {
	msg string
	err error
}

func (e *strippedError) Error() string { return e.msg }
func (e *strippedError) Unwrap() error { return e.err }
