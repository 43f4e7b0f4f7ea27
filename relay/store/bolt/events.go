package bolt

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// walkChunk is how many entries a walk reads per read transaction.
const walkChunk = 512

// AddEvents stores events not seen before, in one group commit shared with
// concurrent writers, and returns when that commit is on disk. The result
// for an event is nil (stored), relay.ErrDuplicate (its (workspace, id) was
// stored before, by an earlier call or earlier in events), or an error
// naming an invalid workspace or id. ctx is checked once before queueing:
// once queued, the write commits whatever ctx does.
func (s *Store) AddEvents(ctx context.Context, events []relay.Event, receivedAt time.Time) ([]error, error) {
	return s.AddDecided(ctx, events, nil, receivedAt)
}

// AddDecided is AddEvents where decided[i], when not nil, is event i's
// decision: the event, its decision and its jobs (and their schedule
// entries) go into the same commit, and the event never enters the
// undecided set — one fsync instead of two (see store.EventLog).
func (s *Store) AddDecided(ctx context.Context, events []relay.Event, decided []*store.Decided, receivedAt time.Time) ([]error, error) {
	return s.addDecided(ctx, events, decided, receivedAt, nil)
}

// AddDecidedLeasing is AddDecided that also leases the open jobs lease.Want
// names, in the same commit, and hands the leases to lease.Ready as soon as
// the write is queued, before it runs (acceptlease.go); after a failed
// commit, only once the write is on disk (see store.AcceptLeaser). A
// leased job's entry is in its rank's leased range, as Lease leaves it.
func (s *Store) AddDecidedLeasing(ctx context.Context, events []relay.Event, decided []*store.Decided, receivedAt time.Time, lease store.AcceptLease) ([]error, error) {
	return s.addDecided(ctx, events, decided, receivedAt, &lease)
}

func (s *Store) addDecided(ctx context.Context, events []relay.Event, decided []*store.Decided, receivedAt time.Time, lease *store.AcceptLease) ([]error, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("add events: %w", err)
	}
	defer leave()

	results := make([]error, len(events))
	keys := make([][]byte, len(events))
	values := make([][]byte, len(events))
	decisions := make([]*decision, len(events))
	// The keys and values of the whole call come from one buffer (they
	// live until the commit), the decisions and their job puts from one
	// slice each: a batch of 50 made ~7 allocations per event before.
	decs := make([]decision, len(events))
	njobs, size := 0, 0
	for i := range events {
		e := &events[i]
		size += eventSize(e, nil) + keyLen(e.Workspace, e.ID)
		if i < len(decided) && decided[i] != nil {
			d := decided[i]
			size += 2 * decisionSize(&d.Decision, d.Alert) // encoded, then in the event's value
			for j := range d.Jobs {
				size += keyLen(e.Workspace, e.ID, d.Jobs[j].DeviceID) + jobSize(&d.Jobs[j], nil) + 32 // and its place
			}
			njobs += len(d.Jobs)
		}
	}
	sl := &slab{buf: make([]byte, 0, size)}
	puts := make([]jobPut, njobs)
	valid := 0
	for i := range events {
		e := &events[i]
		k := e.Key()
		if err := checkEventKey(k); err != nil {
			results[i] = fmt.Errorf("event %d: %w", i, err)
			continue
		}
		var dv []byte
		if i < len(decided) && decided[i] != nil {
			d := decided[i]
			n := len(d.Jobs)
			if err := decs[i].prepare(sl, puts[:n:n], k, d.Decision, d.Alert, d.Jobs); err != nil {
				results[i] = fmt.Errorf("decide event %s: %w", k, err)
				continue
			}
			puts = puts[n:]
			decisions[i] = &decs[i]
			dv = decs[i].value
		}
		keys[i], values[i] = sl.key(k.Workspace, k.ID), appendEvent(sl.take(eventSize(e, dv)), *e, receivedAt, dv)
		valid++
	}
	if valid == 0 {
		return results, nil
	}
	// Write in key order: bbolt inserts into a sorted slice per page, so a
	// batch's keys in post order move the page's tail at every insert,
	// while in key order (ids that grow, as most do) they append. A stable
	// sort keeps the first of two equal keys first: the one stored. The
	// undecided are numbered in post order (their seq is the order the
	// deciders take them in), so they are written after, in that order.
	order := make([]int, 0, valid)
	for i, k := range keys {
		if k != nil {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	undecided := make([]bool, len(events))
	// An accept that leases builds its leases before the write (see
	// acceptlease.go) and hands them out once the write is queued. After
	// a failed commit (a full disk, a failing device) it waits until the
	// write is on disk: a store that refuses every event must not send
	// their pushes.
	write := s.write
	var al *acceptLease
	var want [][]bool // lease.Want, less the jobs leaseEarly cannot lease
	if lease != nil && lease.Ready != nil {
		leased, held, w, err := s.leaseEarly(events, keys, order, decisions, decided, receivedAt, lease)
		if err != nil {
			return nil, fmt.Errorf("add events: %w", err)
		}
		defer s.accepting.remove(held)
		al, want = &acceptLease{owner: []byte(lease.Owner), until: lease.Until}, w
		// The first MaxEarly go out once the write is queued, the rest
		// once it is durable (both only once it is, after a failed
		// commit).
		early, late := leased, []store.Leased(nil)
		if lease.MaxEarly > 0 && len(leased) > lease.MaxEarly {
			early, late = leased[:lease.MaxEarly:lease.MaxEarly], leased[lease.MaxEarly:]
		}
		durable := lease.Durable
		if durable == nil {
			durable = lease.Ready
		}
		hand := func(to func([]store.Leased), ls []store.Leased) {
			if len(ls) > 0 {
				to(ls)
			}
		}
		// Once the write is durable its results are known: only the jobs
		// of events it stored go out (not of one another call stored
		// meanwhile; of a key posted twice, the first is stored).
		stored := func(ls []store.Leased) []store.Leased {
			if len(ls) == 0 {
				return ls
			}
			ok := make(map[relay.EventKey]bool, len(events))
			for i, err := range results {
				if err == nil && keys[i] != nil {
					ok[events[i].Key()] = true
				}
			}
			return slices.DeleteFunc(ls, func(l store.Leased) bool { return !ok[l.Job.Event] })
		}
		if !s.commitFailed.Load() {
			write = func(fn func(*bbolt.Tx) error) error {
				if err := s.writeQueued(fn, func() { hand(lease.Ready, early) }); err != nil {
					return err
				}
				hand(durable, stored(late))
				return nil
			}
		} else {
			write = func(fn func(*bbolt.Tx) error) error {
				if err := s.write(fn); err != nil {
					return err
				}
				hand(durable, stored(leased))
				return nil
			}
		}
	}
	err = write(func(tx *bbolt.Tx) error {
		evb, und := history(tx, bucketEvents), tx.Bucket(bucketUndecided)
		w := s.wtx(tx)
		c := w.cursor(bucketEvents) // for the duplicate checks: Get makes a cursor each
		var prev []byte
		for _, i := range order {
			k := keys[i]
			results[i], undecided[i] = nil, false // reset: a commit may run this function again
			if got, _ := c.Seek(k); bytes.Equal(k, prev) || bytes.Equal(got, k) {
				results[i] = relay.ErrDuplicate
				continue
			}
			prev = k
			d := decisions[i]
			if d == nil {
				undecided[i] = true
				continue
			}
			setEventSeq(values[i], 0) // decided: no undecided entry
			if err := evb.Put(k, values[i]); err != nil {
				return fmt.Errorf("put event: %w", err)
			}
			var l *acceptLease
			if al != nil && i < len(want) {
				al.want = want[i]
				l = al
			}
			if err := d.applyJobs(w, true, l); err != nil {
				return err
			}
		}
		for i, k := range keys {
			if !undecided[i] {
				continue
			}
			seq, err := und.NextSequence()
			if err != nil {
				return fmt.Errorf("next sequence: %w", err)
			}
			setEventSeq(values[i], seq)
			if err := evb.Put(k, values[i]); err != nil {
				return fmt.Errorf("put event: %w", err)
			}
			if err := und.Put(seqKey(seq), k); err != nil {
				return fmt.Errorf("put undecided: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("add events: %w", err)
	}
	return results, nil
}

// Event returns the record of an event with its jobs in device id order,
// or an error wrapping relay.ErrNotFound.
func (s *Store) Event(ctx context.Context, key relay.EventKey) (*store.Record, error) {
	if err := checkEventKey(key); err != nil {
		return nil, fmt.Errorf("get event: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("get event %s: %w", key, err)
	}
	defer leave()
	s.waitUnsynced() // a job's state as its last Settle returned it

	var rec *store.Record
	k := eventKey(key)
	err = s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketEvents).Get(k)
		if v == nil {
			return relay.ErrNotFound
		}
		ev, err := decodeEvent(v)
		if err != nil {
			return err
		}
		rec = &store.Record{Event: ev.Event, ReceivedAt: ev.ReceivedAt}
		v, err = decisionOf(tx, k, v)
		if err != nil {
			return err
		}
		if v != nil {
			dv, err := decodeDecision(v)
			if err != nil {
				return err
			}
			rec.Decision, rec.Alert = &dv.Decision, dv.Alert
		}
		prefix := prefixKey(key.Workspace, key.ID)
		c := tx.Bucket(bucketJobs).Cursor()
		for jk, jv := c.Seek(prefix); jk != nil && bytes.HasPrefix(jk, prefix); jk, jv = c.Next() {
			j, err := decodeJob(jk, jv)
			if err != nil {
				return err
			}
			rec.Jobs = append(rec.Jobs, j) // in device id order: the keys'
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get event %s: %w", key, err)
	}
	return rec, nil
}

// Decide records an event's decision, alert and jobs in one commit and
// removes the event from the undecided set. Jobs replace any the event had.
// A job whose Event is zero takes key; any other Event must equal key. It
// fails with relay.ErrNotFound for an unknown event.
func (s *Store) Decide(ctx context.Context, key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) error {
	if err := checkEventKey(key); err != nil {
		return fmt.Errorf("decide event: %w", err)
	}
	dec, err := prepareDecision(key, d, alert, jobs)
	if err != nil {
		return fmt.Errorf("decide event %s: %w", key, err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return fmt.Errorf("decide event %s: %w", key, err)
	}
	defer leave()

	k := eventKey(key)
	var found, decided bool
	err = s.write(func(tx *bbolt.Tx) error {
		ev := tx.Bucket(bucketEvents).Get(k)
		found, decided = ev != nil, false
		if !found {
			return nil
		}
		if d, err := decisionOf(tx, k, ev); err != nil || d != nil {
			decided = err == nil // the first decision wins
			return err
		}
		seq, err := eventSeq(ev)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketUndecided).Delete(seqKey(seq)); err != nil {
			return fmt.Errorf("delete undecided: %w", err)
		}
		nv, err := withDecision(ev, dec.value)
		if err != nil {
			return err
		}
		if err := history(tx, bucketEvents).Put(k, nv); err != nil {
			return fmt.Errorf("put event: %w", err)
		}
		return dec.applyJobs(s.wtx(tx), false, nil)
	})
	if err != nil {
		return fmt.Errorf("decide event %s: %w", key, err)
	}
	if decided {
		return fmt.Errorf("decide event %s: decided before: %w", key, relay.ErrConflict)
	}
	if !found {
		return fmt.Errorf("decide event %s: %w", key, relay.ErrNotFound)
	}
	return nil
}

// decisionOf returns the decisions value of the event stored under k with
// value ev, nil while it is undecided: in ev since format 3, in the
// decisions bucket for values written before.
func decisionOf(tx *bbolt.Tx, k, ev []byte) ([]byte, error) {
	_, d, err := eventParts(ev)
	if err != nil || ev[0] == eventFormat {
		return d, err
	}
	return tx.Bucket(bucketDecisions).Get(k), nil
}

// decision is a decision encoded and checked outside the transaction.
type decision struct {
	value []byte // decisions value
	rank  byte
	puts  []jobPut
}

type jobPut struct {
	key, value []byte
	place      []byte // of an open job in the schedule (nil: closed, or to be found)
	job        relay.Job
}

// prepareDecision checks and encodes a decision of event key.
func prepareDecision(key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) (*decision, error) {
	dec := &decision{}
	return dec, dec.prepare(nil, make([]jobPut, len(jobs)), key, d, alert, jobs)
}

// prepare checks and encodes a decision of event key into dec, its job
// puts into puts (len(jobs) of them) and its keys and values into sl.
func (dec *decision) prepare(sl *slab, puts []jobPut, key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) error {
	rank := rankOf(alert)
	for i := range jobs {
		j := jobs[i]
		if j.Event == (relay.EventKey{}) {
			j.Event = key
		}
		if j.Event != key {
			return fmt.Errorf("job %d: event %s is not the decided event", i, j.Event)
		}
		if err := checkPart("device_id", j.DeviceID); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		for _, p := range puts[:i] {
			if p.job.DeviceID == j.DeviceID {
				return fmt.Errorf("job %d: device_id %q: appears twice", i, j.DeviceID)
			}
		}
		var place []byte
		if !j.State.Final() && j.App != "" { // else applyJobs finds its lane
			place = placeOf(&j, rank)
		}
		puts[i] = jobPut{key: sl.key(key.Workspace, key.ID, j.DeviceID), value: appendJob(sl.take(jobSize(&j, place)), &j, place),
			place: place, job: j}
	}
	*dec = decision{value: appendDecision(sl.take(decisionSize(&d, alert)), d, alert), rank: rank, puts: puts}
	return nil
}

// slab hands out byte slices cut from a buffer sized for one write's keys
// and values (they live as long as one another): one allocation instead of
// one per value. When the buffer runs out (a size guessed short) it goes on
// in blocks of slabBlock. A nil slab allocates each.
type slab struct{ buf []byte }

// slabBlock is the size of a slab's further blocks; bigger values get
// their own.
const slabBlock = 4 << 10

// take returns an empty slice with room for n bytes (appending more is
// safe: append then copies).
func (s *slab) take(n int) []byte {
	if s == nil || n > slabBlock/4 {
		return make([]byte, 0, n)
	}
	if cap(s.buf)-len(s.buf) < n {
		s.buf = make([]byte, 0, slabBlock)
	}
	l := len(s.buf)
	s.buf = s.buf[:l+n]
	return s.buf[l : l : l+n]
}

// key returns parts joined with NUL (see joinKey).
func (s *slab) key(parts ...string) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	b := s.take(n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, sep)
		}
		b = append(b, p...)
	}
	return b
}

// applyJobs writes the jobs of a decision and their schedule entries (the
// decision itself goes into its event's value). fresh: the event is new in
// this write, so its jobs have no entry yet (an event is deleted only once
// its jobs are closed, and a closed job has none); false: an open job may
// have one, which moves.
//
// With lease (an accept that leases: AddDecidedLeasing), the open jobs it
// wants are written leased to its owner until its end.
func (d *decision) applyJobs(w *wtx, fresh bool, lease *acceptLease) error {
	tx := w.tx
	for i, p := range d.puts {
		j := p.job
		jobs := history(tx, bucketJobs)
		if j.State.Final() {
			if err := jobs.Put(p.key, p.value); err != nil {
				return fmt.Errorf("put job: %w", err)
			}
			continue
		}
		value, place := p.value, p.place
		if place == nil { // a job from before jobs had an App: its device's
			scheduleLane(tx, &j)
			place = placeOf(&j, d.rank)
			value = appendJob(make([]byte, 0, jobSize(&j, place)), &j, place)
		}
		var owner []byte
		if lease.wants(i) {
			place = leasedPlace(place, lease.until) // as Lease writes it
			value = appendJob(make([]byte, 0, jobSize(&j, place)), &j, place)
			owner = lease.owner
		}
		var from []byte
		if !fresh {
			var err error
			if from, err = openPlace(w, p.key); err != nil {
				return err
			}
		}
		if err := jobs.Put(p.key, value); err != nil {
			return fmt.Errorf("put job: %w", err)
		}
		if err := moveSched(w, p.key, from, place, owner); err != nil {
			return err
		}
	}
	return nil
}

// acceptLease is a store.AcceptLease for one event's decision in a write.
type acceptLease struct {
	owner []byte // a sched value: kept by bbolt until the commit
	until time.Time
	want  []bool // by job
}

// wants reports whether job i is to be leased (false for a nil lease).
func (l *acceptLease) wants(i int) bool { return l != nil && i < len(l.want) && l.want[i] }

// deletePrefix deletes every key of b starting with prefix.
func deletePrefix(b *bbolt.Bucket, prefix []byte) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("delete %q: %w", k, err)
		}
	}
	return nil
}

// Undecided calls fn for every stored event not yet decided, oldest first.
// It reads in chunks and calls fn outside any transaction, so fn may call
// Decide. It stops at fn's first error (returned as is), when ctx is done,
// or with relay.ErrClosed when the store closes.
func (s *Store) Undecided(ctx context.Context, receivedBefore time.Time, fn func(relay.Event) error) error {
	leave, err := s.enter(ctx)
	if err != nil {
		return fmt.Errorf("walk undecided: %w", err)
	}
	defer leave()

	var after []byte // last seq key seen
	chunk := make([]relay.Event, 0, walkChunk)
	for {
		chunk = chunk[:0]
		err := s.db.View(func(tx *bbolt.Tx) error {
			evb := tx.Bucket(bucketEvents)
			c := tx.Bucket(bucketUndecided).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(chunk) < walkChunk; k, v = c.Next() {
				after = bytes.Clone(k)
				ev := evb.Get(v)
				if ev == nil {
					ek, _ := splitEventKey(v)
					return fmt.Errorf("undecided entry %x: event %s missing", k, ek)
				}
				d, err := decodeEvent(ev)
				if err != nil {
					return err
				}
				if !d.ReceivedAt.Before(receivedBefore) {
					continue // too new: its decider may still be at work
				}
				chunk = append(chunk, d.Event)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("walk undecided: %w", err)
		}
		for _, e := range chunk {
			if err := s.stopped(ctx); err != nil {
				return fmt.Errorf("walk undecided: %w", err)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(chunk) < walkChunk {
			return nil
		}
	}
}
