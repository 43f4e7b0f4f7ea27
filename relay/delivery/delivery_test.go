package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

func TestClassify(t *testing.T) {
	dead := &Error{Provider: "apns", Status: 410, Reason: "Unregistered", Outcome: DropToken}
	tests := []struct {
		name    string
		err     error
		outcome Outcome
		after   time.Duration
	}{
		{"nil", nil, 0, 0},
		{"drop token", dead, DropToken, 0},
		{"wrapped error", fmt.Errorf("send: %w", &Error{Outcome: Retry, RetryAfter: time.Minute}), Retry, time.Minute},
		{"config", &Error{Outcome: ConfigError}, ConfigError, 0},
		{"deadline", context.DeadlineExceeded, Retry, 0},
		{"canceled", fmt.Errorf("push: %w", context.Canceled), Retry, 0},
		{"expired", fmt.Errorf("send: %w", relay.ErrExpired), Permanent, 0},
		{"unregistered", relay.ErrUnregistered, DropToken, 0},
		{"other", errors.New("connection reset"), Retry, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, after := Classify(tc.err)
			if o != tc.outcome || after != tc.after {
				t.Fatalf("Classify = %v, %v; want %v, %v", o, after, tc.outcome, tc.after)
			}
		})
	}
}

func TestErrorIsUnregistered(t *testing.T) {
	inner := errors.New("boom")
	e := &Error{Provider: "fcm", Status: 404, Reason: "UNREGISTERED", Outcome: DropToken, Err: inner}
	if !errors.Is(e, relay.ErrUnregistered) || !errors.Is(fmt.Errorf("x: %w", e), relay.ErrUnregistered) {
		t.Fatal("DropToken error does not match relay.ErrUnregistered")
	}
	if !errors.Is(e, inner) {
		t.Fatal("Unwrap lost the inner error")
	}
	if errors.Is(&Error{Outcome: Retry}, relay.ErrUnregistered) {
		t.Fatal("Retry error matches relay.ErrUnregistered")
	}
	want := "fcm: 404 UNREGISTERED (drop-token): boom"
	if e.Error() != want {
		t.Fatalf("Error() = %q, want %q", e.Error(), want)
	}
	r := &Error{Provider: "apns", Status: 429, Reason: "TooManyRequests", Outcome: Retry, RetryAfter: 2 * time.Second}
	if got := r.Error(); got != "apns: 429 TooManyRequests (retry, retry after 2s)" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestDeadline(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	bg := context.Background()
	if got := Deadline(bg, now, time.Time{}, SendTimeout); !got.Equal(now.Add(SendTimeout)) {
		t.Fatalf("no expiry: %v", got)
	}
	if got := Deadline(bg, now, now.Add(time.Second), SendTimeout); !got.Equal(now.Add(time.Second)) {
		t.Fatalf("expiry sooner: %v", got)
	}
	ctx, cancel := context.WithDeadline(bg, now.Add(2*time.Second))
	defer cancel()
	if got := Deadline(ctx, now, now.Add(time.Minute), SendTimeout); !got.Equal(now.Add(2 * time.Second)) {
		t.Fatalf("ctx sooner: %v", got)
	}
}

func TestSendContext(t *testing.T) {
	now := time.Now()
	bg := context.Background()
	// The caller's deadline is the soonest: its context is used as is.
	ctx, cancel := context.WithDeadline(bg, now.Add(2*time.Second))
	defer cancel()
	sctx, scancel := SendContext(ctx, now, now.Add(time.Minute), SendTimeout)
	scancel()
	if sctx != ctx || sctx.Err() != nil {
		t.Fatalf("ctx sooner: got a derived context (err %v), want the caller's", sctx.Err())
	}
	// The alert's expiry is sooner: a derived context ends then, and its
	// cancel ends it without touching the caller's.
	sctx, scancel = SendContext(ctx, now, now.Add(time.Second), SendTimeout)
	if d, _ := sctx.Deadline(); !d.Equal(now.Add(time.Second)) {
		t.Fatalf("expiry sooner: deadline %v, want %v", d, now.Add(time.Second))
	}
	scancel()
	if sctx.Err() == nil || ctx.Err() != nil {
		t.Fatalf("cancel: derived err %v, caller's err %v", sctx.Err(), ctx.Err())
	}
	// No deadline on the caller's: the send timeout bounds the send.
	sctx, scancel = SendContext(bg, now, time.Time{}, SendTimeout)
	defer scancel()
	if d, ok := sctx.Deadline(); !ok || !d.Equal(now.Add(SendTimeout)) {
		t.Fatalf("no deadline: got %v %v, want %v", d, ok, now.Add(SendTimeout))
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"  ", 0},
		{"120", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"abc", 0},
		{"99999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "1", "120", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1e9"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseRetryAfter(s, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v out of range", s, d)
		}
	})
}
