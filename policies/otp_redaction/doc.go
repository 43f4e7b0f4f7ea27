// Package otpredaction is the otp_redaction policy: an otp_received
// notification must never show its code on the lock screen. The policy
// replaces the body with a neutral text ("Tap to view your code for
// github") and masks, in the title, the event's data "code" (however the
// title spells it: any case, any separators, any script's digits), every
// run of 4 or more digits (digit groups joined by up to 3 spaces or
// punctuation marks, such as "123.456", "123,456", "123_456", "123/456" or
// "123  456", count as one run; digits are any Unicode decimal digits, so
// full-width "１２３４５６" and Arabic-Indic "١٢٣٤٥٦" are masked too) and
// every word mixing letters with at least 2 digits ("AB12CD"). The code
// stays in the event's data, which
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
