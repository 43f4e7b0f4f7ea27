package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// The schedule (see doc.go for the layout):
//
//	sched        lane \0 rank due job-key   owner of the lease, or empty
//	sched_count  lane \0 rank               8-byte big-endian open jobs
//
// An open job's value records its place, its sched key without the job
// key (jobPlace), so its entry is found from the job. (Until 2026-12-07
// bucket sched_jobs indexed job key → sched key: one more B-tree written
// per accept, lease and settle. Open moves such an index into the jobs:
// migrateSchedIndex.)
//
// rank is 0 for high priority, 1 for normal, so a cursor over a lane's keys
// meets every high-priority job before any normal one, each in due order
// (due: 8-byte big-endian Unix nanoseconds). A lease rewrites the job's key
// with the rank's leased variant (2 high, 3 normal: rank|rankLeased) and
// due = the lease's end, so it is not leased again before then, and the
// leases of a lane are found in two short ranges (start-up releases them,
// LaneStats counts them) without an index of their own; if the lease is
// not settled by then, any Lease takes the job again, before the rank's
// other due jobs. Counts are by plain rank. (Until 2026-12 a leased key
// kept its rank and bucket sched_leases indexed it, lane \0 job-key → sched
// key: one more write and delete per delivery. Open releases what such a
// file holds.)
var (
	bucketSched       = []byte("sched")
	bucketSchedJobs   = []byte("sched_jobs")
	bucketSchedLeases = []byte("sched_leases")
	bucketSchedCount  = []byte("sched_count")
)

const (
	rankHigh   byte = 0
	rankNormal byte = 1
	// rankLeased marks a leased job's rank.
	rankLeased byte = 2
)

// plainRank is the priority rank of a sched key's rank byte.
func plainRank(r byte) byte { return r &^ rankLeased }

// laneRanks are a lane's sched ranges in the order Lease takes them:
// expired leases of a rank first (they waited longest), then its due jobs.
var laneRanks = [...]byte{rankHigh | rankLeased, rankHigh, rankNormal | rankLeased, rankNormal}

func rankOf(a *relay.Alert) byte {
	if store.PriorityOf(a) == relay.PriorityHigh {
		return rankHigh
	}
	return rankNormal
}

// lanePrefix is the sched key prefix of a lane's jobs of one rank.
func lanePrefix(lane string, rank byte) []byte {
	b := make([]byte, 0, len(lane)+2+dueLen+64)
	b = append(b, lane...)
	return append(b, sep, rank)
}

// dueLen is the length of the due time in a sched key.
const dueLen = 8

func dueNanos(t time.Time) uint64 {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

func schedKey(lane string, rank byte, due time.Time, jk []byte) []byte {
	return append(schedPlace(lane, rank, due), jk...)
}

// schedPlace is a job's place in its lane's schedule: its sched key
// without the job key. An open job's value records it (jobPlace).
func schedPlace(lane string, rank byte, due time.Time) []byte {
	return binary.BigEndian.AppendUint64(lanePrefix(lane, rank), dueNanos(due))
}

// placeOf is the place of job j in its lane's schedule with rank: due at
// store.DueAt.
func placeOf(j *relay.Job, rank byte) []byte { return schedPlace(j.Lane(), rank, store.DueAt(j)) }

// leasedPlace is the place of a job at place while leased until until:
// its rank's leased variant, due at the lease's end (a new slice, with
// room for the job key).
func leasedPlace(place []byte, until time.Time) []byte {
	n := len(place) - dueLen - 1 // the rank byte
	b := make([]byte, 0, len(place)+64)
	b = append(append(b, place[:n]...), place[n]|rankLeased)
	return binary.BigEndian.AppendUint64(b, dueNanos(until))
}

// splitPlace returns the lane and the rank byte of a place.
func splitPlace(place []byte) (lane []byte, rank byte, err error) {
	n := len(place) - dueLen - 2
	if n < 0 || place[n] != sep {
		return nil, 0, fmt.Errorf("%w: schedule place %q", errCorrupt, place)
	}
	return place[:n], place[n+1], nil
}

// parseSchedKey splits a sched key into its lane prefix (lane \0 rank), due
// time and job key.
func parseSchedKey(k []byte) (prefix []byte, due uint64, jk []byte, err error) {
	i := bytes.IndexByte(k, sep)
	if i < 0 || len(k) < i+2+dueLen+1 {
		return nil, 0, nil, fmt.Errorf("%w: sched key %q", errCorrupt, k)
	}
	return k[:i+2], binary.BigEndian.Uint64(k[i+2:]), k[i+2+dueLen:], nil
}

// moveSched moves job jk's sched entry from place from to place to, with
// owner as its value (the lease's owner, nil when not leased), and keeps
// the lanes' open-job counts: from nil, the job enters the schedule; to
// nil, it leaves it. The job's value must record to (jobPlace): the
// caller writes it.
func moveSched(w *wtx, jk, from, to, owner []byte) error {
	var fromLane, toLane []byte
	var fromRank, toRank byte
	var err error
	if from != nil {
		if fromLane, fromRank, err = splitPlace(from); err != nil {
			return err
		}
		w.key = append(append(w.key[:0], from...), jk...)
		if err := w.del(bucketSched, w.key); err != nil {
			return fmt.Errorf("delete sched: %w", err)
		}
	}
	if to != nil {
		if toLane, toRank, err = splitPlace(to); err != nil {
			return err
		}
		w.key = append(append(w.key[:0], to...), jk...) // Put copies the key
		if err := w.tx.Bucket(bucketSched).Put(w.key, owner); err != nil {
			return fmt.Errorf("put sched: %w", err)
		}
	}
	if from != nil && to != nil && bytes.Equal(fromLane, toLane) && plainRank(fromRank) == plainRank(toRank) {
		return nil // counted where it was
	}
	if from != nil {
		w.counts.add(fromLane, plainRank(fromRank), -1)
	}
	if to != nil {
		w.counts.add(toLane, plainRank(toRank), 1)
	}
	return nil
}

// openPlace returns the place of the job stored under jk, cloned (it
// outlives the writes that follow): nil if it is closed or unknown.
func openPlace(w *wtx, jk []byte) ([]byte, error) {
	v := w.get(bucketJobs, jk)
	if v == nil {
		return nil, nil
	}
	place, err := jobPlace(v)
	return bytes.Clone(place), err
}

// scheduleLane returns the lane of job j: its App and Platform, or for a
// job stored before jobs had an App, its device's app.
func scheduleLane(tx *bbolt.Tx, j *relay.Job) {
	if j.App != "" {
		return
	}
	ev := tx.Bucket(bucketEvents).Get(eventKey(j.Event))
	if ev == nil {
		return
	}
	evv, err := decodeEvent(ev)
	if err != nil {
		return
	}
	if dv := tx.Bucket(bucketDevices).Get(joinKey(j.Event.Workspace, evv.Event.User, j.DeviceID)); dv != nil {
		var d relay.Device
		if json.Unmarshal(dv, &d) == nil {
			j.App = d.App
		}
	}
}

// Lease leases up to req.Max due jobs of req.Lane to req.Owner: high
// priority first, then in due order. It writes the leases in one commit.
func (s *Store) Lease(ctx context.Context, req store.LeaseRequest) ([]store.Leased, time.Time, error) {
	if req.Max <= 0 {
		return nil, time.Time{}, nil
	}
	if err := checkPart("lane", req.Lane); err != nil {
		return nil, time.Time{}, fmt.Errorf("lease: %w", err)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("lease: %w", err)
	}
	defer leave()
	now := dueNanos(req.Now)
	until := req.Now.Add(req.TTL)
	var out []store.Leased
	var next time.Time
	// A lane asks after every send and every new event: when nothing is
	// due, answer from a read transaction instead of committing (and
	// fsyncing) an empty write.
	prefix := lanePrefix(req.Lane, rankHigh) // one buffer for the lane's ranges
	// At saturation the lane's last lease left due jobs behind
	// (s.backlog): they are still due, so the read is skipped.
	if !s.backlog.has(req.Lane) {
		// The read must see the settles returned so far: a deferred
		// one (an expiry withdraw or its retry) may still be
		// committing, and a read before its commit would miss the job
		// it made due and leave it for the lane's next poll.
		s.waitUnsynced()
		var due bool
		err = s.db.View(func(tx *bbolt.Tx) error {
			due, next = laneDue(tx.Bucket(bucketSched).Cursor(), prefix, now)
			return nil
		})
		if err != nil || !due {
			if err != nil {
				err = fmt.Errorf("lease jobs of lane %s: %w", req.Lane, err)
			}
			return nil, next, err
		}
	}
	var more bool              // due jobs left after this lease
	owner := []byte(req.Owner) // a sched value: kept by bbolt until the commit
	var found []byte           // the due keys, back to back
	var ends []int
	// The lease need not be on disk before its jobs are sent: Open
	// releases every lease (one relay per file), so a crash sends them
	// again either way. The jobs go out while the lease commits.
	err = s.writeUnsynced(func(tx *bbolt.Tx) error {
		out, next = out[:0], time.Time{}
		w := s.wtx(tx)
		sched, jobs := tx.Bucket(bucketSched), history(tx, bucketJobs)
		c := w.cursor(bucketSched)
		found, ends = found[:0], ends[:0]
		for _, rank := range laneRanks {
			prefix[len(prefix)-1] = rank
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(ends) < req.Max; k, _ = c.Next() {
				if binary.BigEndian.Uint64(k[len(prefix):]) > now {
					break
				}
				found = append(found, k...)
				ends = append(ends, len(found))
			}
		}
		rd := newRecordReader(w, &s.devices)
		if cap(out) < len(ends) {
			out = make([]store.Leased, 0, len(ends)) // a Leased is ~0.5 KB: no doubling
		}
		start := 0
		for _, end := range ends {
			k := found[start:end]
			start = end
			kp, _, jk, err := parseSchedKey(k)
			if err != nil {
				return err
			}
			// nk is the ticket, and its place is in the job's value:
			// its own allocation.
			place := leasedPlace(k[:len(kp)+dueLen], until)
			nk := append(place, jk...)
			l, v, err := rd.leased(jk)
			if err != nil {
				return err
			}
			nv, err := withPlace(v, place)
			if err != nil {
				return fmt.Errorf("lease job %q: %w", jk, err)
			}
			if err := w.del(bucketSched, k); err != nil {
				return err
			}
			if err := sched.Put(nk, owner); err != nil {
				return err
			}
			if err := jobs.Put(jk, nv); err != nil {
				return err
			}
			l.Ticket, l.Until = nk, until
			out = append(out, l)
		}
		more, next = laneDue(c, prefix, now)
		return nil
	})
	if err != nil {
		s.backlog.set(req.Lane, false)
		return nil, time.Time{}, fmt.Errorf("lease jobs of lane %s: %w", req.Lane, err)
	}
	s.backlog.set(req.Lane, more)
	return out, next, nil
}

// laneBacklog remembers the lanes whose last lease left due jobs behind:
// their next lease need not read first whether anything is due. (One
// relay per file: jobs leave the schedule only through this store. A
// stale mark costs one empty write, after which it is cleared.)
type laneBacklog struct {
	mu    sync.Mutex
	lanes map[string]bool
}

func (b *laneBacklog) has(lane string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lanes[lane]
}

func (b *laneBacklog) set(lane string, more bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case more && !b.lanes[lane]:
		if b.lanes == nil {
			b.lanes = map[string]bool{}
		}
		b.lanes[lane] = true
	case !more && b.lanes[lane]:
		delete(b.lanes, lane)
	}
}

// laneDue reports whether a lane has a job due at now, and when its next
// job is due (the earliest first entry of its ranges, a lease's end
// included; zero: none). c is a cursor on the sched bucket, prefix a
// lanePrefix of the lane (its rank byte is overwritten).
func laneDue(c *bbolt.Cursor, prefix []byte, now uint64) (due bool, next time.Time) {
	for _, rank := range laneRanks {
		prefix[len(prefix)-1] = rank
		if k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
			at := binary.BigEndian.Uint64(k[len(prefix):])
			due = due || at <= now
			if t := time.Unix(0, int64(at)); next.IsZero() || t.Before(next) {
				next = t
			}
		}
	}
	return due, next
}

// recordReader reads what a lease carries. Jobs of one event are next to
// each other in the schedule (same due time, keys sharing the event's), so
// it keeps the last event's owner; devices come decoded from the store's
// cache.
type recordReader struct {
	w      *wtx
	cache  *deviceCache
	dec    jobDecoder
	lastEK []byte
	last   owner
}

type owner struct {
	user     string
	alert    *relay.Alert
	accepted time.Time
}

func newRecordReader(w *wtx, cache *deviceCache) *recordReader {
	return &recordReader{w: w, cache: cache}
}

// leased returns what a lease of the open job stored under jk carries, and
// the job's value (valid until the next write).
func (r *recordReader) leased(jk []byte) (store.Leased, []byte, error) {
	v := r.w.get(bucketJobs, jk)
	if v == nil {
		return store.Leased{}, nil, fmt.Errorf("%w: scheduled job %q is not stored", errCorrupt, jk)
	}
	j, err := r.dec.decode(jk, v)
	if err != nil {
		return store.Leased{}, nil, err
	}
	ek := jk[:bytes.LastIndexByte(jk, sep)] // ws \0 id: decode checked the parts
	if r.lastEK == nil || !bytes.Equal(ek, r.lastEK) {
		var o owner
		if ev := r.w.get(bucketEvents, ek); ev != nil {
			u, at, err := eventUser(ev)
			if err != nil {
				return store.Leased{}, nil, fmt.Errorf("event %s: %w", j.Event, err)
			}
			o.user, o.accepted = u, at
			dv, err := decisionOf(r.w.tx, ek, ev)
			if err != nil {
				return store.Leased{}, nil, fmt.Errorf("event %s: %w", j.Event, err)
			}
			if dv != nil {
				d, err := decodeDecision(dv)
				if err != nil {
					return store.Leased{}, nil, err
				}
				o.alert = d.Alert
			}
		}
		r.lastEK, r.last = append(r.lastEK[:0], ek...), o
	}
	o := r.last
	l := store.Leased{Job: j, User: o.user, Alert: o.alert, AcceptedAt: o.accepted}
	if o.user != "" {
		dk := r.w.keyOfStrings(j.Event.Workspace, o.user, j.DeviceID)
		if dv := r.w.get(bucketDevices, dk); dv != nil {
			d, err := r.cache.decode(dv)
			if err != nil {
				return store.Leased{}, nil, fmt.Errorf("decode device %q: %w", dk, err)
			}
			l.Device = d
		}
	}
	return l, v, nil
}

// Settle records the new state of a leased job and ends its lease, in one
// commit (see store.Schedule).
func (s *Store) Settle(ctx context.Context, l store.Leased, j relay.Job) error {
	ticket, ok := l.Ticket.([]byte)
	if !ok {
		return fmt.Errorf("settle job %s/%s: not a lease of this store", j.Event, j.DeviceID)
	}
	if j.Key() != l.Job.Key() {
		return fmt.Errorf("settle job %s/%s: the lease is for job %s/%s", j.Event, j.DeviceID, l.Job.Event, l.Job.DeviceID)
	}
	if err := errors.Join(checkEventKey(j.Event), checkPart("device_id", j.DeviceID)); err != nil {
		return fmt.Errorf("settle job: %w", err)
	}
	j.App, j.Platform = l.Job.App, l.Job.Platform // the lane is the lease's
	leave, err := s.enter(ctx)
	if err != nil {
		return fmt.Errorf("settle job %s/%s: %w", j.Event, j.DeviceID, err)
	}
	defer leave()
	// The ticket is the lease's sched key: the job's place while leased,
	// then its key.
	prefix, _, tjk, err := parseSchedKey(ticket)
	if err != nil {
		return fmt.Errorf("settle job %s/%s: %w", j.Event, j.DeviceID, err)
	}
	leasedAt := ticket[:len(ticket)-len(tjk)]
	var to []byte // the job's place from now on: none once final
	if !j.State.Final() {
		// Due again (a retry, a parked job, an expiry withdraw): the
		// lease's entry moves to the new due time.
		to = placeOf(&j, plainRank(prefix[len(prefix)-1]))
	}
	// The key and the value in one allocation (bbolt keeps the value).
	sl := slab{buf: make([]byte, 0, keyLen(j.Event.Workspace, j.Event.ID, j.DeviceID)+jobSize(&j, to))}
	jk := sl.key(j.Event.Workspace, j.Event.ID, j.DeviceID)
	if !bytes.Equal(jk, tjk) {
		return fmt.Errorf("settle job %s/%s: the ticket is for job %q", j.Event, j.DeviceID, tjk)
	}
	jv := appendJob(sl.take(jobSize(&j, to)), &j, to)
	var lost bool
	// A final state need not be on disk before the queue goes on: a
	// crash before its commit sends the job again, as a crash between
	// the send and the settle always did. It shares the next commit.
	// A job scheduled again is written at once: the lane's next lease
	// must see it due. A delivered alert waiting for its expiry withdraw
	// (StateWithdrawDue) is not due before the alert expires: it shares
	// the next commit too.
	write := s.write
	if j.State.Final() || j.State == relay.StateWithdrawDue {
		write = s.writeDeferred
	}
	err = write(func(tx *bbolt.Tx) error {
		lost = false
		w := s.wtx(tx)
		// The lease holds while the job is open at the lease's place.
		cur := w.get(bucketJobs, jk)
		if cur == nil {
			lost = true
			return nil
		}
		if place, err := jobPlace(cur); err != nil || !bytes.Equal(place, leasedAt) {
			lost = err == nil
			return err
		}
		if err := history(tx, bucketJobs).Put(jk, jv); err != nil {
			return fmt.Errorf("put job: %w", err)
		}
		if err := moveSched(w, jk, leasedAt, to, nil); err != nil {
			return err
		}
		if j.State == relay.StateFailed {
			return putDeadLetter(tx, &j)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("settle job %s/%s: %w", j.Event, j.DeviceID, err)
	}
	if lost {
		return fmt.Errorf("settle job %s/%s: %w", j.Event, j.DeviceID, store.ErrLeaseLost)
	}
	return nil
}

// OpenJobs counts open jobs by priority.
func (s *Store) OpenJobs(ctx context.Context) (store.OpenCounts, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return store.OpenCounts{}, fmt.Errorf("count open jobs: %w", err)
	}
	defer leave()
	s.waitUnsynced() // the settles returned so far are counted
	var c store.OpenCounts
	err = s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSchedCount).ForEach(func(k, v []byte) error {
			if len(v) != 8 || len(k) < 2 {
				return fmt.Errorf("%w: count %q", errCorrupt, k)
			}
			n := int(binary.BigEndian.Uint64(v))
			if k[len(k)-1] == rankHigh {
				c.High += n
			} else {
				c.Normal += n
			}
			return nil
		})
	})
	if err != nil {
		return store.OpenCounts{}, fmt.Errorf("count open jobs: %w", err)
	}
	return c, nil
}

// maxStatsScan bounds how many due entries LaneStats reads per lane and
// rank; beyond it Due is a lower bound.
const maxStatsScan = 100_000

// LaneStats describes each lane with open jobs.
func (s *Store) LaneStats(ctx context.Context, now time.Time) ([]store.LaneStats, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("lane stats: %w", err)
	}
	defer leave()
	s.waitUnsynced() // the leases Lease returned are counted
	byLane := map[string]*store.LaneStats{}
	err = s.db.View(func(tx *bbolt.Tx) error {
		get := func(lane string) *store.LaneStats {
			st := byLane[lane]
			if st == nil {
				st = &store.LaneStats{Lane: lane}
				byLane[lane] = st
			}
			return st
		}
		err := tx.Bucket(bucketSchedCount).ForEach(func(k, v []byte) error {
			if len(v) != 8 || len(k) < 2 {
				return fmt.Errorf("%w: count %q", errCorrupt, k)
			}
			st := get(string(k[:len(k)-2]))
			if k[len(k)-1] == rankHigh {
				st.High = int(binary.BigEndian.Uint64(v))
			} else {
				st.Normal = int(binary.BigEndian.Uint64(v))
			}
			return nil
		})
		if err != nil {
			return err
		}
		sched := tx.Bucket(bucketSched)
		nowN := dueNanos(now)
		for lane, st := range byLane {
			for _, rank := range laneRanks {
				prefix := lanePrefix(lane, rank)
				leased := rank&rankLeased != 0
				c := sched.Cursor()
				n := 0
				for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < maxStatsScan; k, v = c.Next() {
					n++
					due := binary.BigEndian.Uint64(k[len(prefix):])
					if due > nowN {
						if !leased {
							break
						}
						// A lease running: its end is its due.
						st.Leased++
						if st.Owners == nil {
							st.Owners = map[string]int{}
						}
						st.Owners[string(v)]++
						continue
					}
					st.Due++ // due, or a lease that ended
					at := time.Unix(0, int64(due))
					if st.OldestDue.IsZero() || at.Before(st.OldestDue) {
						st.OldestDue = at
					}
				}
			}
		}
		for lane, st := range byLane {
			if err := s.laneAge(tx, lane, now, st); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lane stats: %w", err)
	}
	out := make([]store.LaneStats, 0, len(byLane))
	for _, st := range byLane {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b store.LaneStats) int { return strings.Compare(a.Lane, b.Lane) })
	return out, nil
}

// maxAgeScan bounds how many of a lane's open jobs LaneStats reads for
// OldestOpen and Expired (each costs an event read); beyond it they
// describe the first maxAgeScan jobs in schedule order (high priority
// first, then due order).
const maxAgeScan = 20_000

// laneAge fills st.OldestOpen and st.Expired from the events of the lane's
// open jobs, whatever their due time: jobs parked behind an open breaker
// or waiting for a retry are not due, yet they wait. Delivered alerts
// waiting for their expiry withdraw (relay.StateWithdrawDue) do not.
func (s *Store) laneAge(tx *bbolt.Tx, lane string, now time.Time, st *store.LaneStats) error {
	sched, events, jobs := tx.Bucket(bucketSched), tx.Bucket(bucketEvents), tx.Bucket(bucketJobs)
	type times struct{ received, expires time.Time }
	seen := map[string]times{} // by event key: one read per event, not per device
	n := 0
	for _, rank := range laneRanks {
		prefix := lanePrefix(lane, rank)
		c := sched.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < maxAgeScan; k, _ = c.Next() {
			n++
			_, _, jk, err := parseSchedKey(k)
			if err != nil {
				return err
			}
			i := bytes.LastIndexByte(jk, sep)
			if i < 0 {
				return fmt.Errorf("%w: job key %q", errCorrupt, jk)
			}
			if v := jobs.Get(jk); v != nil {
				var j relay.Job
				if err := decodeJobValue(&j, v); err != nil {
					return err
				}
				if j.State == relay.StateWithdrawDue {
					continue
				}
			}
			t, ok := seen[string(jk[:i])]
			if !ok {
				v := events.Get(jk[:i])
				if v == nil {
					continue // pruned under it: not waiting for anything
				}
				ev, err := decodeEvent(v)
				if err != nil {
					return err
				}
				t = times{ev.ReceivedAt, ev.Event.ExpiresAt}
				seen[string(jk[:i])] = t
			}
			if !t.received.IsZero() && (st.OldestOpen.IsZero() || t.received.Before(st.OldestOpen)) {
				st.OldestOpen = t.received
			}
			if !t.expires.IsZero() && !now.Before(t.expires) {
				st.Expired++
			}
		}
	}
	return nil
}

// releaseLeases ends every lease at open: a bolt file has one relay at a
// time (the file lock), so any lease left in it belongs to a relay that
// stopped, and its jobs are due again at once.
func releaseLeases(tx *bbolt.Tx) (int, error) {
	sched, jobs := tx.Bucket(bucketSched), history(tx, bucketJobs)
	// release makes the job under sched key sk due now with plain rank.
	release := func(sk []byte) error {
		prefix, _, jk, err := parseSchedKey(sk)
		if err != nil {
			return err
		}
		if err := sched.Delete(sk); err != nil {
			return err
		}
		v := jobs.Get(jk)
		if v == nil {
			return nil // settled meanwhile: sk was stray
		}
		if place, err := jobPlace(v); err != nil || !bytes.Equal(place, sk[:len(sk)-len(jk)]) {
			return err // nil: not the job's place, sk was stray
		}
		place := append(append(prefix[:len(prefix)-1:len(prefix)-1], plainRank(prefix[len(prefix)-1])), make([]byte, dueLen)...)
		nv, err := withPlace(v, place)
		if err != nil {
			return err
		}
		if err := sched.Put(append(place, jk...), nil); err != nil {
			return err
		}
		return jobs.Put(jk, nv)
	}
	var leased [][]byte
	// Files written before leased ranks: their leases are indexed in
	// sched_leases (value: the sched key) and keep their rank.
	old := tx.Bucket(bucketSchedLeases)
	var oldKeys [][]byte
	if err := old.ForEach(func(k, v []byte) error {
		oldKeys = append(oldKeys, bytes.Clone(k))
		leased = append(leased, bytes.Clone(v))
		return nil
	}); err != nil {
		return 0, err
	}
	for _, k := range oldKeys {
		if err := old.Delete(k); err != nil {
			return 0, err
		}
	}
	// The leased ranges of every lane with open jobs.
	lanes := map[string]bool{}
	if err := tx.Bucket(bucketSchedCount).ForEach(func(k, _ []byte) error {
		if len(k) > 2 {
			lanes[string(k[:len(k)-2])] = true
		}
		return nil
	}); err != nil {
		return 0, err
	}
	c := sched.Cursor()
	for lane := range lanes {
		for _, rank := range []byte{rankHigh | rankLeased, rankNormal | rankLeased} {
			prefix := lanePrefix(lane, rank)
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				leased = append(leased, bytes.Clone(k))
			}
		}
	}
	for _, sk := range leased {
		if err := release(sk); err != nil {
			return 0, err
		}
	}
	return len(leased), nil
}

// migrateSchedule builds the schedule of a file written before it existed
// (open jobs indexed only by due time, in bucket jobs_due): each open job
// enters its lane's schedule with its alert's priority.
func migrateSchedule(tx *bbolt.Tx) (int, error) {
	old := []byte("jobs_due")
	if tx.Bucket(old) == nil {
		return 0, nil
	}
	type kv struct{ k, v []byte }
	var open []kv
	jobs := tx.Bucket(bucketJobsOpen) // mergeOpenJobs moves them on
	if jobs == nil {
		return 0, tx.DeleteBucket(old)
	}
	if err := jobs.ForEach(func(k, v []byte) error {
		open = append(open, kv{bytes.Clone(k), bytes.Clone(v)})
		return nil
	}); err != nil {
		return 0, err
	}
	w := newWtx(tx) // at open: no committer yet
	for _, e := range open {
		j, err := decodeJob(e.k, e.v)
		if err != nil {
			return 0, err
		}
		scheduleLane(tx, &j)
		var alert *relay.Alert
		ek := eventKey(j.Event)
		if ev := tx.Bucket(bucketEvents).Get(ek); ev != nil {
			dv, err := decisionOf(tx, ek, ev)
			if err != nil {
				return 0, err
			}
			if dv != nil {
				d, err := decodeDecision(dv)
				if err != nil {
					return 0, err
				}
				alert = d.Alert
			}
		}
		place := placeOf(&j, rankOf(alert))
		if err := jobs.Put(e.k, appendJob(nil, &j, place)); err != nil {
			return 0, err
		}
		if err := moveSched(w, e.k, nil, place, nil); err != nil {
			return 0, err
		}
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	return len(open), tx.DeleteBucket(old)
}

// migrateSchedIndex moves the schedule's index of a file written before
// job values recorded their place (bucket sched_jobs, job key → sched
// key) into the open jobs' values, and drops it. It runs before
// releaseLeases, which reads the places.
func migrateSchedIndex(tx *bbolt.Tx) (int, error) {
	idx := tx.Bucket(bucketSchedJobs)
	if idx == nil {
		return 0, nil
	}
	jobs := tx.Bucket(bucketJobsOpen)
	type kv struct{ k, v []byte }
	var moved []kv
	err := idx.ForEach(func(jk, sk []byte) error {
		v := jobs.Get(jk)
		if v == nil || !bytes.HasSuffix(sk, jk) {
			return nil // stray: the check reports an entry without its job
		}
		nv, err := withPlace(v, sk[:len(sk)-len(jk)])
		if err != nil {
			return fmt.Errorf("job %q: %w", jk, err)
		}
		moved = append(moved, kv{bytes.Clone(jk), nv})
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, m := range moved {
		if err := jobs.Put(m.k, m.v); err != nil {
			return 0, err
		}
	}
	return len(moved), tx.DeleteBucket(bucketSchedJobs)
}

// Dead letters: bucket deadletters, key 8-byte big-endian sequence number
// (the dead letter's id, in decimal), value JSON store.DeadLetter.
var bucketDeadLetters = []byte("deadletters")

// parseDeadLetterID parses a dead letter id.
func parseDeadLetterID(id string) ([]byte, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("dead letter id %q: must be a positive decimal number", id)
	}
	return seqKey(n), nil
}

// putDeadLetter records a dead letter for the failed job j.
func putDeadLetter(tx *bbolt.Tx, j *relay.Job) error {
	b := tx.Bucket(bucketDeadLetters)
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("next sequence: %w", err)
	}
	dl := store.DeadLetter{ID: strconv.FormatUint(seq, 10), Event: j.Event, DeviceID: j.DeviceID, Platform: j.Platform,
		Reason: j.LastError, Attempts: j.Attempts, FailedAt: j.UpdatedAt, ExpiresAt: j.ExpiresAt}
	dv, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	return b.Put(seqKey(seq), dv)
}
