// Package queue schedules delivery jobs: it keeps every open (event, device)
// job ordered by due time, wakes when the next one is due (no polling), sends
// it through the notifier of the device's app and platform with bounded
// concurrency, and records each outcome in the store: delivered, retry at T
// (exponential backoff with jitter, floored by the provider's Retry-After),
// expired, failed, or token removed.
//
// The queue never sends after an alert's ExpiresAt and bounds every send's
// deadline by it. It does not decide what to send: jobs arrive already
// decided (package pipeline) and are durable in the store before they are
// added, so a job in flight when the process dies is sent again after a
// restart (at-least-once; the stable collapse id makes a duplicate collapse
// on the phone).
package queue
