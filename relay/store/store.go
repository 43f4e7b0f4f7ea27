// Package store defines how edgerelay keeps its state, by role: the event
// log (idempotency and decisions), the directory (devices, settings,
// preferences), the job schedule (leases, priorities, dead letters), the
// answer log and the user.recent counters. Every backend implements every role in full (Backend); the
// conformance suite in storetest runs against each of them. Backends live
// in subpackages: bolt (one embedded file) and jetstream (a cluster on NATS
// JetStream).
//
// # Notes for every method
//
//   - Safe for concurrent use, also from several relays sharing one
//     backend (jetstream).
//   - Writes are durable (fsync'd or replicated) when they return nil.
//   - Maps passed in are not retained; maps and slices returned are the
//     caller's.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// Record is an event with everything the relay learned about it.
type Record struct {
	Event      relay.Event     `json:"event"`
	ReceivedAt time.Time       `json:"received_at"`
	Decision   *relay.Decision `json:"decision,omitempty"` // nil until decided
	Alert      *relay.Alert    `json:"alert,omitempty"`    // rendered alert, set with the decision when delivering
	Jobs       []relay.Job     `json:"jobs,omitempty"`     // one per target device, in device id order
}

// EventLog keeps accepted events, their idempotency and their decisions.
type EventLog interface {
	// AddEvents stores events not seen before. It returns one error per
	// event, in order: nil when stored, relay.ErrDuplicate when an event
	// with the same (workspace, id) exists (for as long as the event is
	// retained). The second result is a failure of the store itself, in
	// which case nothing was stored.
	AddEvents(ctx context.Context, events []relay.Event, receivedAt time.Time) ([]error, error)
	// AddDecided is AddEvents for events the relay could decide before
	// storing them (no plugin to wait for): decided[i], when not nil, is
	// event i's decision, recorded as Decide would record it. A new event
	// with a decision never enters the undecided set; on bolt it is stored
	// and decided in one durable write. A duplicate writes nothing (its
	// first decision stays). decided may be shorter than events or nil
	// (events without a decision are stored undecided).
	AddDecided(ctx context.Context, events []relay.Event, decided []*Decided, receivedAt time.Time) ([]error, error)
	// Event returns the record of an event, or relay.ErrNotFound.
	Event(ctx context.Context, key relay.EventKey) (*Record, error)
	// Stored reports, for each key, whether its event is stored: one read
	// for a batch (the pipeline checks a POST's events before counting
	// them in user.recent, which a duplicate must not be).
	Stored(ctx context.Context, keys []relay.EventKey) ([]bool, error)
	// Decide records an event's decision, its rendered alert (nil unless
	// delivering) and its jobs; the open ones (pending, deferred) enter the
	// schedule, in the lane of their App and Platform, with the alert's
	// priority. The first decision wins: deciding an event decided before
	// writes nothing and returns an error wrapping relay.ErrConflict (two
	// relays recovering the same event never both schedule it). The event
	// leaves the undecided set. An unknown event is relay.ErrNotFound.
	Decide(ctx context.Context, key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) error
	// Undecided calls fn for stored events not yet decided that were
	// received before receivedBefore, oldest first (recovery after a crash
	// or a failed decision). fn returning an error stops the walk.
	Undecided(ctx context.Context, receivedBefore time.Time, fn func(relay.Event) error) error
	// PruneEvents removes events (with their decisions and jobs) whose
	// expiry is before before and whose jobs are all final, and returns how
	// many it removed. Their ids can be used again afterwards.
	PruneEvents(ctx context.Context, before time.Time) (int, error)
}

// Decided is an event's decision made before the event was stored (see
// EventLog.AddDecided): what EventLog.Decide takes.
type Decided struct {
	Decision relay.Decision
	Alert    *relay.Alert
	Jobs     []relay.Job
}

// AcceptLeaser is a backend that can lease jobs of the events it stores
// with their decisions in the same write, and hand the leases out before
// that write is durable: bolt hands them out as soon as the write is
// queued, before it runs (after a failed commit, only once the write is
// on disk). The caller sends them at once, so a push waits neither for
// the commit in progress, nor its event's write and fsync, nor a lease's
// commit after them: while the store is healthy, a push's latency does
// not follow the disk's. A crash before the write is durable may then
// have sent a push whose event is not stored (the poster got no answer
// and posts it again); a write that fails after the hand-out leaves the
// leases' settles failing. Both are the at-least-once of a crash between
// a send and its settle. An event already stored, or being stored by
// another call, gets no early lease: a repeated POST sends nothing.
type AcceptLeaser interface {
	// AddDecidedLeasing is EventLog.AddDecided that also leases the open
	// jobs lease.Want names, of the events it stores (not of duplicates).
	AddDecidedLeasing(ctx context.Context, events []relay.Event, decided []*Decided, receivedAt time.Time, lease AcceptLease) ([]error, error)
}

// AcceptLease says which jobs AcceptLeaser.AddDecidedLeasing leases, to
// whom, and where the leases go.
type AcceptLease struct {
	Owner string
	Until time.Time // the leases' end
	// Want[i][j]: lease job j of decided[i] (it must be open).
	Want [][]bool
	// MaxEarly bounds the leases handed out before the write is durable:
	// the first MaxEarly, in the events' order (0: no bound). The others
	// are handed out once the write is durable, before AddDecidedLeasing
	// returns; they still need no Lease write.
	MaxEarly int
	// Ready receives the leases handed out before the write is durable
	// (see AcceptLeaser for when), at most once per call. It must not
	// block (it may run on the backend's committer). Not called without
	// leases to hand out.
	Ready func([]Leased)
	// Durable receives the leases handed out once the write is durable
	// (those past MaxEarly; all of them after a failed commit), at most
	// once per call, on the caller's goroutine. Nil: Ready does.
	Durable func([]Leased)
}

// UsersReader is implemented by a backend that reads many users'
// preferences and devices at once. The pipeline reads a batch's users
// through it when it can (one read transaction on bolt, instead of two per
// user), and one by one otherwise.
type UsersReader interface {
	// ReadUsers returns, for each of users (of workspace), what
	// Preferences and Devices would return. An error wrapping
	// errors.ErrUnsupported means the backend cannot: read one by one.
	ReadUsers(ctx context.Context, workspace string, users []string) (prefs []map[string]bool, devices [][]relay.Device, err error)
}

// Directory keeps devices, workspace settings and user preferences. Writes
// never lose each other: two relays writing the same user's preferences
// both land (merge), and a device registration is all-or-nothing.
type Directory interface {
	// RegisterDevice registers or replaces a device (keyed by workspace,
	// user, device id) and, in the same write, removes every other device
	// of the workspace holding the same push token (the phone moved to
	// another user or device id). It returns the devices it removed. Each
	// removed device of another user leaves a relay.DeviceMove notice for
	// that user (TokenMoves.DeviceMoves); registering a device id clears
	// its own notice. Callers: the operator (socket admin API), and the app
	// API once a move is proven (TokenMoves).
	RegisterDevice(ctx context.Context, d relay.Device) ([]relay.Device, error)
	// RegisterDeviceLimit is RegisterDevice for a user allowed at most
	// limit devices: registering a new device id for a user who has limit
	// devices already stores nothing and returns an error wrapping
	// ErrTooManyDevices (replacing one of them is fine). Concurrent
	// registrations, also from several relays, never leave more than limit
	// devices. limit <= 0 means no limit.
	RegisterDeviceLimit(ctx context.Context, d relay.Device, limit int) ([]relay.Device, error)
	// Device returns one device, or relay.ErrNotFound.
	Device(ctx context.Context, workspace, user, id string) (relay.Device, error)
	// Devices returns a user's devices ordered by id.
	Devices(ctx context.Context, workspace, user string) ([]relay.Device, error)
	// DeleteDevice removes a device; relay.ErrNotFound if absent.
	DeleteDevice(ctx context.Context, workspace, user, id string) error
	// RemoveDeviceToken removes a device only if its token is still token
	// (a device re-registered with a new token keeps it). It reports
	// whether it removed the device.
	RemoveDeviceToken(ctx context.Context, workspace, user, id, token string) (bool, error)

	// Settings returns a workspace's explicit settings (types never set
	// are absent).
	Settings(ctx context.Context, workspace string) (map[string]relay.Setting, error)
	// PutSettings merges settings into a workspace's settings.
	PutSettings(ctx context.Context, workspace string, s map[string]relay.Setting) error
	// Preferences returns a user's explicit preferences.
	Preferences(ctx context.Context, workspace, user string) (map[string]bool, error)
	// PutPreferences merges preferences into a user's preferences.
	PutPreferences(ctx context.Context, workspace, user string, p map[string]bool) error
	// PruneDevices removes devices last registered (UpdatedAt) before
	// before, and returns how many (retention.inactive_devices).
	PruneDevices(ctx context.Context, before time.Time) (int, error)
}

// TokenMoves guards push tokens moving between users (the app API): a
// token registered to one user's device moves to another user only with
// proof that the registering app holds the device.
type TokenMoves interface {
	// RegisterUserDevice is RegisterDevice that never takes a token from
	// another user: when a device of another user of the workspace holds
	// d's token, nothing is written and the error is a
	// *relay.TokenHeldError (wrapping relay.ErrTokenHeld) naming that
	// device. Devices of d's own user holding the token are removed as by
	// RegisterDevice (a token refresh, a new device id).
	RegisterUserDevice(ctx context.Context, d relay.Device) ([]relay.Device, error)
	// RegisterUserDeviceLimit is RegisterUserDevice with the device limit
	// of Directory.RegisterDeviceLimit, checked in the same write.
	RegisterUserDeviceLimit(ctx context.Context, d relay.Device, limit int) ([]relay.Device, error)
	// DeviceMoves returns the notices of a user's devices whose token
	// moved to another user, ordered by device id.
	DeviceMoves(ctx context.Context, workspace, user string) ([]relay.DeviceMove, error)
	// PutTokenProof stores a pending proof, replacing the user's previous
	// one (one pending move per user).
	PutTokenProof(ctx context.Context, p relay.TokenProof) error
	// TokenProof returns a user's pending proof (expired or not), or
	// relay.ErrNotFound.
	TokenProof(ctx context.Context, workspace, user string) (relay.TokenProof, error)
	// TakeTokenProof removes and returns a user's pending proof, or
	// relay.ErrNotFound: of two concurrent takes exactly one gets it, so a
	// code is used at most once.
	TakeTokenProof(ctx context.Context, workspace, user string) (relay.TokenProof, error)
}

// Leased is an open job the schedule handed to one relay until its lease
// ends, with what sending it needs.
type Leased struct {
	Job   relay.Job
	User  string       // the event's user
	Alert *relay.Alert // the event's rendered alert; nil if none was stored
	// Device is the job's device as registered now; zero (ID "") when it
	// is no longer registered.
	Device relay.Device
	// AcceptedAt is when the job's event was accepted (zero if unknown):
	// the start of the accept-to-deliver latency.
	AcceptedAt time.Time
	// Until is when the lease ends: the job must be sent and settled by
	// then (after it, another relay may lease the job). A backend that
	// stamps its leases as it takes them (jetstream) gives each its own
	// end, which may be later than the request's Now+TTL.
	Until time.Time
	// Ticket is the backend's proof of this lease; Settle checks it. Pass
	// it back unchanged.
	Ticket any
}

// LeaseRequest asks the schedule for work.
type LeaseRequest struct {
	Lane  string        // relay.Lane(app, platform)
	Owner string        // the relay asking (its name), shown in LaneStats
	Now   time.Time     // jobs due at or before Now may be leased
	TTL   time.Duration // a lease not settled within TTL returns the job to the schedule, for any relay
	Max   int           // at most this many jobs
	// Wait lets a backend that can be told of new work block up to Wait
	// when no job is due (jetstream). Backends that cannot, return at once.
	Wait time.Duration
}

// Schedule is the durable job schedule: a job enters it when its event is
// decided (EventLog.Decide) and leaves it in a final state. A relay leases
// due jobs, sends them and settles each lease; a lease not settled in time
// makes the job available again. Priority comes first, then due time:
// every due high-priority job of a lane is leased before any normal one.
type Schedule interface {
	// Lease leases up to Max due jobs of a lane, high priority first, then
	// in due order. next is when the lane's next job becomes due, when the
	// backend knows it (zero: no open job, or unknown — ask again later).
	// Jobs returned with an error are leased all the same: the caller
	// sends and settles them.
	Lease(ctx context.Context, req LeaseRequest) (jobs []Leased, next time.Time, err error)
	// Settle records a leased job's new state, ending the lease: a final
	// state closes the job (StateFailed also records a dead letter, with
	// the job's LastError as the reason); an open state schedules it again
	// at its NextAt (a retry, a parked job). Attempts and LastError are
	// stored either way. If the lease was lost (it expired and the job was
	// leased again or settled by another relay), nothing is written and
	// the error wraps ErrLeaseLost.
	Settle(ctx context.Context, l Leased, j relay.Job) error
	// OpenJobs counts open jobs by priority, across all relays.
	OpenJobs(ctx context.Context) (OpenCounts, error)
	// LaneStats describes each lane that has open jobs.
	LaneStats(ctx context.Context, now time.Time) ([]LaneStats, error)

	// DeadLetters returns up to limit dead letters, newest first, starting
	// after the one with id after ("" from the newest).
	DeadLetters(ctx context.Context, after string, limit int) ([]DeadLetter, error)
	// ReplayDeadLetter re-opens a dead letter's job as a fresh pending job
	// (no attempts, due at now) and marks the dead letter replayed, in one
	// write, and returns the job. It fails with relay.ErrNotFound (no such
	// dead letter or job), ErrReplayed, or relay.ErrExpired.
	ReplayDeadLetter(ctx context.Context, id string, now time.Time) (relay.Job, error)
	// PruneDeadLetters removes dead letters that failed before before,
	// and returns how many (retention.dead_letters).
	PruneDeadLetters(ctx context.Context, before time.Time) (int, error)
}

// ErrTooManyDevices is returned by RegisterDeviceLimit when the user has
// as many devices as the limit allows.
var ErrTooManyDevices = errors.New("too many devices for the user")

// ErrLeaseLost is returned by Settle when the lease ended before it was
// settled and the job is no longer this relay's to settle.
var ErrLeaseLost = errors.New("lease lost")

// OpenCounts is the number of open jobs by priority.
type OpenCounts struct {
	High   int `json:"high"`
	Normal int `json:"normal"`
}

// Total is the number of open jobs.
func (c OpenCounts) Total() int { return c.High + c.Normal }

// LaneStats describes one lane's part of the schedule.
type LaneStats struct {
	Lane   string `json:"lane"`
	High   int    `json:"high"`   // open high-priority jobs
	Normal int    `json:"normal"` // open normal-priority jobs
	Leased int    `json:"leased"` // of which leased now
	// Due is how many are due now and not leased (the lane's backlog).
	Due int `json:"due"`
	// OldestDue is the due time of the lane's longest-waiting due job
	// (zero: none due).
	OldestDue time.Time `json:"oldest_due,omitzero"`
	// Owners counts the lane's leases by relay, where the backend knows.
	Owners map[string]int `json:"owners,omitempty"`
	// OldestOpen is when the event of the lane's longest-open job was
	// accepted (zero: none open): due, leased, retrying, deferred or
	// parked behind an open breaker alike, so its age stays true during
	// an outage. Backends may bound the jobs they read for it (see each
	// backend's LaneStats).
	OldestOpen time.Time `json:"oldest_open,omitzero"`
	// Expired counts the lane's open jobs whose event expired: they will
	// end expired, unsent (read with OldestOpen, with the same bound).
	Expired int `json:"expired"`
}

// DeadLetter is a job that failed permanently (state relay.StateFailed),
// kept for an operator to inspect and replay.
type DeadLetter struct {
	ID        string         `json:"id"`
	Event     relay.EventKey `json:"event"`
	DeviceID  string         `json:"device_id"`
	Platform  relay.Platform `json:"platform"`
	Reason    string         `json:"reason"`
	Attempts  int            `json:"attempts"`
	FailedAt  time.Time      `json:"failed_at"`
	ExpiresAt time.Time      `json:"expires_at"`
	// ReplayedAt is set once the dead letter was replayed.
	ReplayedAt time.Time `json:"replayed_at,omitzero"`
}

// ErrReplayed is returned by ReplayDeadLetter for a dead letter that was
// replayed before.
var ErrReplayed = errors.New("dead letter already replayed")

// AnswerLog keeps the answers to actionable alerts, first answer wins, in
// one order that every relay shares (the actions stream's ids).
type AnswerLog interface {
	// AnswerAction stores the first answer to an event, atomically: it
	// assigns the answer the next sequence number (Seq, AnsweredAt kept as
	// given) and returns it. If the event was answered before, it stores
	// nothing and returns the stored answer with an error wrapping
	// relay.ErrConflict. Sequence numbers grow in commit order.
	AnswerAction(ctx context.Context, a relay.Answer) (relay.Answer, error)
	// Answered returns the first answer to an event (a device's, or an
	// upstream cancel), or relay.ErrNotFound when there is none.
	Answered(ctx context.Context, key relay.EventKey) (relay.Answer, error)
	// Answers returns up to limit answers with Seq > afterSeq, in Seq
	// order (none: an empty slice).
	Answers(ctx context.Context, afterSeq uint64, limit int) ([]relay.Answer, error)
	// PruneAnswers drops answers given before before from the answer log
	// that Answers reads, oldest first, and returns how many it dropped.
	// The record that an event was answered (first answer wins) is kept
	// as long as the event.
	PruneAnswers(ctx context.Context, before time.Time) (int, error)
}

// Eraser removes what the store holds of a user or a workspace (a user
// leaving, GDPR erasure).
type Eraser interface {
	// Erase removes user's devices, preferences, events (with their
	// decisions, jobs and schedule entries), answers and dead letters in
	// workspace; with user "" everything of the workspace, its settings
	// too. A job being sent while Erase runs is not sent again (its settle
	// finds the lease lost). Erasing what is not there is no error. It
	// returns what it removed.
	Erase(ctx context.Context, workspace, user string) (Erased, error)
}

// Erased counts what Erase removed.
type Erased struct {
	Devices     int `json:"devices"`
	Preferences int `json:"preferences"` // users' preference sets
	Settings    int `json:"settings"`    // 1 when the workspace's settings went
	Events      int `json:"events"`
	Answers     int `json:"answers"` // answer log entries
	DeadLetters int `json:"dead_letters"`
}

// AuditFilter selects audit entries. Zero fields match everything.
type AuditFilter struct {
	Workspace string
	User      string
	Action    string
	Since     time.Time // entries at or after Since
	Before    uint64    // entries with Seq < Before (paging; 0: from the newest)
	Limit     int       // at most this many (required, > 0; backends cap it)
}

// Match reports whether e passes the filter (Limit aside).
func (f AuditFilter) Match(e *relay.AuditEntry) bool {
	return (f.Workspace == "" || e.Workspace == f.Workspace) &&
		(f.User == "" || e.User == f.User) &&
		(f.Action == "" || e.Action == f.Action) &&
		(f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Before == 0 || e.Seq < f.Before)
}

// MaxAuditLimit caps AuditFilter.Limit.
const MaxAuditLimit = 1000

// AuditLog is the append-only record of changes made by operators and
// admins (relay.AuditEntry). Entries are never changed; only PruneAudit
// removes them, oldest first, once past their retention.
type AuditLog interface {
	// AppendAudit stores e durably with the next sequence number (Seq;
	// the rest kept as given) and returns it. Action and Actor.Kind are
	// required.
	AppendAudit(ctx context.Context, e relay.AuditEntry) (relay.AuditEntry, error)
	// Audit returns up to f.Limit (at most MaxAuditLimit) entries that
	// match f, newest first (none: an empty slice).
	Audit(ctx context.Context, f AuditFilter) ([]relay.AuditEntry, error)
	// PruneAudit drops entries made before before, oldest first, and
	// returns how many it dropped.
	PruneAudit(ctx context.Context, before time.Time) (int, error)
	// EraseAudit drops the entries about user in workspace (with user "":
	// every entry of the workspace), the audit log's part of an erasure
	// (Eraser), and returns how many it dropped.
	EraseAudit(ctx context.Context, workspace, user string) (int, error)
}

// CheckAuditEntry reports what is missing from an entry to append.
func CheckAuditEntry(e *relay.AuditEntry) error {
	switch {
	case e.Action == "":
		return errors.New("audit entry: action: must not be empty")
	case e.Actor.Kind == "":
		return errors.New("audit entry: actor.kind: must not be empty")
	case e.Time.IsZero():
		return errors.New("audit entry: time: must be set")
	}
	return nil
}

// Backend is a whole store: every role, and Close.
type Backend interface {
	EventLog
	Directory
	TokenMoves
	Schedule
	AnswerLog
	Recents
	Eraser
	AuditLog
	// Ping reports whether the backend can serve writes now (/readyz).
	Ping(ctx context.Context) error
	// Close flushes and closes the store. It must succeed even when ctx is
	// done.
	Close(ctx context.Context) error
}

// DueAt is when an open job is due: its NextAt, or when unset (a fresh
// pending job) its UpdatedAt.
func DueAt(j *relay.Job) time.Time {
	if !j.NextAt.IsZero() {
		return j.NextAt
	}
	return j.UpdatedAt
}

// PriorityOf is the schedule priority of a job with alert a: high only when
// the alert says so.
func PriorityOf(a *relay.Alert) relay.Priority {
	if a != nil && a.Priority == relay.PriorityHigh {
		return relay.PriorityHigh
	}
	return relay.PriorityNormal
}
