// Package queue sends the jobs of the store's schedule (store.Schedule):
// each lane (an app and platform, relay.Lane) leases due jobs, high
// priority first, sends them through its notifier with bounded
// concurrency and settles each lease with the outcome. The schedule is the
// only state: the queue holds nothing but the sends in flight, so several
// relays on one shared store (jetstream) share the work, and a relay that
// dies leaves its leased jobs to the others once the leases end.
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
// A delivered actionable alert, with Options.WithdrawOnExpiry, stays open
// as withdraw_due (shown as delivered) until it expires; then the device
// gets its expiry withdraw and the job ends delivered.
//
// pending, deferred and withdraw_due are open; the others are final. "In flight" is a
// lease (Options.LeaseTTL): a job whose relay dies mid-send is leased again
// once the lease ends, by any relay (at-least-once; the stable collapse id
// makes a duplicate replace the first copy on the phone). A send never
// runs past its lease. A job is due at next_at, or, when that is unset, at
// the time it became pending; within a lane every due high-priority job
// goes before any normal one, so a flood of account_shared never delays a
// sign-in.
//
// # Memory and backpressure
//
// Nothing waits in memory: a lane leases at most as many jobs as it has
// free send slots. A provider outage grows the store, not the heap. Admit
// refuses new normal-priority events once the schedule holds
// (1-HighReserve) × Options.MaxOpenJobs open jobs, and high-priority ones
// at MaxOpenJobs (ingest answers 503), so the relay never accepts what it
// cannot keep and sign-ins get through a backlog of shares.
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
// line is logged and Options.OnBreaker called; the lane leases nothing until
// the cool-down ends (its jobs wait in the schedule, no attempts spent);
// then one job is sent as a probe.
// Any answer that shows the provider works closes the breaker and the
// parked jobs flow again. Options.OutageThreshold consecutive retryable
// failures (the provider is down: 5xx, transport errors) open the breaker
// the same way, with a WARN line, so an outage parks the backlog on disk
// instead of retrying it in a storm. A send cut by its lease's end after it
// began with under a third of a lease left is not counted: it shows an
// overloaded relay, not a provider that does not answer.
//
// # Dead letters and token removal
//
// A permanent failure (a message the provider will never accept) becomes a
// dead letter (store.Schedule.Settle) with its reason; DeadLettersHandler and
// ReplayHandler serve GET /v1/deadletters and POST
// /v1/deadletters/{id}/replay. A dead token removes the device, unless the
// device re-registered with a new token meanwhile: then the job is sent
// again to the new token.
//
// The queue does not decide what to send: jobs enter the schedule already
// decided (package pipeline), and Scheduled wakes their lane at once.
package queue
