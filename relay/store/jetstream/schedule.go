package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Priority tokens of job subjects, in lease order.
const (
	prioHigh   = "h"
	prioNormal = "n"
)

var prios = []string{prioHigh, prioNormal}

func prioToken(p relay.Priority) string {
	if p == relay.PriorityHigh {
		return prioHigh
	}
	return prioNormal
}

// jobMsg is a job message: a pointer to a job of an event record.
type jobMsg struct {
	Workspace string `json:"ws"`
	ID        string `json:"id"`
	Device    string `json:"dev"`
}

// undecidedRetry is how long a job message whose event is not decided yet
// waits (its decision is being written, or failed and will be redone).
const undecidedRetry = 2 * time.Second

// consumerTimeout bounds the creation of a lane's consumer.
const consumerTimeout = 5 * time.Second

// publishJob publishes the message of an open job, on its lane and
// priority subject.
func (s *Store) publishJob(ctx context.Context, j *relay.Job, prio string) error {
	b, err := json.Marshal(jobMsg{Workspace: j.Event.Workspace, ID: j.Event.ID, Device: j.DeviceID})
	if err != nil {
		return err
	}
	if _, err := s.js.Publish(ctx, s.jobSubject(j.Lane(), prio), b); err != nil {
		return fmt.Errorf("schedule job %s/%s: %w", j.Event, j.DeviceID, err)
	}
	return nil
}

// consumer returns (creating if needed) the durable pull consumer of a
// lane and priority, shared by every relay.
func (s *Store) consumer(ctx context.Context, lane, prio string) (jetstream.Consumer, error) {
	name := laneToken(lane) + "_" + prio
	s.mu.Lock()
	c, ok := s.consumers[name]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	// A request sent while the meta leader changes gets no answer: a
	// bounded wait lets the next Lease ask again rather than hang until
	// the caller's deadline.
	cctx, cancel := context.WithTimeout(ctx, consumerTimeout)
	defer cancel()
	c, err := s.jobs.CreateOrUpdateConsumer(cctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "edgerelay lane " + lane + " priority " + prio,
		FilterSubject: s.jobSubject(lane, prio),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.opts.FetchAckWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer of lane %s (%s): %w", lane, prio, err)
	}
	s.mu.Lock()
	s.consumers[name] = c
	s.mu.Unlock()
	return c, nil
}

func (s *Store) forgetConsumer(lane, prio string) {
	s.mu.Lock()
	delete(s.consumers, laneToken(lane)+"_"+prio)
	s.mu.Unlock()
}

// ticket is store.Leased.Ticket: the job's message (by its reply subject,
// to ack or delay it) and the lease generation the record had when leased.
type ticket struct {
	key   relay.EventKey
	dev   string
	gen   uint64
	reply string
	// The record as the lease wrote it, a first guess for Settle.
	rec []byte
	rev uint64
}

// maxFetchRounds bounds the fetches of one Lease per priority (messages
// not yet due are put back and do not count).
const maxFetchRounds = 8

// Lease implements store.Schedule. Each (lane, priority) has a durable
// pull consumer on the job stream; Lease fetches high first, then normal.
// A fetched message is checked against its record: a job not yet due, or
// under another relay's live lease, is put back with NakWithDelay (until
// due, until the lease ends); a job that is final or gone is acked away;
// a due job gets a new lease generation in the record (compare-and-set),
// and its message is delayed by the TTL: if the lease is not settled in
// time, the message comes back and any relay leases the job again. next
// is always zero (the consumers know, but do not tell, when delayed
// messages come back).
func (s *Store) Lease(ctx context.Context, req store.LeaseRequest) ([]store.Leased, time.Time, error) {
	if req.Max <= 0 {
		return nil, time.Time{}, nil
	}
	if req.TTL <= 0 {
		return nil, time.Time{}, fmt.Errorf("lease %s: ttl %v: must be positive", req.Lane, req.TTL)
	}
	if s.isClosed() {
		return nil, time.Time{}, fmt.Errorf("lease %s: %w", req.Lane, errClosed)
	}
	deadline := time.Now().Add(req.Wait)
	var bell <-chan struct{}
	if req.Wait > 0 {
		var err error
		if bell, err = s.doorbell(req.Lane); err != nil {
			return nil, time.Time{}, fmt.Errorf("lease %s: %w", req.Lane, err)
		}
	}
	for rung := 0; ; {
		if err := ctx.Err(); err != nil {
			return nil, time.Time{}, fmt.Errorf("lease %s: %w", req.Lane, err)
		}
		select { // a ring from before this look is answered by it
		case <-bell:
		default:
		}
		out, held, err := s.leaseNow(ctx, req)
		if err != nil || len(out) > 0 {
			return out, time.Time{}, err
		}
		wait := time.Until(deadline)
		if wait < 10*time.Millisecond {
			return nil, time.Time{}, nil
		}
		if held {
			wait = min(wait, heldRetry)
		}
		if rung > 0 && rung <= len(ringRetry) {
			// The bell rang but the consumer had nothing yet (a message
			// reaches subscribers before the stream has stored it): look
			// again shortly rather than wait for the next ring.
			wait = min(wait, ringRetry[rung-1])
			rung++
		}
		t := time.NewTimer(wait)
		select {
		case <-bell:
			rung = 1
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// heldRetry is how soon a lease held back by a silent consumer (see
// holdLower) looks again.
const heldRetry = 20 * time.Millisecond

// ringRetry spaces the looks after a ring that found nothing.
var ringRetry = []time.Duration{2 * time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond}

// doorbell returns the lane's bell: it rings (a buffered send, never
// blocking) when a job message is published to the lane, and Lease waits
// on it, then fetches without waiting. Lease does not wait in a pull
// request: one ended early by the client stays open at the consumer's
// leader until it expires (in a cluster the end of interest reaches the
// leader late), and a message the leader hands it then is lost to every
// relay until the consumer's AckWait (30 s). Messages coming back from a
// delay (retries, lease ends) do not ring: the queue's next Lease, within
// its poll interval, finds them.
func (s *Store) doorbell(lane string) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.bells[lane]; ok {
		return ch, nil
	}
	ch := make(chan struct{}, 1)
	sub, err := s.nc.Subscribe(s.jobSubject(lane, "*"), func(*nats.Msg) {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("doorbell of lane %s: %w", lane, err)
	}
	s.bells[lane] = ch
	s.bellSubs = append(s.bellSubs, sub)
	return ch, nil
}

// leaseNow leases what the lane's consumers hold now, high first.
func (s *Store) leaseNow(ctx context.Context, req store.LeaseRequest) (out []store.Leased, held bool, err error) {
	for _, p := range prios {
		if len(out) >= req.Max {
			break // the lease clock runs: no consumer set-up past this point
		}
		c, err := s.consumer(ctx, req.Lane, p)
		if err != nil {
			return out, false, fmt.Errorf("lease %s: %w", req.Lane, err)
		}
		for range maxFetchRounds {
			if len(out) >= req.Max {
				break
			}
			batch, err := c.FetchNoWait(req.Max - len(out))
			if err != nil {
				return out, false, fmt.Errorf("lease %s: fetch: %w", req.Lane, err)
			}
			var msgs []jetstream.Msg
			for msg := range batch.Messages() {
				msgs = append(msgs, msg)
			}
			n := len(msgs)
			got, takeErr := s.takeAll(ctx, req, msgs)
			out = append(out, got...)
			if takeErr != nil {
				return out, false, takeErr
			}
			if err := batch.Error(); errors.Is(err, nats.ErrNoResponders) {
				// A consumer just created, or between leaders: nothing to
				// lease from it now; it is looked up again next time. Its
				// jobs may outrank the next priority's: hold those back
				// for a while rather than lease them first.
				s.forgetConsumer(req.Lane, p)
				if p != prios[len(prios)-1] && s.holdLower(req.Lane, p) {
					return out, true, nil
				}
				break
			} else if err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
				return out, false, fmt.Errorf("lease %s: fetch: %w", req.Lane, err)
			}
			s.answered(req.Lane, p)
			if n == 0 {
				break
			}
		}
	}
	return out, false, nil
}

// priorityHold bounds how long a priority's consumer that does not answer
// holds back the priorities below it: past that, a lane whose high
// consumer lost its leader still delivers its normal jobs.
const priorityHold = 2 * time.Second

// holdLower reports whether the priorities below p wait for p's consumer,
// which did not answer: yes until it has been silent for priorityHold.
func (s *Store) holdLower(lane, p string) bool {
	name := laneToken(lane) + "_" + p
	s.mu.Lock()
	defer s.mu.Unlock()
	since, ok := s.unanswered[name]
	if !ok {
		since = time.Now()
		s.unanswered[name] = since
	}
	return time.Since(since) < priorityHold
}

// answered clears p's silence (see holdLower).
func (s *Store) answered(lane, p string) {
	s.mu.Lock()
	if len(s.unanswered) > 0 { // most often empty: no name to build
		delete(s.unanswered, laneToken(lane)+"_"+p)
	}
	s.mu.Unlock()
}

// takeParallel bounds the messages of one fetch checked and leased at once.
const takeParallel = 16

// takeAll takes the messages of one fetch concurrently and returns the
// leases in the messages' order (the consumer's: due order).
func (s *Store) takeAll(ctx context.Context, req store.LeaseRequest, msgs []jetstream.Msg) ([]store.Leased, error) {
	leases := make([]store.Leased, len(msgs))
	took := make([]bool, len(msgs))
	errs := make([]error, len(msgs))
	sem := make(chan struct{}, takeParallel)
	var wg sync.WaitGroup
	for i, m := range msgs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			leases[i], took[i], errs[i] = s.take(ctx, req, m)
		})
	}
	wg.Wait()
	var out []store.Leased
	for i := range msgs {
		if took[i] {
			out = append(out, leases[i])
		}
	}
	return out, errors.Join(errs...)
}

// take turns a fetched message into a lease, or puts it back.
func (s *Store) take(ctx context.Context, req store.LeaseRequest, msg jetstream.Msg) (store.Leased, bool, error) {
	var m jobMsg
	if err := json.Unmarshal(msg.Data(), &m); err != nil {
		s.log.Error("job message: undecodable, dropped", "subject", msg.Subject(), relay.LogKeyError, err)
		_ = msg.Term()
		return store.Leased{}, false, nil
	}
	key := relay.EventKey{Workspace: m.Workspace, ID: m.ID}
	putBack := func(d time.Duration) {
		if err := msg.NakWithDelay(max(d, time.Millisecond)); err != nil {
			s.log.Warn("job message: could not put back (it returns after the ack wait)", relay.LogKeyEventID, m.ID, relay.LogKeyError, err)
		}
	}
	drop := func() {
		if err := msg.Ack(); err != nil {
			s.log.Warn("job message: could not drop", relay.LogKeyEventID, m.ID, relay.LogKeyError, err)
		}
	}
	undecidedReads := 0
	for attempt := range maxCAS {
		r, rev, err := s.getEvent(ctx, key)
		if err != nil {
			putBack(undecidedRetry)
			return store.Leased{}, false, fmt.Errorf("lease %s: %w", req.Lane, err)
		}
		if rev == 0 {
			drop() // pruned
			return store.Leased{}, false, nil
		}
		if r.Decision == nil {
			// Decide publishes the messages just before it writes the
			// decision: a relay waiting for work sees them first.
			if undecidedReads++; undecidedReads < 8 {
				if err := sleep(ctx, time.Duration(undecidedReads)*10*time.Millisecond); err != nil {
					putBack(0)
					return store.Leased{}, false, err
				}
				continue
			}
			putBack(undecidedRetry)
			return store.Leased{}, false, nil
		}
		j := r.job(m.Device)
		if j == nil || j.State.Final() || j.Lane() != req.Lane {
			drop() // finished, or a message of a decision that lost
			return store.Leased{}, false, nil
		}
		now := time.Now()
		if j.LeaseUntil.After(now) {
			putBack(j.LeaseUntil.Sub(now))
			return store.Leased{}, false, nil
		}
		if due := store.DueAt(&j.Job); due.After(req.Now) {
			putBack(due.Sub(req.Now))
			return store.Leased{}, false, nil
		}
		// The device is read before the lease is written: a read that
		// fails (a leader change) must not lease the job without its
		// device, which the queue would take for a removed device.
		d, drev, err := s.getDevice(ctx, key.Workspace, r.Event.User, m.Device)
		if err != nil {
			putBack(undecidedRetry)
			return store.Leased{}, false, fmt.Errorf("lease %s: device %s of %s: %w", req.Lane, m.Device, key, err)
		}
		j.Gen++
		j.Owner, j.LeaseUntil = req.Owner, now.Add(req.TTL)
		gen := j.Gen
		job := j.Job
		nrev, err := putJSON(ctx, s.events, eventKey(key.Workspace, key.ID), rev, r)
		if err != nil {
			if isWrongLast(err) {
				if err := backoff(ctx, attempt); err != nil {
					putBack(0)
					return store.Leased{}, false, err
				}
				continue
			}
			putBack(undecidedRetry)
			return store.Leased{}, false, fmt.Errorf("lease %s: job %s/%s: %w", req.Lane, key, m.Device, err)
		}
		// The message is the lease's timer: back to the schedule after TTL.
		putBack(req.TTL)
		t := &ticket{key: key, dev: m.Device, gen: gen, reply: msg.Reply(), rev: nrev}
		t.rec, _ = json.Marshal(r)
		l := store.Leased{Job: job, User: r.Event.User, Alert: r.Alert, AcceptedAt: r.ReceivedAt, Until: j.LeaseUntil, Ticket: t}
		if drev != 0 {
			l.Device = d
		}
		return l, true, nil
	}
	putBack(0)
	return store.Leased{}, false, fmt.Errorf("lease %s: job %s/%s: %w", req.Lane, key, m.Device, errTooManyConflicts)
}

// Settle implements store.Schedule: compare-and-set on the record, only if
// the job's lease generation is still the ticket's; then the message is
// acked (final state) or delayed to the job's due time (open state). A
// failure to ack or delay is repaired when the message comes back.
func (s *Store) Settle(ctx context.Context, l store.Leased, j relay.Job) error {
	t, ok := l.Ticket.(*ticket)
	if !ok || t == nil {
		return fmt.Errorf("settle %s/%s: not a jetstream lease ticket", j.Event, j.DeviceID)
	}
	var dead *store.DeadLetter
	if j.State == relay.StateFailed {
		dead = &store.DeadLetter{ID: deadID(j.UpdatedAt, t.key, t.dev), Event: t.key, DeviceID: t.dev,
			Platform: l.Job.Platform, Reason: j.LastError, Attempts: j.Attempts,
			FailedAt: j.UpdatedAt.UTC(), ExpiresAt: l.Job.ExpiresAt}
		// Written first: a relay dying before the record lands leaves a
		// dead letter whose job is not failed, which replay refuses.
		if _, err := putJSON(ctx, s.events, deadKey(dead.ID), 0, dead); err != nil && !isWrongLast(err) {
			return fmt.Errorf("settle %s/%s: dead letter: %w", t.key, t.dev, err)
		}
	}
	var settled relay.Job
	_, err := s.updateEventFrom(ctx, t.key, t.rec, t.rev, func(r *eventRec) error {
		rj := r.job(t.dev)
		if rj == nil || rj.Gen != t.gen || rj.State.Final() {
			return store.ErrLeaseLost
		}
		rj.State, rj.Attempts, rj.LastError, rj.NextAt, rj.UpdatedAt = j.State, j.Attempts, j.LastError, j.NextAt, j.UpdatedAt
		rj.Gen++
		rj.Owner, rj.LeaseUntil = "", time.Time{}
		if dead != nil {
			rj.Dead = dead.ID
		}
		settled = rj.Job
		return nil
	})
	if errors.Is(err, relay.ErrNotFound) {
		err = store.ErrLeaseLost
	}
	if err != nil {
		if dead != nil {
			_ = s.events.Delete(context.WithoutCancel(ctx), deadKey(dead.ID))
		}
		return fmt.Errorf("settle %s/%s: %w", t.key, t.dev, err)
	}
	if settled.State.Final() {
		// Confirmed ack: the message is gone when Settle returns, so
		// OpenJobs counts right away.
		actx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		defer cancel()
		if _, err := s.nc.RequestWithContext(actx, t.reply, []byte("+ACK")); err != nil {
			s.log.Warn("settle: ack of the job message failed (dropped when it comes back)", relay.LogKeyEventID, t.key.ID, relay.LogKeyError, err)
		}
		return nil
	}
	delay := max(time.Until(store.DueAt(&settled)), time.Millisecond)
	nak, _ := json.Marshal(struct {
		Delay time.Duration `json:"delay"`
	}{delay})
	if err := s.nc.Publish(t.reply, append([]byte("-NAK "), nak...)); err != nil {
		s.log.Warn("settle: delay of the job message failed (it comes back at the lease's end)", relay.LogKeyEventID, t.key.ID, relay.LogKeyError, err)
	}
	return nil
}

// deadID is a dead letter's id: the failure time (hex nanoseconds, so ids
// sort by time) and a hash of the job's key.
func deadID(at time.Time, key relay.EventKey, dev string) string {
	h := sha256.Sum256([]byte(key.Workspace + "\x00" + key.ID + "\x00" + dev))
	return fmt.Sprintf("%016x-%s", at.UnixNano(), hex.EncodeToString(h[:6]))
}

// OpenJobs implements store.Schedule: one message per open job (a lost
// race or a crash may leave a duplicate until it is leased and dropped),
// counted by subjectCounts.
func (s *Store) OpenJobs(ctx context.Context) (store.OpenCounts, error) {
	counts, err := s.subjectCounts(ctx)
	if err != nil {
		return store.OpenCounts{}, fmt.Errorf("open jobs: %w", err)
	}
	var c store.OpenCounts
	for k, n := range counts {
		if k.prio == prioHigh {
			c.High += n
		} else {
			c.Normal += n
		}
	}
	return c, nil
}

type laneprio struct{ lane, prio string }

func (s *Store) parseJobSubject(subj string) (laneprio, bool) {
	parts := strings.Split(strings.TrimPrefix(subj, s.subj.jobs+"."), ".")
	if len(parts) != 2 {
		return laneprio{}, false
	}
	lane, err := untok(parts[0])
	if err != nil {
		return laneprio{}, false
	}
	return laneprio{lane, parts[1]}, true
}

// subjectCounts counts the job messages of each lane and priority. The
// consumer of a lane, where one exists, knows first that a message was
// acked (the stream deletes it a moment later, after the consumer's
// replicas agreed): its count (undelivered + unacked) wins over the
// stream's.
func (s *Store) subjectCounts(ctx context.Context) (map[laneprio]int, error) {
	info, err := s.jobs.Info(ctx, jetstream.WithSubjectFilter(s.subj.jobs+".>"))
	if err != nil {
		return nil, err
	}
	out := map[laneprio]int{}
	for subj, n := range info.State.Subjects {
		if k, ok := s.parseJobSubject(subj); ok {
			out[k] += int(n)
		}
	}
	l := s.jobs.ListConsumers(ctx)
	for ci := range l.Info() {
		if k, ok := s.parseJobSubject(ci.Config.FilterSubject); ok {
			if n := int(ci.NumPending) + ci.NumAckPending; n > 0 {
				out[k] = n
			} else {
				delete(out, k)
			}
		}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// laneStatsMaxScan bounds the records LaneStats reads per lane; beyond it,
// Leased, Due, Owners, OldestOpen and Expired describe the jobs scanned (the oldest messages)
// while High and Normal still count every message.
const laneStatsMaxScan = 5000

// LaneStats implements store.Schedule: counts from the job stream, lease
// and due details from the records the lane's messages point at.
func (s *Store) LaneStats(ctx context.Context, now time.Time) ([]store.LaneStats, error) {
	counts, err := s.subjectCounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("lane stats: %w", err)
	}
	byLane := map[string]*store.LaneStats{}
	for k, n := range counts {
		st := byLane[k.lane]
		if st == nil {
			st = &store.LaneStats{Lane: k.lane}
			byLane[k.lane] = st
		}
		if k.prio == prioHigh {
			st.High += n
		} else {
			st.Normal += n
		}
	}
	for lane, st := range byLane {
		if err := s.scanLane(ctx, lane, now, st); err != nil {
			return nil, fmt.Errorf("lane stats %s: %w", lane, err)
		}
	}
	out := make([]store.LaneStats, 0, len(byLane))
	for _, st := range byLane {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b store.LaneStats) int { return strings.Compare(a.Lane, b.Lane) })
	return out, nil
}

// laneStatsReaders is how many job records scanLane reads at once: each
// read is a round trip, and read one after each job message they doubled
// the scan's (BenchmarkLaneStats: 2,000 jobs on three nodes, 966 -> 726
// ms; the messages themselves are still read one by one).
const laneStatsReaders = 16

// scanLane reads the lane's job messages (oldest first, both priorities)
// and, laneStatsReaders at a time, their records.
func (s *Store) scanLane(ctx context.Context, lane string, now time.Time, st *store.LaneStats) error {
	subj := s.subj.jobs + "." + laneToken(lane) + ".*"
	seen := map[string]bool{}
	wall := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(laneStatsReaders)
	var mu sync.Mutex // st
	var scanErr error
	for seq, n := uint64(1), 0; n < laneStatsMaxScan; seq++ {
		msg, err := nextMsg(gctx, s.jobs, seq, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			scanErr = err
			break
		}
		seq = msg.Sequence
		var m jobMsg
		if json.Unmarshal(msg.Data, &m) != nil {
			continue
		}
		id := m.Workspace + "\x00" + m.ID + "\x00" + m.Device
		if seen[id] {
			continue
		}
		seen[id] = true
		n++
		g.Go(func() error {
			r, rev, err := s.getEvent(gctx, relay.EventKey{Workspace: m.Workspace, ID: m.ID})
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			countJob(st, r, rev, m.Device, now, wall)
			return nil
		})
	}
	// A failed read cancels gctx, which then fails the scan: its error
	// is the one to report.
	if err := g.Wait(); err != nil {
		return err
	}
	return scanErr
}

// countJob adds the device's job of record r (revision rev, 0: absent) to
// the lane's stats.
func countJob(st *store.LaneStats, r *eventRec, rev uint64, device string, now, wall time.Time) {
	if rev == 0 || r.Decision == nil {
		return
	}
	j := r.job(device)
	if j == nil || j.State.Final() {
		return
	}
	// Open, due or not (parked, retrying, leased): it waits. A delivered
	// alert waiting for its expiry withdraw does not.
	if j.State != relay.StateWithdrawDue {
		if !r.ReceivedAt.IsZero() && (st.OldestOpen.IsZero() || r.ReceivedAt.Before(st.OldestOpen)) {
			st.OldestOpen = r.ReceivedAt
		}
		if !j.ExpiresAt.IsZero() && !now.Before(j.ExpiresAt) {
			st.Expired++
		}
	}
	if j.LeaseUntil.After(wall) {
		st.Leased++
		if st.Owners == nil {
			st.Owners = map[string]int{}
		}
		st.Owners[j.Owner]++
		return
	}
	if due := store.DueAt(&j.Job); !due.After(now) {
		st.Due++
		if st.OldestDue.IsZero() || due.Before(st.OldestDue) {
			st.OldestDue = due
		}
	}
}

// DeadLetters implements store.Schedule. Ids sort by failure time, so the
// list is the dead letters sorted by id, newest first.
func (s *Store) DeadLetters(ctx context.Context, after string, limit int) ([]store.DeadLetter, error) {
	var all []store.DeadLetter
	err := scanBucket(ctx, s.eventsStr, "dl.*", func(key string, val []byte) error {
		var dl store.DeadLetter
		if err := json.Unmarshal(val, &dl); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		if after == "" || dl.ID < after {
			all = append(all, dl)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	slices.SortFunc(all, func(a, b store.DeadLetter) int { return strings.Compare(b.ID, a.ID) })
	out := []store.DeadLetter{}
	return append(out, all[:min(max(limit, 0), len(all))]...), nil
}

// ReplayDeadLetter implements store.Schedule. The job record is the
// arbiter: it changes (compare-and-set) only while the job is failed with
// this dead letter; then the job's message is published and the dead
// letter marked replayed. A relay dying in between leaves a dead letter
// not marked whose job is open again: a second replay finds the job no
// longer failed, answers ErrReplayed and marks it.
func (s *Store) ReplayDeadLetter(ctx context.Context, id string, now time.Time) (relay.Job, error) {
	var dl store.DeadLetter
	rev, err := getJSON(ctx, s.events, deadKey(id), &dl)
	if err != nil {
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, err)
	}
	if rev == 0 {
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, relay.ErrNotFound)
	}
	if !dl.ReplayedAt.IsZero() {
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, store.ErrReplayed)
	}
	if !dl.ExpiresAt.IsZero() && !now.Before(dl.ExpiresAt) {
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, relay.ErrExpired)
	}
	var job relay.Job
	var prio string
	errNotFailed := errors.New("not failed")
	_, err = s.updateEvent(ctx, dl.Event, func(r *eventRec) error {
		j := r.job(dl.DeviceID)
		if j == nil {
			return relay.ErrNotFound
		}
		if j.State != relay.StateFailed || j.Dead != id {
			return errNotFailed
		}
		j.State, j.Attempts, j.LastError, j.NextAt, j.UpdatedAt = relay.StatePending, 0, "", time.Time{}, now
		j.Gen++
		j.Owner, j.LeaseUntil, j.Dead = "", time.Time{}, ""
		job, prio = j.Job, prioToken(store.PriorityOf(r.Alert))
		return nil
	})
	switch {
	case errors.Is(err, errNotFailed):
		s.markReplayed(ctx, id, now)
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, store.ErrReplayed)
	case err != nil:
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, err)
	}
	if err := s.publishJob(ctx, &job, prio); err != nil {
		// The record says pending but no message leads to it: put it back
		// to failed so the operator can replay again.
		_, uerr := s.updateEvent(context.WithoutCancel(ctx), dl.Event, func(r *eventRec) error {
			j := r.job(dl.DeviceID)
			if j == nil || j.State != relay.StatePending || j.Attempts != 0 {
				return errNotFailed
			}
			j.State, j.Dead, j.LastError = relay.StateFailed, id, dl.Reason
			j.Gen++
			return nil
		})
		return relay.Job{}, fmt.Errorf("replay dead letter %s: %w", id, errors.Join(err, uerr))
	}
	s.markReplayed(ctx, id, now)
	return job, nil
}

// markReplayed sets a dead letter's ReplayedAt if unset.
func (s *Store) markReplayed(ctx context.Context, id string, now time.Time) {
	for range maxCAS {
		var dl store.DeadLetter
		rev, err := getJSON(ctx, s.events, deadKey(id), &dl)
		if err != nil || rev == 0 || !dl.ReplayedAt.IsZero() {
			return
		}
		dl.ReplayedAt = now.UTC()
		if _, err := putJSON(ctx, s.events, deadKey(id), rev, &dl); err == nil || !isWrongLast(err) {
			if err != nil {
				s.log.Warn("dead letter: could not mark replayed", "dead_letter", id, relay.LogKeyError, err)
			}
			return
		}
	}
}
