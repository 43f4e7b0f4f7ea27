// Package jetstream is edgerelay's cluster store: store.Backend on NATS
// JetStream (github.com/nats-io/nats.go/jetstream), shared by every relay
// that opens the same Prefix, with 1 or 3 replicas.
//
// # Layout
//
// With P the prefix (default "relay"); every variable part of a key or
// subject (workspace, id, user, device, lane) is one base64url token, so
// dots and wildcards in ids are harmless:
//
//	KV P_events   ev.<ws>.<id>         the event record: event, decision, alert, jobs with their leases
//	              ans.<ws>.<id>        answered mark (first answer), kept as long as the event
//	              dl.<id>              dead letter; id = failure time (hex ns) + job hash, so ids sort by time
//	KV P_dir      dev.<ws>.<user>.<id> device
//	              tok.<ws>.<hash>      token index: which device holds a push token (a hint, checked)
//	              set.<ws>             workspace settings      pref.<ws>.<user>  preferences
//	KV P_recent   rc.<ws>.<user>       user.recent counters (memory storage, idle keys expire after 1h)
//	stream P_jobs      P.jobs.<lane>.<h|n>   work queue: one message per open job, naming it
//	stream P_answers   P.answers.<ws>.<id>   the answer log; the stream sequence is Answer.Seq
//	stream P_accepted  P.accepted            undecided index: keys of accepted events
//	stream P_audit     P.audit               the audit log; the stream sequence is AuditEntry.Seq
//
// The KV buckets' streams have direct get off: every read goes to the
// stream leader and sees every acknowledged write, whichever server a
// relay is connected to.
//
// # Records and compare-and-set
//
// An event record is written once by AddEvents with a KV create (which
// fails if the key exists: (workspace, id) is idempotent for as long as
// the record is kept, not just for a dedup window), and after that only
// by read-modify-write with the revision read (Update with revision; on a
// conflict read again). Decide writes the decision only if none is there
// (first decision wins; relay.ErrConflict otherwise). Devices, settings
// and preferences are merged the same way, so two relays never lose each
// other's writes. A replicated stream also refuses a create while another
// write of the key is in flight; a create is reported duplicate only once
// the other write can be read.
//
// # Schedule
//
// Each lane (app/platform) and priority has a subject and a durable pull
// consumer on the work-queue stream, shared by all relays, so a message
// is delivered to one relay at a time. Decide publishes one message per
// open job (before it writes the record: a relay dying in between leaves
// messages that wait for the event's decision; recovery decides it).
// Lease fetches the high-priority consumer first, then the normal one,
// and checks each message against its record:
//
//   - a job not yet due, or under another relay's live lease, goes back
//     with NakWithDelay until then (no attempt is counted: attempts live
//     in the record);
//   - a final or missing job (or one of a decision that lost) is acked
//     away;
//   - a due job gets a new lease generation, owner and end in the record
//     (compare-and-set), and its message is delayed by the lease TTL with
//     NakWithDelay: the message is the lease's timer. If the lease is not
//     settled in time the message comes back and any relay leases the job.
//
// The Ticket holds the lease generation and the message's reply subject.
// Settle writes the record only if the job's generation is still the
// ticket's (else store.ErrLeaseLost), and bumps it; then it acks the
// message (final state; the ack is confirmed) or delays it to the job's
// next due time (retry, parked job). The record is the arbiter throughout:
// a lost ack or nak, or a duplicate message, is repaired when the message
// comes back and is checked again. The consumers' AckWait
// (Options.FetchAckWait, 30 s) only covers a relay dying between a fetch
// and turning the message into a lease. Lease only fetches without
// waiting; with Wait, it waits on a core NATS subscription to the lane's
// job subjects (a doorbell) and fetches again when a job is published.
//
// Lease ends are written with the leasing relay's clock and compared with
// another relay's: keep the relays' clocks synchronized (NTP). The lease
// timer itself (the delayed message) runs on the server.
//
// OpenJobs and LaneStats count messages per subject (the lane consumer's
// pending and unacked counts where it exists: it learns of an ack first).
// LaneStats reads the records of each lane's messages (up to 5,000 per
// lane) for leases, owners and due jobs.
//
// Dead letters are keys of the event bucket, written before the failed
// job's record. ReplayDeadLetter reopens the job with a compare-and-set
// on the record that requires the job to be failed by that dead letter,
// so two replays cannot both win; it then publishes the job's message and
// marks the dead letter replayed.
//
// # Undecided events
//
// AddEvents also publishes, in parallel with the creates, one message of
// the undecided index per batch (up to 1,000 keys). Undecided walks the
// index oldest first, reads each named record, calls fn for undecided
// ones, and deletes index messages whose events are all decided. An event
// whose index message was lost (a relay dying after the create) is found
// by PruneEvents, which reads every record, and indexed again.
//
// # Answers
//
// AnswerAction publishes to the event's subject of the answer log with
// "expected last sequence for the subject: 0", so the server admits one
// answer per event and numbers it in commit order; every relay reads the
// same sequence (SSE Last-Event-ID works across relays). The answered
// mark in the event bucket keeps first-answer-wins after PruneAnswers
// deleted the log message (it writes the mark before the delete).
//
// # Durability
//
// A write returns nil once JetStream acknowledged it. With Replicas 3 that
// means a quorum of servers holds it (in memory: the servers fsync on
// their own schedule, 2 minutes by default; see shared/notes/jetstream.md
// for what a power cut of all nodes can lose). With one server, only an
// fsync makes an acknowledged write survive an OS crash: run the embedded
// server (relay/natsd) with SyncAlways, at a throughput cost measured by
// this package's benchmarks (bench_test.go).
//
// # Connections
//
// Options.Conn uses a connection the caller owns (in-process, from
// natsd.Server.Conn); otherwise Open dials Options.URL with TLS (CAFile,
// CertFile/KeyFile), and at most one of a credentials file (JWT + NKey),
// an NKey seed file, user/password or a token.
package jetstream
