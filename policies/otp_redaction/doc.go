// Package otpredaction is the otp_redaction policy: an otp_received
// notification must never show its code on the lock screen. The policy
// replaces the body with a neutral text ("Tap to view your code for
// github") and masks, in the title, the event's data "code" and every run
// of 4 to 8 digits (digit groups split by one space or hyphen, such as
// "123 456", count as one run). The code stays in the event's data, which
// the app reads after unlock (and which the relay can seal); nothing secret
// is moved into a visible field.
//
// Config:
//
//	{"body": "Tap to view your code for {account}"}
//
// {account} is replaced by the event's data "account" (masked the same way),
// or "your account" when there is none.
package otpredaction
