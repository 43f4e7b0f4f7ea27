// Package bolt is edgerelay's embedded store: store.Backend on a single
// bbolt file (go.etcd.io/bbolt), for a relay running on one machine.
//
// It owns the file and its layout, and nothing else: it does not decide or
// deliver. It keeps the job schedule (leases, priorities, dead letters) and
// prunes finished events when asked (PruneEvents, store.retention).
//
// # Durability
//
// Concurrent writes share one transaction and one fsync'd commit (group
// commit, commit.go): a write that finds the store idle commits at once; the
// writes that arrive while a commit syncs go together into the next one,
// which waits up to 1 ms for more when they are fewer than 16 (the writer is
// loaded, and a commit's CPU hardly depends on what it carries). A
// write method returns only after its commit, so whatever it reported as
// stored survives a crash of the process or the machine. NoSync stays
// false. Two exceptions, whose loss in a crash only sends a job again:
// Lease returns once its transaction will commit, before the fsync (open
// releases every lease anyway), and Settle to a final state (or to an
// expiry withdraw) also waits up to 1 ms for another write to share its
// commit. The reads that show jobs, and Lease's read of what is due, wait
// for those commits (waitUnsynced). A write function may run more than
// once (when another function of the same commit fails), so every write
// function here is idempotent: it resets its results at the
// start of each run, and reports ordinary outcomes (duplicate, not found)
// through those results, never by returning an error. The functions of one
// commit share a wtx (wtx.go): a cursor per bucket for point reads and
// deletes, scratch key buffers, and the open-job count changes, written
// once at the end of the commit (a retried batch starts a fresh one).
//
// # Layout
//
// Keys join their parts with a NUL byte. No part may be empty or contain
// NUL (writes and reads reject such parts with an error naming the field),
// so a key maps to exactly one tuple and a prefix "a\x00b\x00" matches only
// the children of (a, b). Byte order of keys is Go string order, so device
// ids come back sorted.
//
//	bucket     key                       value
//	events     ws \0 id                  format byte, 8-byte big-endian undecided seq, the decision (empty while undecided), the event (codec.go)
//	decisions  ws \0 id                  {decision, alert} of events stored before format 3 (read, never written)
//	undecided  8-byte big-endian seq     ws \0 id           (walked oldest first)
//	jobs_done  ws \0 id \0 device        job value           (every job: the name is from when open jobs had a bucket, jobs_open)
//	devices    ws \0 user \0 device      JSON relay.Device
//	device_tokens ws \0 h user \0 device  empty: the token index, h = SHA-256(token)[:16] (tokenidx.go)
//	settings   ws                        JSON {type: setting}
//	prefs      ws \0 user                JSON {type: bool}
//	recent     ws \0 user                JSON {type: store.RecentCounter} (user.recent)
//	answers    ws \0 id                  JSON relay.Answer (the first answer; pruned with its event)
//	answer_log 8-byte big-endian seq     answers in commit order (the actions stream; pruned)
//	deadletters 8-byte big-endian seq    JSON store.DeadLetter
//	audit_log  8-byte big-endian seq     JSON relay.AuditEntry (append-only; pruned by age)
//	sched, sched_count: the job schedule (sched.go; sched_leases is left
//	empty: files from before 2026-12 indexed leases there)
//
// An open job (relay.DeliveryState.Final false) has one entry in the
// schedule (sched.go), written in the same transaction, and its value
// records where; a closed one has none. (Until 2026-12-07 open jobs lived
// in bucket jobs_open and moved to jobs_done when closed: one more B-tree
// written per delivery. Open merges such a file's jobs_open.) A job value holds what its key does not: its place in
// the schedule, platform, state, attempts, last error and times, in a
// small binary encoding (codec.go; JSON decoding was most of a 1M-job
// recovery walk). Events and decisions are binary too; devices and maps
// stay JSON.
//
// An event's fields are immutable once stored; Decide adds the decision to
// the event's value, writes its jobs and removes its undecided entry in one
// transaction. (Until 2026-12-07 decisions had a bucket of their own: one
// more B-tree written by every commit that accepts or decides.)
//
// # Walks
//
// Undecided reads in chunks of a few hundred entries, each in
// its own short read transaction, and call fn outside any transaction. So
// fn may write to the store (Decide) without deadlocking bbolt's
// remap, and ctx and Close are checked between entries. A walk is not a
// snapshot: entries added during it may or may not be seen, entries removed
// before it reaches them are not.
package bolt
