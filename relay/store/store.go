// Package store defines how edgerelay keeps its state: events, their
// decisions and delivery jobs, devices, workspace settings and user
// preferences. Backends live in subpackages (store/bolt embedded; a cluster
// backend later) and implement Store.
package store

import (
	"cmp"
	"context"
	"errors"
	"strings"
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

// Store is implemented by each backend.
//
// # Notes
//
//   - All methods are safe for concurrent use.
//   - Writes are durable (fsync'd or replicated) when they return nil.
//     Backends group concurrent writes into one commit, so many callers
//     writing at once do not each pay for an fsync.
//   - Maps passed in are not retained; maps and slices returned are the
//     caller's.
type Store interface {
	// AddEvents stores events not seen before. It returns one error per
	// event, in order: nil when stored, relay.ErrDuplicate when an event
	// with the same (workspace, id) exists. The second result is a failure
	// of the store itself, in which case nothing was stored.
	AddEvents(ctx context.Context, events []relay.Event, receivedAt time.Time) ([]error, error)
	// Event returns the record of an event, or relay.ErrNotFound.
	Event(ctx context.Context, key relay.EventKey) (*Record, error)
	// Decide records an event's decision, its rendered alert (nil unless
	// delivering) and its jobs, atomically. The event leaves the undecided
	// set.
	Decide(ctx context.Context, key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) error
	// Undecided calls fn for every stored event not yet decided, oldest
	// first (crash recovery). fn returning an error stops the walk.
	Undecided(ctx context.Context, fn func(relay.Event) error) error

	// UpdateJobs stores new states of existing jobs (matched by event and
	// device id); jobs of unknown events are ignored.
	UpdateJobs(ctx context.Context, jobs []relay.Job) error
	// OpenJobs calls fn for every job that is not in a final state
	// (pending or deferred), for recovery after a restart.
	OpenJobs(ctx context.Context, fn func(relay.Job) error) error

	// PutDevice registers or replaces a device (keyed by workspace, user,
	// device id).
	PutDevice(ctx context.Context, d relay.Device) error
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

	// RegisterDevice registers or replaces a device like PutDevice and, in
	// the same transaction, removes every other device of the workspace
	// holding the same push token (the phone moved to another user or
	// device id: the token is taken from them). It returns the devices it
	// removed.
	RegisterDevice(ctx context.Context, d relay.Device) ([]relay.Device, error)

	// AnswerAction stores the first answer to an event, atomically: it
	// assigns the answer the next sequence number (Seq, AnsweredAt kept as
	// given) and returns it. If the event was answered before, it stores
	// nothing and returns the stored answer with an error wrapping
	// relay.ErrConflict. Sequence numbers grow in commit order.
	AnswerAction(ctx context.Context, a relay.Answer) (relay.Answer, error)
	// Answers returns up to limit answers with Seq > afterSeq, in Seq
	// order (none: an empty slice).
	Answers(ctx context.Context, afterSeq uint64, limit int) ([]relay.Answer, error)
	// PruneAnswers drops answers given before before from the answer log
	// that Answers reads, oldest first, and returns how many it dropped.
	// The record that an event was answered (first answer wins) is kept.
	PruneAnswers(ctx context.Context, before time.Time) (int, error)

	// Close flushes and closes the store. It must succeed even when ctx is
	// done.
	Close(ctx context.Context) error
}

// DueAt is when an open job is due: its NextAt, or when unset (a fresh
// pending job) its UpdatedAt. Backends that keep a due index order open
// jobs by (DueAt, workspace, event id, device id).
func DueAt(j *relay.Job) time.Time {
	if !j.NextAt.IsZero() {
		return j.NextAt
	}
	return j.UpdatedAt
}

// DueCursor is a position in the due order of open jobs: the due time and
// key of the last job seen. The zero cursor is before every job.
type DueCursor struct {
	At  time.Time
	Job relay.JobKey
}

// DueJob is an open job with what sending it needs.
type DueJob struct {
	Job   relay.Job
	User  string       // the event's user (devices are keyed by it)
	Alert *relay.Alert // the event's rendered alert; nil if none was stored
}

// DueIndex is implemented by stores that keep open jobs ordered by due
// time, so that a scheduler can keep only the next few in memory and page
// the rest in as it goes.
type DueIndex interface {
	// DueJobs returns up to limit open jobs after cursor in due order
	// (see DueAt), and the cursor of the last one returned.
	DueJobs(ctx context.Context, after DueCursor, limit int) ([]DueJob, DueCursor, error)
	// OpenJobCount returns the number of open (pending or deferred) jobs.
	OpenJobCount(ctx context.Context) (int, error)
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

// DeadLetters is implemented by stores that keep dead letters.
type DeadLetters interface {
	// FailJob records j (whose state must be relay.StateFailed) and a dead
	// letter for it in one commit, and returns the dead letter's id.
	FailJob(ctx context.Context, j relay.Job, reason string) (string, error)
	// DeadLetters returns up to limit dead letters, newest first, starting
	// after the one with id after ("" from the newest).
	DeadLetters(ctx context.Context, after string, limit int) ([]DeadLetter, error)
	// ReplayDeadLetter re-opens a dead letter's job as a fresh pending job
	// (no attempts, due now) and marks the dead letter replayed, in one
	// commit. It fails with relay.ErrNotFound (no such dead letter or job),
	// ErrReplayed, or relay.ErrExpired (the event expired).
	ReplayDeadLetter(ctx context.Context, id string, now time.Time) (DueJob, error)
}

// dueNanos is a due time as the index orders it: Unix nanoseconds, 0 for
// the zero time and anything before 1970.
func dueNanos(t time.Time) int64 {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return 0
	}
	return t.UnixNano()
}

// CursorOf returns the due cursor of job j.
func CursorOf(j *relay.Job) DueCursor { return DueCursor{At: DueAt(j), Job: j.Key()} }

// Compare orders cursors as the due index does: by due time (nanoseconds),
// then workspace, event id and device id.
func (c DueCursor) Compare(o DueCursor) int {
	if a, b := dueNanos(c.At), dueNanos(o.At); a != b {
		return cmp.Compare(a, b)
	}
	return cmp.Or(
		strings.Compare(c.Job.Event.Workspace, o.Job.Event.Workspace),
		strings.Compare(c.Job.Event.ID, o.Job.Event.ID),
		strings.Compare(c.Job.DeviceID, o.Job.DeviceID),
	)
}
