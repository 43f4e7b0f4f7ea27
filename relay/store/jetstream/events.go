package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// eventRec is the value of an event's key: the record, with the schedule's
// bookkeeping on each job.
type eventRec struct {
	Event      relay.Event     `json:"event"`
	ReceivedAt time.Time       `json:"received_at"`
	Decision   *relay.Decision `json:"decision,omitempty"`
	Alert      *relay.Alert    `json:"alert,omitempty"`
	Jobs       []jobRec        `json:"jobs,omitempty"`
}

// jobRec is a job with its lease: Gen grows with every lease and every
// settle, so a ticket names exactly one lease.
type jobRec struct {
	relay.Job
	Gen        uint64    `json:"gen,omitempty"`
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	Dead       string    `json:"dead,omitempty"` // dead letter of its last failure
}

func (r *eventRec) job(device string) *jobRec {
	for i := range r.Jobs {
		if r.Jobs[i].DeviceID == device {
			return &r.Jobs[i]
		}
	}
	return nil
}

func (r *eventRec) record() *store.Record {
	rec := &store.Record{Event: r.Event, ReceivedAt: r.ReceivedAt, Decision: r.Decision, Alert: r.Alert}
	for _, j := range r.Jobs {
		rec.Jobs = append(rec.Jobs, j.Job)
	}
	return rec
}

// acceptedMsg is one message of the undecided index: the keys of one
// AddEvents call (or a chunk of it).
type acceptedMsg struct {
	ReceivedAt time.Time   `json:"received_at"`
	Keys       [][2]string `json:"keys"` // workspace, id
}

// acceptedChunk bounds the keys of one index message (well under the
// server's 1 MiB payload limit with 128-byte ids).
const acceptedChunk = 1000

// createParallel bounds concurrent KV creates of one AddEvents call.
const createParallel = 64

// AddEvents implements store.EventLog: one KV create per event (the
// create is the idempotency check) and, at the same time, a message of
// the undecided index naming the batch's keys. A crash in between leaves
// either an index message naming events that do not exist (Undecided
// skips them) or events missing from the index (PruneEvents indexes
// undecided events older than undecidedGrace again).
func (s *Store) AddEvents(ctx context.Context, events []relay.Event, receivedAt time.Time) ([]error, error) {
	res := make([]error, len(events))
	var todo []int
	seen := map[relay.EventKey]bool{}
	for i := range events {
		e := &events[i]
		if e.Workspace == "" || e.ID == "" {
			res[i] = fmt.Errorf("event %q: empty workspace or id", e.ID)
			continue
		}
		if seen[e.Key()] {
			res[i] = relay.ErrDuplicate
			continue
		}
		seen[e.Key()] = true
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return res, nil
	}
	revs := make([]uint64, len(events))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(createParallel)
	// The index messages are written alongside the creates: an event whose
	// index message was lost (a relay dying in between, after its create)
	// is indexed again by PruneEvents.
	for start := 0; start < len(todo); start += acceptedChunk {
		m := acceptedMsg{ReceivedAt: receivedAt.UTC()}
		for _, i := range todo[start:min(start+acceptedChunk, len(todo))] {
			m.Keys = append(m.Keys, [2]string{events[i].Workspace, events[i].ID})
		}
		g.Go(func() error { return s.index(gctx, m) })
	}
	for _, i := range todo {
		g.Go(func() error {
			e := events[i]
			rec := eventRec{Event: e, ReceivedAt: receivedAt.UTC()}
			for attempt := range maxCAS {
				rev, err := putJSON(gctx, s.events, eventKey(e.Workspace, e.ID), 0, &rec)
				if err == nil {
					revs[i] = rev
					return nil
				}
				if !isWrongLast(err) {
					return fmt.Errorf("add event %s: %w", e.Key(), err)
				}
				// A replicated bucket also refuses a create while another
				// write of the key is in flight: a duplicate only once the
				// other write is there to read.
				_, orev, err := s.getEvent(gctx, e.Key())
				if err != nil {
					return fmt.Errorf("add event %s: %w", e.Key(), err)
				}
				if orev != 0 {
					res[i] = relay.ErrDuplicate
					return nil
				}
				if err := backoff(gctx, attempt); err != nil {
					return err
				}
			}
			return fmt.Errorf("add event %s: %w", e.Key(), errTooManyConflicts)
		})
	}
	if err := g.Wait(); err != nil {
		// Nothing was stored: take back what was (best effort; a leftover
		// is an event the caller was told failed, which recovery decides).
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
		defer cancel()
		for i, rev := range revs {
			if rev != 0 {
				e := events[i]
				if derr := s.events.Delete(dctx, eventKey(e.Workspace, e.ID), jetstream.LastRevision(rev)); derr != nil {
					s.log.Warn("add events: could not take back an event of a failed batch", relay.LogKeyEventID, e.ID,
						relay.LogKeyWorkspace, e.Workspace, relay.LogKeyError, derr)
				}
			}
		}
		return nil, err
	}
	return res, nil
}

// AddDecided implements store.EventLog: AddEvents, then Decide for each new
// event with a decision (concurrently). JetStream has no transaction over
// the two, so an event whose decision write fails stays stored and
// undecided (reported accepted): the undecided sweep decides it.
func (s *Store) AddDecided(ctx context.Context, events []relay.Event, decided []*store.Decided, receivedAt time.Time) ([]error, error) {
	res, err := s.AddEvents(ctx, events, receivedAt)
	if err != nil {
		return nil, err
	}
	var g errgroup.Group
	g.SetLimit(createParallel)
	for i := range min(len(decided), len(res)) {
		d := decided[i]
		if d == nil || res[i] != nil {
			continue
		}
		g.Go(func() error {
			if err := s.Decide(ctx, events[i].Key(), d.Decision, d.Alert, d.Jobs); err != nil && !errors.Is(err, relay.ErrConflict) {
				s.log.Warn("decide an event on accept: left to the undecided sweep", relay.LogKeyEventID, events[i].ID,
					relay.LogKeyWorkspace, events[i].Workspace, relay.LogKeyError, err)
			}
			return nil
		})
	}
	g.Wait()
	return res, nil
}

// index writes a message of the undecided index.
func (s *Store) index(ctx context.Context, m acceptedMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode undecided index: %w", err)
	}
	if _, err := s.js.Publish(ctx, s.subj.accepted, b); err != nil {
		return fmt.Errorf("write undecided index: %w", err)
	}
	return nil
}

// getEvent reads an event record; rev 0 means absent.
func (s *Store) getEvent(ctx context.Context, key relay.EventKey) (*eventRec, uint64, error) {
	var r eventRec
	rev, err := getJSON(ctx, s.events, eventKey(key.Workspace, key.ID), &r)
	if err != nil || rev == 0 {
		return nil, 0, err
	}
	return &r, rev, nil
}

// updateEvent read-modify-writes an event record with compare-and-set:
// fn changes r (or returns an error to stop without writing); it runs
// again on a conflict. A missing event is relay.ErrNotFound.
func (s *Store) updateEvent(ctx context.Context, key relay.EventKey, fn func(r *eventRec) error) (*eventRec, error) {
	return s.updateEventFrom(ctx, key, nil, 0, fn)
}

// updateEventFrom is updateEvent starting from a copy of the record the
// caller read (JSON) at revision rev, when it has one: a write that finds
// the record unchanged saves a read.
func (s *Store) updateEventFrom(ctx context.Context, key relay.EventKey, cached []byte, cachedRev uint64, fn func(r *eventRec) error) (*eventRec, error) {
	for attempt := range maxCAS {
		var r *eventRec
		var rev uint64
		var err error
		if attempt == 0 && cached != nil && cachedRev != 0 {
			r, rev = &eventRec{}, cachedRev
			err = json.Unmarshal(cached, r)
		} else {
			r, rev, err = s.getEvent(ctx, key)
		}
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			return nil, relay.ErrNotFound
		}
		if err := fn(r); err != nil {
			return r, err
		}
		_, err = putJSON(ctx, s.events, eventKey(key.Workspace, key.ID), rev, r)
		if err == nil {
			return r, nil
		}
		if !isWrongLast(err) {
			return nil, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
	return nil, errTooManyConflicts
}

// Event implements store.EventLog.
func (s *Store) Event(ctx context.Context, key relay.EventKey) (*store.Record, error) {
	r, rev, err := s.getEvent(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", key, err)
	}
	if rev == 0 {
		return nil, fmt.Errorf("event %s: %w", key, relay.ErrNotFound)
	}
	return r.record(), nil
}

// Stored implements store.EventLog: one read per key (JetStream has no
// batched read; the pipeline only asks on bolt, deciding on accept).
func (s *Store) Stored(ctx context.Context, keys []relay.EventKey) ([]bool, error) {
	out := make([]bool, len(keys))
	for i, key := range keys {
		_, rev, err := s.getEvent(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", key, err)
		}
		out[i] = rev != 0
	}
	return out, nil
}

// Decide implements store.EventLog. The open jobs' messages are published
// before the record is written: a relay that dies in between leaves an
// undecided event (decided again by recovery) and messages that point at
// it, which a lease puts back until the event is decided. Messages of a
// decision that lost to another one are dropped when leased, or, for the
// same job, are harmless duplicates (the lease generation in the record
// arbitrates).
func (s *Store) Decide(ctx context.Context, key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) error {
	r, rev, err := s.getEvent(ctx, key)
	if err != nil {
		return fmt.Errorf("decide %s: %w", key, err)
	}
	if rev == 0 {
		return fmt.Errorf("decide %s: %w", key, relay.ErrNotFound)
	}
	if r.Decision != nil {
		return fmt.Errorf("decide %s: decided before: %w", key, relay.ErrConflict)
	}
	jobs = slices.Clone(jobs)
	for i := range jobs {
		if jobs[i].Event == (relay.EventKey{}) {
			jobs[i].Event = key // as on bolt: a job without an event is the decided event's
		}
	}
	slices.SortFunc(jobs, func(a, b relay.Job) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	prio := prioToken(store.PriorityOf(alert))
	for i := range jobs {
		if !jobs[i].State.Final() {
			if err := s.publishJob(ctx, &jobs[i], prio); err != nil {
				return fmt.Errorf("decide %s: %w", key, err)
			}
		}
	}
	_, err = s.updateEvent(ctx, key, func(r *eventRec) error {
		if r.Decision != nil {
			return relay.ErrConflict
		}
		dd := d
		r.Decision, r.Alert, r.Jobs = &dd, alert, nil
		for _, j := range jobs {
			r.Jobs = append(r.Jobs, jobRec{Job: j})
		}
		return nil
	})
	if errors.Is(err, relay.ErrConflict) {
		return fmt.Errorf("decide %s: decided before: %w", key, relay.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("decide %s: %w", key, err)
	}
	return nil
}

// undecidedGrace is how old an index message must be before the events it
// names that do not exist are taken for failed writes (not writes still
// under way).
const undecidedGrace = 10 * time.Minute

// Undecided implements store.EventLog: it walks the undecided index
// (oldest first), reads each named event, calls fn for those still
// undecided, and deletes index messages whose events are all decided or
// gone.
func (s *Store) Undecided(ctx context.Context, receivedBefore time.Time, fn func(relay.Event) error) error {
	seen := map[relay.EventKey]bool{}
	return s.walkAccepted(ctx, func(m acceptedMsg) (bool, error) {
		done := true
		for _, k := range m.Keys {
			key := relay.EventKey{Workspace: k[0], ID: k[1]}
			if seen[key] {
				done = false // the other message decides
				continue
			}
			seen[key] = true
			r, rev, err := s.getEvent(ctx, key)
			if err != nil {
				return false, fmt.Errorf("undecided: %w", err)
			}
			switch {
			case rev == 0:
				if time.Since(m.ReceivedAt) < undecidedGrace {
					done = false
				}
			case r.Decision != nil:
			default:
				done = false
				if r.ReceivedAt.Before(receivedBefore) && fn != nil {
					if err := fn(r.Event); err != nil {
						return false, err
					}
				}
			}
		}
		return done, nil
	})
}

// walkAccepted calls fn for each message of the undecided index, oldest
// first, and deletes the message when fn reports it done.
func (s *Store) walkAccepted(ctx context.Context, fn func(acceptedMsg) (bool, error)) error {
	for seq := uint64(1); ; seq++ {
		msg, err := nextMsg(ctx, s.accept, seq, s.subj.accepted)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read undecided index: %w", err)
		}
		seq = msg.Sequence
		var m acceptedMsg
		if err := json.Unmarshal(msg.Data, &m); err != nil {
			s.log.Error("undecided index: bad message, skipped", "seq", seq, relay.LogKeyError, err)
			continue
		}
		done, err := fn(m)
		if err != nil {
			return err
		}
		if done {
			if err := s.accept.DeleteMsg(ctx, seq); !msgGone(err) {
				return fmt.Errorf("trim undecided index: %w", err)
			}
		}
	}
}

// pruneParallel bounds concurrent reads and deletes of a prune.
const pruneParallel = 16

// PruneEvents implements store.EventLog: it lists the event keys, reads
// each record, and deletes (compare-and-set on the revision read) the
// decided ones that expired before before with no open job, with their
// answered mark. It reads every retained event, so it is meant to run
// rarely (hourly). On the way it trims the undecided index, and indexes
// again undecided events the index lost.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int, error) {
	indexed := map[relay.EventKey]bool{}
	if err := s.walkAccepted(ctx, func(m acceptedMsg) (bool, error) {
		done := true
		for _, k := range m.Keys {
			key := relay.EventKey{Workspace: k[0], ID: k[1]}
			r, rev, err := s.getEvent(ctx, key)
			if err != nil {
				return false, err
			}
			if (rev == 0 && time.Since(m.ReceivedAt) < undecidedGrace) || (rev != 0 && r.Decision == nil) {
				done = false
			}
			indexed[key] = true
		}
		return done, nil
	}); err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	keys, err := listKeys(ctx, s.events, "ev.>")
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	var mu sync.Mutex
	n := 0
	var lost []eventRec
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pruneParallel)
	for _, k := range keys {
		g.Go(func() error {
			var r eventRec
			rev, err := getJSON(gctx, s.events, k, &r)
			if err != nil || rev == 0 {
				return err
			}
			if r.Decision == nil {
				if !indexed[r.Event.Key()] && time.Since(r.ReceivedAt) > undecidedGrace {
					mu.Lock()
					lost = append(lost, r)
					mu.Unlock()
				}
				return nil
			}
			if r.Event.ExpiresAt.IsZero() || !r.Event.ExpiresAt.Before(before) {
				return nil
			}
			for _, j := range r.Jobs {
				if !j.State.Final() {
					return nil
				}
			}
			if err := s.events.Delete(gctx, k, jetstream.LastRevision(rev)); err != nil {
				if isWrongLast(err) {
					return nil // changed since: next time
				}
				return err
			}
			if err := s.events.Delete(gctx, answerKey(r.Event.Workspace, r.Event.ID)); err != nil && !isNotFound(err) {
				return err
			}
			mu.Lock()
			n++
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return n, fmt.Errorf("prune events: %w", err)
	}
	slices.SortFunc(lost, func(a, b eventRec) int { return a.ReceivedAt.Compare(b.ReceivedAt) })
	for _, r := range lost {
		s.log.Warn("undecided event missing from the index, indexed again", relay.LogKeyEventID, r.Event.ID,
			relay.LogKeyWorkspace, r.Event.Workspace)
		if err := s.index(ctx, acceptedMsg{ReceivedAt: r.ReceivedAt, Keys: [][2]string{{r.Event.Workspace, r.Event.ID}}}); err != nil {
			return n, fmt.Errorf("prune events: %w", err)
		}
	}
	// Delete markers of pruned keys would pile up; drop the old ones.
	if err := s.events.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(time.Hour)); err != nil {
		s.log.Warn("prune events: purge delete markers", relay.LogKeyError, err)
	}
	return n, nil
}
