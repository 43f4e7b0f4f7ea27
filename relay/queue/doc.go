// Package queue schedules delivery jobs: it keeps open (event, device) jobs
// ordered by due time, wakes when the next one is due (no polling), sends
// it through the notifier of the device's app and platform (its lane) with
// bounded concurrency, and records each outcome in the store.
//
// # States
//
// A job is one (event, device) delivery. Its states, as GET /v1/events
// shows them (relay.DeliveryState):
//
//	                 ┌────────────── retry at T (pending, next_at = T) ◄─┐
//	                 ▼                                                   │
//	deferred ──► pending ──► in flight ──► delivered                    │
//	(next_at)    (due)      (one send)  ├─► retry ───────────────────────┘
//	                                    ├─► expired        (never sent or retried past expires_at)
//	                                    ├─► failed         (permanent: a dead letter; replay re-opens it)
//	                                    └─► token_removed  (the provider says the token is dead)
//	suppressed, expired at decision time: final, never queued (package pipeline).
//
// pending and deferred are open; the others are final. "In flight" is not
// stored: it is a lease held by the running process. A job in flight when
// the process dies is still open (pending) in the store, so the next start
// sends it again (at-least-once; the stable collapse id makes a duplicate
// replace the first copy on the phone). A job is due at next_at, or, when
// that is unset, at the time it became pending: the due index of the store
// (store.DueIndex) orders open jobs that way, and a restart resumes in that
// order.
//
// # Memory
//
// With a store that keeps the due index, the queue holds at most
// Options.MaxInMemory waiting jobs (plus the sends in flight). When more are
// open, the latest-due are dropped from memory — they are on disk — and a
// pager reads the next ones in due order whenever the window falls below
// half. A provider outage therefore grows the store, not the heap. Admit
// refuses new events once Options.MaxOpenJobs jobs are open (ingest answers
// 503), so the relay never accepts what it cannot keep.
//
// # Retries
//
// Exponential backoff with jitter (Backoff), floored by the provider's
// Retry-After; a retry due at or after the alert's expires_at makes the job
// expired instead, and every send's deadline is the alert's expires_at at
// the latest. APNs 429 TooManyRequests throttles the device token: the
// token's other jobs wait out the same delay without spending attempts.
//
// # Circuit breaker
//
// Configuration errors (delivery.ConfigError: bad key or certificate, wrong
// topic, FCM auth) are the operator's to fix, so retrying every job against
// them only burns attempts. After Options.BreakerThreshold consecutive
// configuration errors a lane's breaker opens for Options.BreakerCooldown
// (doubling after each failed probe, up to BreakerMaxCooldown): one ERROR
// line is logged and Options.OnBreaker called; due jobs are parked until the
// cool-down ends without spending attempts; then one job is sent as a probe.
// Any answer that shows the provider works closes the breaker and the
// parked jobs flow again. Options.OutageThreshold consecutive retryable
// failures (the provider is down: 5xx, transport errors) open the breaker
// the same way, with a WARN line, so an outage parks the backlog on disk
// instead of retrying it in a storm.
//
// # Dead letters and token removal
//
// A permanent failure (a message the provider will never accept) becomes a
// dead letter (store.DeadLetters) with its reason; DeadLettersHandler and
// ReplayHandler serve GET /v1/deadletters and POST
// /v1/deadletters/{id}/replay. A dead token removes the device, unless the
// device re-registered with a new token meanwhile: then the job is sent
// again to the new token.
//
// The queue does not decide what to send: jobs arrive already decided
// (package pipeline) and durable in the store.
package queue
