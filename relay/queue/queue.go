package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Defaults for Options.
const (
	DefaultDrainTimeout       = 10 * time.Second
	DefaultLeaseTTL           = 30 * time.Second
	DefaultPollInterval       = time.Second
	DefaultMaxLease           = 256
	DefaultMaxOpenJobs        = 1_000_000
	DefaultBreakerThreshold   = 3
	DefaultOutageThreshold    = 20
	DefaultBreakerCooldown    = 5 * time.Second
	DefaultBreakerMaxCooldown = 5 * time.Minute
	// DefaultConcurrency is a lane's sends in flight when Lane.Concurrency
	// is not set.
	DefaultConcurrency = 64
)

// HighReserve is the share of MaxOpenJobs kept for high-priority events:
// normal-priority events are refused once the backlog reaches
// (1-HighReserve) × MaxOpenJobs, high-priority ones at MaxOpenJobs.
const HighReserve = 0.1

// Devices is what the queue needs of the directory: dropping a dead token,
// and the device's current registration when the token was dead.
type Devices interface {
	RemoveDeviceToken(ctx context.Context, workspace, user, id, token string) (bool, error)
	Device(ctx context.Context, workspace, user, id string) (relay.Device, error)
}

// Lane is a notifier and how many sends it may have in flight. Each app and
// platform has its own lane (relay.Lane), so a slow provider does not hold
// up another.
type Lane struct {
	Notifier    delivery.Notifier
	Concurrency int
}

// Options configure a Queue. Zero fields take the Default* values.
type Options struct {
	Schedule store.Schedule
	Devices  Devices
	Lanes    map[string]Lane // by relay.Lane
	Backoff  Backoff
	Logger   hclog.Logger
	// Owner names this relay in the schedule's leases.
	Owner string
	// LeaseTTL is how long a leased job is this relay's: a job not settled
	// by then (the relay died) is sent by any relay. A send never runs
	// past its lease.
	LeaseTTL time.Duration
	// PollInterval bounds how long a lane sleeps without asking the
	// schedule for work that other relays (or a retry) made due.
	PollInterval time.Duration
	// MaxLease is how many jobs one lease request takes at most.
	MaxLease int
	// DrainTimeout bounds how long in-flight sends may continue after Run's
	// context is done.
	DrainTimeout time.Duration
	// MaxOpenJobs is the backlog at which Admit refuses new events (normal
	// priority a little earlier: HighReserve).
	MaxOpenJobs int
	// BreakerThreshold is how many consecutive configuration errors open a
	// lane's circuit breaker.
	BreakerThreshold int
	// OutageThreshold is how many consecutive retryable failures (5xx,
	// transport errors, quota) with no success between them open a lane's
	// breaker: the provider is down.
	OutageThreshold int
	// BreakerCooldown is how long a breaker stays open the first time; it
	// doubles after each failed probe up to BreakerMaxCooldown.
	BreakerCooldown    time.Duration
	BreakerMaxCooldown time.Duration
	// Now returns the current time; nil uses time.Now.
	Now func() time.Time
	// OnOutcome, when set, is called after each job reaches a final state.
	OnOutcome func(j relay.Job, sendDuration time.Duration)
	// OnFinal, when set, is called with the same outcomes as OnOutcome,
	// with the lease the job was sent under (its alert's type, when its
	// event was accepted): the accept-to-deliver latency.
	OnFinal func(lj store.Leased, j relay.Job)
	// OnOffered, when set, is called with the jobs an accept leased for a
	// lane and handed over (Offer).
	OnOffered func(lane string, n int)
	// OnBreaker, when set, is called when a lane's breaker opens (open
	// true, with the provider's reason) or closes.
	OnBreaker func(lane string, open bool, reason string)
	// WithdrawOnExpiry keeps the job of a delivered actionable alert
	// (relay.Withdrawable) in the schedule until the alert expires
	// (relay.StateWithdrawDue), then sends the device the alert's expiry
	// withdraw (relay.ExpiryWithdraw) and ends the job delivered, however
	// that send ends. The lane's notifier decides whether the withdraw is
	// still wanted (an answered or cancelled alert was withdrawn already):
	// an error wrapping relay.ErrExpired drops it.
	WithdrawOnExpiry bool
}

// Queue sends the jobs of the schedule: each lane leases due jobs (high
// priority first), sends them and settles each lease with the outcome.
type Queue struct {
	opts  Options
	log   hclog.Logger
	lanes map[string]*lane

	// open caches the schedule's open job counts for Admit: refreshed from
	// the store by Run, moved by Scheduled and by final outcomes between.
	openHigh, openNormal atomic.Int64

	// The limits a reload may change (SetLimits): opts.MaxOpenJobs and
	// opts.Backoff at first.
	maxOpen atomic.Int64
	backoff atomic.Pointer[Backoff]

	settling sync.WaitGroup // settles under way (settle)
	mu       sync.Mutex     // guards lanes' inFlight and breakers, tokens
	// tokens: device tokens APNs answered 429 TooManyRequests for, and
	// until when their jobs wait.
	tokens map[string]time.Time
}

// New returns a queue. It starts nothing.
func New(opts Options) *Queue {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Owner == "" {
		opts.Owner = "relayd"
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MaxLease <= 0 {
		opts.MaxLease = DefaultMaxLease
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.MaxOpenJobs <= 0 {
		opts.MaxOpenJobs = DefaultMaxOpenJobs
	}
	if opts.BreakerThreshold <= 0 {
		opts.BreakerThreshold = DefaultBreakerThreshold
	}
	if opts.OutageThreshold <= 0 {
		opts.OutageThreshold = DefaultOutageThreshold
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = DefaultBreakerCooldown
	}
	if opts.BreakerMaxCooldown < opts.BreakerCooldown {
		opts.BreakerMaxCooldown = max(DefaultBreakerMaxCooldown, opts.BreakerCooldown)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	q := &Queue{opts: opts, log: opts.Logger, lanes: make(map[string]*lane), tokens: map[string]time.Time{}}
	q.SetLimits(opts.MaxOpenJobs, opts.Backoff)
	for k, l := range opts.Lanes {
		if l.Concurrency <= 0 {
			l.Concurrency = DefaultConcurrency
		}
		q.lanes[k] = &lane{key: k, Lane: l, wake: make(chan struct{}, 1)}
	}
	return q
}

// SetLimits changes the backlog limit (Options.MaxOpenJobs; <= 0 keeps
// it) and the retry backoff of the sends settled from now on (a reload).
func (q *Queue) SetLimits(maxOpenJobs int, b Backoff) {
	if maxOpenJobs > 0 {
		q.maxOpen.Store(int64(maxOpenJobs))
	}
	q.backoff.Store(&b)
}

// ErrFull is returned by Admit when the backlog reached its limit.
var ErrFull = errors.New("queue full")

// Admit reports whether events of priority p may be accepted: it fails with
// an error wrapping ErrFull once the backlog reached the limit for p
// (normal-priority events are refused first, see HighReserve).
func (q *Queue) Admit(p relay.Priority) error {
	open := q.openHigh.Load() + q.openNormal.Load()
	limit := q.maxOpen.Load()
	if p != relay.PriorityHigh {
		limit = max(1, int64(float64(limit)*(1-HighReserve)))
	}
	if open >= limit {
		return fmt.Errorf("%w: %d open jobs ≥ limit %d for %s-priority events; providers unreachable?", ErrFull, open, limit, cmpOr(p, relay.PriorityNormal))
	}
	return nil
}

func cmpOr(p, def relay.Priority) relay.Priority {
	if p == "" {
		return def
	}
	return p
}

// Scheduled tells the queue that n jobs entered the schedule in lane with
// priority p (this relay decided an event): the lane looks for work at once
// instead of at its next poll.
func (q *Queue) Scheduled(lane string, p relay.Priority, n int) {
	if p == relay.PriorityHigh {
		q.openHigh.Add(int64(n))
	} else {
		q.openNormal.Add(int64(n))
	}
	if l := q.lanes[lane]; l != nil {
		l.signal()
	}
}

// LeaseTerms are the owner and the length of the queue's leases: what an
// accept that leases jobs for it (store.AcceptLeaser) takes them with.
func (q *Queue) LeaseTerms() (owner string, ttl time.Duration) {
	return q.opts.Owner, q.opts.LeaseTTL
}

// Reserve takes up to n of lane's send slots for jobs an accept is about
// to lease for this relay, and returns how many it took: none for a lane
// that is unknown, not running, or whose breaker is open (its jobs then
// wait in the schedule as usual). Each slot taken is given back with
// Unreserve or handed a job with Offer.
func (q *Queue) Reserve(lane string, n int) int {
	l := q.lanes[lane]
	if l == nil || n <= 0 {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if l.offer == nil || l.br.state != breakerClosed {
		return 0
	}
	n = min(n, l.Concurrency-l.inFlight)
	if n <= 0 {
		return 0
	}
	l.inFlight += n
	return n
}

// Backlogged reports whether the lane's last lease took all it asked for:
// jobs accepted before may still be due in the schedule. An accept then
// leases no more than a few jobs of its own (pipeline), so that new events
// do not keep the free slots from an older backlog, or from its higher
// priority jobs.
func (q *Queue) Backlogged(lane string) bool {
	l := q.lanes[lane]
	if l == nil {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return l.backlog
}

// Unreserve gives back n slots Reserve took and no job was offered for.
func (q *Queue) Unreserve(lane string, n int) {
	if l := q.lanes[lane]; l != nil && n > 0 {
		q.done(l, n)
	}
}

// Offer sends jobs leased for this relay (until their Until), in slots
// Reserve took for them, as the lane's own leases are sent. It never
// blocks. A lane that stopped meanwhile leaves them leased: they are sent
// once the lease ends (after a restart, the store releases it at once).
func (q *Queue) Offer(lane string, jobs []store.Leased) {
	l := q.lanes[lane]
	if l == nil || len(jobs) == 0 {
		return
	}
	q.mu.Lock()
	if l.offer != nil {
		// Under q.mu: the lane unsets offer under it before its pool
		// closes. The pool only queues or hands over (no q.mu).
		l.offer(jobs)
		q.mu.Unlock()
		if q.opts.OnOffered != nil {
			q.opts.OnOffered(lane, len(jobs))
		}
		return
	}
	q.mu.Unlock()
	q.log.Warn("jobs leased at accept for a lane that stopped: they are sent when their lease ends", "lane", lane, "jobs", len(jobs))
	q.done(l, len(jobs))
}

// Open returns the number of open jobs (the schedule's, across relays, as
// last counted).
func (q *Queue) Open() int {
	// Outcomes counted here between refreshes may already be in the
	// store's count: the sum can dip below zero for a moment.
	return max(0, int(q.openHigh.Load()+q.openNormal.Load()))
}

// Run sends due jobs until ctx is done, then lets in-flight sends finish
// within DrainTimeout (a send cut then leaves its job to the schedule: it
// is sent again, by this relay after a restart or by another). It returns
// when every goroutine it started has exited.
func (q *Queue) Run(ctx context.Context) error {
	// sendCtx outlives ctx by the drain timeout, so a SIGTERM lets in-flight
	// sends complete instead of cutting them mid-request.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.NewTimer(q.opts.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelSends()
		case <-sendCtx.Done():
		}
	})
	defer stopDrain()

	q.refreshCounts(ctx)
	q.warnUnservedLanes(ctx)
	var sends sync.WaitGroup
	var loops sync.WaitGroup
	loops.Go(func() { q.runCounts(ctx) })
	for _, l := range q.lanes {
		// A settle runs on a pool of its own, so the sender goes back to
		// its pool while the store commits; a goroutine per settle grew
		// a new stack each time through JetStream's client.
		l.settles = newSendPool(&q.settling, l.Concurrency, time.Now, nil, nil, func(r settleReq) {
			q.record(r.ctx, l, r.lj, r.j, r.next, r.took)
		})
		loops.Go(func() { q.runLane(ctx, sendCtx, l, &sends) })
	}
	loops.Wait()
	sends.Wait() // the sends handed their last settles over
	for _, l := range q.lanes {
		l.settles.close()
	}
	q.settling.Wait()
	cancelSends()
	return nil
}

// runCounts refreshes the open job counts Admit uses.
func (q *Queue) runCounts(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.refreshCounts(ctx)
		}
	}
}

func (q *Queue) refreshCounts(ctx context.Context) {
	c, err := q.opts.Schedule.OpenJobs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			q.log.Warn("count open jobs", relay.LogKeyError, err)
		}
		return
	}
	q.openHigh.Store(int64(c.High))
	q.openNormal.Store(int64(c.Normal))
}

// warnUnservedLanes names lanes that hold jobs but have no provider here
// (an app removed from the config): their jobs wait for a relay that has.
func (q *Queue) warnUnservedLanes(ctx context.Context) {
	stats, err := q.opts.Schedule.LaneStats(ctx, q.opts.Now())
	if err != nil {
		return
	}
	for _, s := range stats {
		if q.lanes[s.Lane] == nil {
			q.log.Warn("open jobs wait for a lane with no provider configured on this relay", "lane", s.Lane, "jobs", s.High+s.Normal)
		}
	}
}

// runLane leases and dispatches one lane's due jobs until ctx is done. It
// sleeps until the schedule's next due time, a wake-up (new work, a send
// finished, a breaker changed) or the poll interval.
func (q *Queue) runLane(ctx, sendCtx context.Context, l *lane, sends *sync.WaitGroup) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// Leased jobs are sent on the lane's pool of goroutines (pool.go).
	type item struct {
		lj    store.Leased
		probe bool
		lease *leaseContext
	}
	pool := newSendPool(sends, l.Concurrency, time.Now,
		func(it item) bool { return it.probe || store.PriorityOf(it.lj.Alert) == relay.PriorityHigh },
		l.pushSample,
		func(it item) {
			q.process(sendCtx, it.lease.ctx, l, it.lj, it.probe)
			it.lease.done()
		})
	defer pool.close()
	// Jobs an accept leased for this lane join its sends (Offer). Unset
	// before the pool closes: no job is handed to a closed pool.
	q.mu.Lock()
	l.offer = func(jobs []store.Leased) {
		// A lease that does not say when it ends is taken to end now:
		// its jobs go back to the schedule unsent.
		lc := newLeaseContext(sendCtx, leaseEnd(jobs, q.opts.Now()).Add(-q.opts.LeaseTTL/10), len(jobs))
		for _, lj := range jobs {
			pool.run(item{lj, false, lc})
		}
	}
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		l.offer = nil
		q.mu.Unlock()
	}()
	failures := 0
	for {
		if ctx.Err() != nil {
			return
		}
		now := q.opts.Now()
		wait := q.opts.PollInterval
		q.mu.Lock()
		free := l.Concurrency - l.inFlight
		var until time.Time
		var probe, hold bool
		if free > 0 {
			until, probe, hold = l.br.admit(now)
		}
		q.mu.Unlock()
		switch {
		case free <= 0 || hold:
			// Wait for a send to finish (or the probe's answer).
		case !until.IsZero():
			wait = until.Sub(now) // breaker open: leave the jobs in the schedule
		default:
			max := min(free, q.opts.MaxLease)
			if probe {
				max = 1
			}
			jobs, next, err := q.opts.Schedule.Lease(ctx, store.LeaseRequest{Lane: l.key, Owner: q.opts.Owner, Now: now,
				TTL: q.opts.LeaseTTL, Max: max, Wait: min(q.opts.PollInterval, 250*time.Millisecond)})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				q.log.Error("lease jobs", "lane", l.key, relay.LogKeyError, err)
				// Jobs leased before the error are ours: they are sent.
				wait = min(time.Duration(failures)*100*time.Millisecond, 5*time.Second)
			} else {
				failures = 0
			}
			if probe && len(jobs) == 0 {
				q.mu.Lock()
				l.br.probing = false
				q.mu.Unlock()
			}
			q.mu.Lock()
			l.inFlight += len(jobs)
			l.backlog = len(jobs) == max && err == nil
			q.mu.Unlock()
			if len(jobs) > 0 {
				lc := newLeaseContext(sendCtx, leaseEnd(jobs, now.Add(q.opts.LeaseTTL)).Add(-q.opts.LeaseTTL/10), len(jobs))
				for _, lj := range jobs {
					pool.run(item{lj, probe, lc})
				}
			}
			if len(jobs) == max && err == nil {
				continue // more may be due
			}
			if !next.IsZero() {
				wait = min(wait, max0(next.Sub(q.opts.Now())))
			}
			if len(jobs) > 0 {
				continue // look again once these are handed out
			}
		}
		timer.Reset(max0(wait))
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func max0(d time.Duration) time.Duration { return max(d, 0) }

// leaseContext is the context of one lease's sends: it ends before the
// lease does (so no other relay sends a job while this send may still
// land). The lease's jobs share it, and its timer: one per lease, not one
// per send.
type leaseContext struct {
	ctx    context.Context
	cancel context.CancelFunc
	left   atomic.Int32 // sends not done
}

func newLeaseContext(parent context.Context, end time.Time, jobs int) *leaseContext {
	lc := &leaseContext{}
	lc.ctx, lc.cancel = context.WithDeadline(parent, end)
	lc.left.Store(int32(jobs))
	return lc
}

// leaseEnd is when the first of jobs' leases ends: their Until, or
// fallback for a lease that does not say (a lane's own lease: the
// request's Now+TTL). A backend that stamps each lease as it takes it may
// return leases that began well after the request, when taking them was
// slow.
func leaseEnd(jobs []store.Leased, fallback time.Time) time.Time {
	var end time.Time
	for i := range jobs {
		u := jobs[i].Until
		if u.IsZero() {
			u = fallback
		}
		if end.IsZero() || u.Before(end) {
			end = u
		}
	}
	return end
}

// done ends one send; the last ends the context.
func (lc *leaseContext) done() {
	if lc.left.Add(-1) == 0 {
		lc.cancel()
	}
}

// process sends one leased job (or parks it, when its lane's breaker opened
// or its token is throttled) and settles the lease. lctx bounds the send:
// it ends before the lease does.
func (q *Queue) process(ctx, lctx context.Context, l *lane, lj store.Leased, probe bool) {
	j := lj.Job
	switch {
	case lj.Alert == nil:
		q.settle(ctx, l, lj, relay.StateFailed, time.Time{}, "event has no stored alert", 0, probe)
		return
	case lj.Device.ID == "":
		// The lease says the device is gone; ask the directory itself before
		// ending the job (a cluster store read during a leader change can
		// come back empty).
		d, err := q.opts.Devices.Device(ctx, j.Event.Workspace, lj.User, j.DeviceID)
		switch {
		case errors.Is(err, relay.ErrNotFound):
			q.settle(ctx, l, lj, relay.StateTokenRemoved, time.Time{}, "device no longer registered", 0, probe)
			return
		case err != nil:
			q.settle(ctx, l, lj, relay.StatePending, q.opts.Now().Add(time.Second), "read device: "+err.Error(), 0, probe)
			return
		}
		lj.Device = d
		if relay.Lane(d.App, d.Platform) != l.key {
			q.settle(ctx, l, lj, relay.StateTokenRemoved, time.Time{}, "device re-registered for "+relay.Lane(d.App, d.Platform), 0, probe)
			return
		}
	case relay.Lane(lj.Device.App, lj.Device.Platform) != l.key:
		q.settle(ctx, l, lj, relay.StateTokenRemoved, time.Time{},
			fmt.Sprintf("device re-registered for %s", relay.Lane(lj.Device.App, lj.Device.Platform)), 0, probe)
		return
	}
	if !probe {
		// The breaker may have opened since the lease.
		if until, open := q.breakerUntil(l); open {
			q.settle(ctx, l, lj, relay.StatePending, until, "circuit breaker open", 0, false)
			return
		}
		if until, ok := q.tokenBlocked(lj.Device.Token); ok {
			q.settle(ctx, l, lj, relay.StatePending, until, "device token throttled by the provider (429 TooManyRequests)", 0, false)
			return
		}
	}
	q.send(ctx, lctx, l, lj, toSend(lj), probe, j)
}

// toSend is what a leased job sends: its alert, or, once the alert was
// delivered and has expired (StateWithdrawDue), the alert's withdraw.
func toSend(lj store.Leased) *relay.Alert {
	if lj.Job.State == relay.StateWithdrawDue {
		return relay.ExpiryWithdraw(lj.Alert)
	}
	return lj.Alert
}

// done frees n of a lane's send slots.
func (q *Queue) done(l *lane, n int) {
	q.mu.Lock()
	l.inFlight -= n
	q.mu.Unlock()
	l.signal()
}

// send makes one attempt to send alert (the lease's, or its withdraw) and
// settles the lease with its outcome.
func (q *Queue) send(ctx, lctx context.Context, l *lane, lj store.Leased, alert *relay.Alert, probe bool, j relay.Job) {
	now := q.opts.Now()
	if !now.Before(alert.ExpiresAt) {
		q.breakerResult(l, probe, noAnswer, "")
		q.settle(ctx, l, lj, relay.StateExpired, time.Time{}, j.LastError, 0, false)
		return
	}
	if lctx.Err() != nil {
		// The lease is (all but) over before the send began: Lease took
		// most of its TTL to return (a cluster store electing its
		// leaders), or the job waited that long for a sender. Sending
		// now would fail at once, and count against the provider (20 in
		// a row open the lane's breaker) and the job's attempts. Hand it
		// back, due now, as a send cut by shutdown is.
		q.handBack(ctx, l, lj, probe, j.LastError)
		return
	}
	// A send ends before the alert expires and before the lease does
	// (lctx).
	sctx, cancel := lctx, context.CancelFunc(func() {})
	leaseLeft := time.Duration(0)
	if end, ok := lctx.Deadline(); ok {
		leaseLeft = end.Sub(now)
		if alert.ExpiresAt.Before(end) {
			sctx, cancel = context.WithDeadline(lctx, alert.ExpiresAt)
		}
	}
	start := time.Now()
	err := l.Notifier.Notify(sctx, lj.Device, alert)
	cancel()
	took := time.Since(start)
	l.pushed(took)
	if err != nil && (ctx.Err() != nil || errors.Is(err, delivery.ErrNotSent)) {
		// Shutdown cut this send, or its time ran out before the provider
		// got anything (in the work before the request: an answer check
		// on a store under load). Either way it was not an attempt and
		// says nothing about the provider: hand the job back, due now.
		q.handBack(context.WithoutCancel(ctx), l, lj, probe, j.LastError)
		return
	}
	withdrawing := j.State == relay.StateWithdrawDue
	if !withdrawing {
		lj.Job.Attempts++ // attempts count the alert's sends, not its withdraw's
	}
	a, reason := answerOf(err)
	if a == unavailable && lctx.Err() != nil && leaseLeft < q.opts.LeaseTTL/3 {
		// The lease's end cut a send that began with little of it left
		// (the job waited for a sender in an overloaded relay): no answer
		// in that time says nothing about the provider. A send that had
		// most of a lease and no answer does count (a hung provider).
		a = noAnswer
	}
	q.breakerResult(l, probe, a, reason)
	if err == nil {
		if !withdrawing && q.opts.WithdrawOnExpiry && relay.Withdrawable(alert) {
			q.settle(ctx, l, lj, relay.StateWithdrawDue, lj.Alert.ExpiresAt, "", took, false)
			return
		}
		q.settle(ctx, l, lj, relay.StateDelivered, time.Time{}, "", took, false)
		return
	}
	if errors.Is(err, relay.ErrExpired) {
		q.settle(ctx, l, lj, relay.StateExpired, time.Time{}, err.Error(), took, false)
		return
	}
	// The job's logger only for a failed send (With allocates).
	log := q.log.With(relay.LogKeyEventID, j.Event.ID, relay.LogKeyWorkspace, j.Event.Workspace,
		relay.LogKeyDevice, j.DeviceID, relay.LogKeyProvider, l.key)
	outcome, retryAfter := delivery.Classify(err)
	switch outcome {
	case delivery.DropToken:
		q.dropToken(ctx, l, lj, err, took, log)
	case delivery.Permanent:
		if withdrawing {
			log.Warn("expiry withdraw failed permanently; not sent", relay.LogKeyError, err)
		} else {
			log.Warn("delivery failed permanently; job moved to dead letters", relay.LogKeyError, err)
		}
		q.settle(ctx, l, lj, relay.StateFailed, time.Time{}, err.Error(), took, false)
	default: // Retry, ConfigError
		now := q.opts.Now()
		b := q.backoff.Load()
		retry := lj.Job.Attempts
		if withdrawing {
			retry = withdrawRetry(now.Sub(lj.Alert.ExpiresAt), b.Initial)
		}
		next := now.Add(b.Delay(retry, retryAfter))
		if until, open := q.breakerUntil(l); open && until.After(next) {
			next = until // wait for the breaker's probe
		}
		var de *delivery.Error
		if errors.As(err, &de) && de.Provider == "apns" && de.Status == 429 && de.Reason != "TooManyProviderTokenUpdates" {
			// APNs throttles this device token: its other jobs wait too.
			q.blockToken(lj.Device.Token, next)
		}
		q.settle(ctx, l, lj, relay.StatePending, next, err.Error(), took, false)
	}
}

// handBack returns a leased job whose send never reached the provider to
// the schedule, due now, keeping its last error: no attempt is spent and
// the lane's breaker hears no answer.
func (q *Queue) handBack(ctx context.Context, l *lane, lj store.Leased, probe bool, lastErr string) {
	q.breakerResult(l, probe, noAnswer, "")
	q.settle(ctx, l, lj, relay.StatePending, q.opts.Now(), lastErr, 0, false)
}

// withdrawRetry is the retry number of an expiry withdraw that failed
// since after it became due: the job keeps its alert's attempts, so a
// withdraw backs off by the time since the expiry instead (retry n comes
// about initial·2^(n-1) after the one before).
func withdrawRetry(since, initial time.Duration) int {
	if initial <= 0 {
		initial = time.Second
	}
	n := 1
	for d := initial; d <= since && n < 62; d *= 2 {
		n++
	}
	return n
}

// dropToken handles a dead token: the device is removed unless it
// re-registered with a new token meanwhile, in which case the job is due
// again at once, for the new token.
func (q *Queue) dropToken(ctx context.Context, l *lane, lj store.Leased, err error, took time.Duration, log hclog.Logger) {
	d := lj.Device
	removed, rerr := q.opts.Devices.RemoveDeviceToken(ctx, d.Workspace, d.User, d.ID, d.Token)
	switch {
	case rerr != nil:
		log.Error("remove dead device token", relay.LogKeyError, rerr)
	case removed:
		log.Info("device token removed", "reason", err.Error())
	default:
		cur, derr := q.opts.Devices.Device(ctx, d.Workspace, d.User, d.ID)
		if derr == nil && cur.Token != d.Token && relay.Lane(cur.App, cur.Platform) == l.key {
			log.Info("device re-registered with a new token; sending to it", "reason", err.Error())
			q.settle(ctx, l, lj, relay.StatePending, q.opts.Now(), err.Error(), took, false)
			return
		}
	}
	q.settle(ctx, l, lj, relay.StateTokenRemoved, time.Time{}, err.Error(), took, false)
}

// settle records a job's new state and ends its lease, on the lane's
// settle pool: the sender goes back to its pool while the store commits,
// and the lane's send slot is freed once the state is recorded. An open state
// due at or after the expiry of what the job sends (toSend) is recorded as
// expired instead. The
// withdraw of a job in StateWithdrawDue ends it delivered whatever its
// outcome (the alert was), or leaves it due again (a retry), keeping the
// alert's last error.
func (q *Queue) settle(ctx context.Context, l *lane, lj store.Leased, s relay.DeliveryState, next time.Time, lastErr string, took time.Duration, probe bool) {
	if probe {
		q.breakerResult(l, true, noAnswer, "")
	}
	j := lj.Job
	if s != relay.StateWithdrawDue && !s.Final() && lj.Alert != nil && !next.Before(toSend(lj).ExpiresAt) {
		s = relay.StateExpired
	}
	if j.State == relay.StateWithdrawDue {
		if s.Final() {
			s = relay.StateDelivered
		} else {
			s = relay.StateWithdrawDue
		}
		lastErr = j.LastError
	}
	j.State, j.LastError, j.UpdatedAt = s, lastErr, q.opts.Now()
	j.NextAt = time.Time{}
	if !s.Final() {
		j.NextAt = next
	}
	l.settles.run(settleReq{ctx, lj, j, next, took})
}

// settleReq is a settle handed to the lane's settle pool.
type settleReq struct {
	ctx  context.Context
	lj   store.Leased
	j    relay.Job
	next time.Time
	took time.Duration
}

// record settles lj with j and frees its lane's slot.
func (q *Queue) record(ctx context.Context, l *lane, lj store.Leased, j relay.Job, next time.Time, took time.Duration) {
	s := j.State
	defer q.done(l, 1)
	if err := q.opts.Schedule.Settle(ctx, lj, j); err != nil {
		lvl := hclog.Error
		if errors.Is(err, store.ErrLeaseLost) {
			lvl = hclog.Warn // another relay took the job after the lease ended
		}
		q.log.Log(lvl, "record delivery outcome", relay.LogKeyEventID, j.Event.ID, relay.LogKeyWorkspace, j.Event.Workspace,
			relay.LogKeyDevice, j.DeviceID, "state", s, relay.LogKeyError, err)
		return
	}
	if s == relay.StateWithdrawDue && lj.Job.State != relay.StateWithdrawDue {
		// Delivered; the job stays open for the withdraw. The outcome is
		// the delivery.
		j.State = relay.StateDelivered
		q.outcome(lj, j, took)
		return
	}
	if !s.Final() {
		if !next.After(q.opts.Now()) {
			l.signal()
		}
		return
	}
	if store.PriorityOf(lj.Alert) == relay.PriorityHigh {
		q.openHigh.Add(-1)
	} else {
		q.openNormal.Add(-1)
	}
	if lj.Job.State == relay.StateWithdrawDue {
		return // the outcome was reported when the alert was delivered
	}
	q.outcome(lj, j, took)
}

// outcome reports a job's outcome (Options.OnOutcome, OnFinal).
func (q *Queue) outcome(lj store.Leased, j relay.Job, took time.Duration) {
	if q.opts.OnOutcome != nil {
		q.opts.OnOutcome(j, took)
	}
	if q.opts.OnFinal != nil {
		q.opts.OnFinal(lj, j)
	}
}

// blockToken makes a device token's jobs wait until until.
func (q *Queue) blockToken(token string, until time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.tokens) > 10_000 {
		now := q.opts.Now()
		for t, u := range q.tokens {
			if !u.After(now) {
				delete(q.tokens, t)
			}
		}
	}
	if until.After(q.tokens[token]) {
		q.tokens[token] = until
	}
}

// tokenBlocked reports until when a device token's jobs wait.
func (q *Queue) tokenBlocked(token string) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	until, ok := q.tokens[token]
	if !ok {
		return time.Time{}, false
	}
	if !until.After(q.opts.Now()) {
		delete(q.tokens, token)
		return time.Time{}, false
	}
	return until, true
}

// lane is one notifier's sends: the count in flight and its breaker, both
// guarded by the queue's mutex.
type lane struct {
	Lane
	key  string
	wake chan struct{}

	inFlight int
	br       breaker
	// backlog: the lane's last lease filled its request, so more jobs
	// may be due in the schedule (Backlogged).
	backlog bool
	// offer sends jobs an accept leased for the lane (Offer); nil while
	// the lane does not run.
	offer func(jobs []store.Leased)

	settles *sendPool[settleReq] // the lane's settles (set by Run)

	// The sends since the pool last looked (pushSample): their time, how
	// many, and the shortest.
	pushMu             sync.Mutex
	pushSum, pushLeast time.Duration
	pushes             int
}

func (l *lane) pushed(d time.Duration) {
	l.pushMu.Lock()
	l.pushSum += d
	if l.pushes == 0 || d < l.pushLeast {
		l.pushLeast = d
	}
	l.pushes++
	l.pushMu.Unlock()
}

// pushSample returns the mean and shortest time of the sends since its
// last call (the pool's limiter).
func (l *lane) pushSample() (mean, least time.Duration, ok bool) {
	l.pushMu.Lock()
	defer l.pushMu.Unlock()
	if l.pushes == 0 {
		return 0, 0, false
	}
	mean, least = l.pushSum/time.Duration(l.pushes), l.pushLeast
	l.pushSum, l.pushLeast, l.pushes = 0, 0, 0
	return mean, least, true
}

func (l *lane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Stats describes a lane: the schedule's view (shared by every relay) and
// this relay's sends and breaker.
type Stats struct {
	store.LaneStats
	// Depth is the lane's open jobs (High + Normal).
	Depth int `json:"depth"`
	// OldestAge is how long the lane's longest-open job has waited since
	// its event was accepted: due, leased, retrying or parked behind an
	// open breaker alike, so it keeps growing through an outage.
	OldestAge time.Duration `json:"-"`
	Oldest    string        `json:"oldest_age"`
	// OldestDueAge is how long the oldest due job has been due (the
	// backlog the lane's sends have not reached yet).
	OldestDueAge time.Duration `json:"-"`
	DueAge       string        `json:"oldest_due_age"`
	// InFlight is this relay's sends in flight on the lane.
	InFlight int `json:"in_flight"`
	// Breaker is closed, open or half-open (this relay's).
	Breaker string `json:"breaker"`
	// BreakerUntil is when an open breaker lets a probe through.
	BreakerUntil time.Time `json:"breaker_until,omitzero"`
	// BreakerReason is the error that opened it.
	BreakerReason string `json:"breaker_reason,omitempty"`
	// Configured is false for a lane that has jobs but no provider here.
	Configured bool `json:"configured"`
}

// Stats returns every configured lane and every lane with open jobs.
func (q *Queue) Stats(ctx context.Context) ([]Stats, error) {
	now := q.opts.Now()
	ls, err := q.opts.Schedule.LaneStats(ctx, now)
	if err != nil {
		return nil, err
	}
	byLane := map[string]*Stats{}
	for _, s := range ls {
		byLane[s.Lane] = &Stats{LaneStats: s}
	}
	q.mu.Lock()
	for k, l := range q.lanes {
		s := byLane[k]
		if s == nil {
			s = &Stats{LaneStats: store.LaneStats{Lane: k}}
			byLane[k] = s
		}
		s.Configured = true
		s.InFlight = l.inFlight
		s.Breaker, s.BreakerReason = l.br.state.String(), l.br.reason
		if l.br.state == breakerOpen {
			s.BreakerUntil = l.br.until
		}
	}
	q.mu.Unlock()
	out := make([]Stats, 0, len(byLane))
	for _, s := range byLane {
		if !s.OldestDue.IsZero() {
			s.OldestDueAge = max0(now.Sub(s.OldestDue))
		}
		if !s.OldestOpen.IsZero() {
			s.OldestAge = max0(now.Sub(s.OldestOpen))
		}
		s.Oldest, s.DueAge = s.OldestAge.String(), s.OldestDueAge.String()
		s.Depth = s.High + s.Normal
		if s.Breaker == "" {
			s.Breaker = "none"
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Lane, b.Lane) })
	return out, nil
}

// OpenBreakers returns this relay's lanes whose circuit breaker is open or
// half-open, with the reason it opened.
func (q *Queue) OpenBreakers() map[string]string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out map[string]string
	for k, l := range q.lanes {
		if l.br.state != breakerClosed {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = l.br.reason
		}
	}
	return out
}
