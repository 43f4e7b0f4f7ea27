package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
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
	DefaultConcurrency        = 64
	DefaultDrainTimeout       = 10 * time.Second
	DefaultMaxSendWindow      = 30 * time.Second
	DefaultMaxInMemory        = 10_000
	DefaultMaxOpenJobs        = 1_000_000
	DefaultBreakerThreshold   = 3
	DefaultOutageThreshold    = 20
	DefaultBreakerCooldown    = 5 * time.Second
	DefaultBreakerMaxCooldown = 5 * time.Minute
)

// firstPage is the size of the first page read after a start, small so that
// the first send does not wait for a full window to load.
const firstPage = 256

// Store is what the queue needs from the store. When it also implements
// store.DueIndex the queue keeps only a window of open jobs in memory and
// pages the rest in due order (see Recover); when it implements
// store.DeadLetters, permanent failures become dead letters.
type Store interface {
	UpdateJobs(ctx context.Context, jobs []relay.Job) error
	RemoveDeviceToken(ctx context.Context, workspace, user, id, token string) (bool, error)
	Device(ctx context.Context, workspace, user, id string) (relay.Device, error)
}

// Item is one open job with what is needed to send it.
type Item struct {
	Job    relay.Job
	Alert  *relay.Alert // shared by all jobs of an event; read-only
	Device relay.Device

	lane  *lane
	index int // in the lane's heap; -1 when not in it
}

func (it *Item) cursor() store.DueCursor { return store.CursorOf(&it.Job) }

// Lane is a notifier and how many sends it may have in flight. Each app and
// platform has its own lane, so a slow provider does not hold up another.
type Lane struct {
	Notifier    delivery.Notifier
	Concurrency int
}

// LaneKey names the lane of an app and platform.
func LaneKey(app string, p relay.Platform) string { return app + "/" + string(p) }

// Options configure a Queue. Zero fields take the Default* values.
type Options struct {
	Store   Store
	Lanes   map[string]Lane // by LaneKey
	Backoff Backoff
	Logger  hclog.Logger
	// DrainTimeout bounds how long in-flight sends may continue after Run's
	// context is done.
	DrainTimeout time.Duration
	// MaxInMemory bounds the jobs waiting in memory (not counting sends in
	// flight) when the store keeps a due index; the rest wait on disk and
	// are paged in, in due order.
	MaxInMemory int
	// MaxOpenJobs is the backlog at which Admit refuses new events.
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
	// OnBreaker, when set, is called when a lane's breaker opens (open
	// true, with the provider's reason) or closes.
	OnBreaker func(lane string, open bool, reason string)
}

// Queue schedules and sends delivery jobs. Add may be called before Run (the
// jobs wait) and concurrently with it.
type Queue struct {
	opts  Options
	log   hclog.Logger
	lanes map[string]*lane
	due   store.DueIndex    // nil: every open job stays in memory
	dead  store.DeadLetters // nil: failed jobs are only marked failed
	open  atomic.Int64      // open jobs, in memory or on disk
	pager chan struct{}     // wakes the pager

	mu     sync.Mutex
	mem    map[relay.JobKey]*Item // waiting in a heap or in flight
	queued int                    // items in heaps
	// spilled: open jobs exist on disk that are not in memory; all of
	// them are after mark in due order.
	spilled bool
	mark    store.DueCursor
	markGen int // bumped when shrink lowers mark
	// paging: a page is being read; finished collects jobs that reached a
	// final state meanwhile, so the page does not bring them back.
	paging   bool
	finished map[relay.JobKey]struct{}
	// tokens: device tokens APNs answered 429 TooManyRequests for, and
	// until when their jobs wait.
	tokens map[string]time.Time
}

// New returns a queue. It starts nothing.
func New(opts Options) *Queue {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.MaxInMemory <= 0 {
		opts.MaxInMemory = DefaultMaxInMemory
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
	q := &Queue{opts: opts, log: opts.Logger, lanes: make(map[string]*lane),
		pager: make(chan struct{}, 1), mem: make(map[relay.JobKey]*Item), tokens: map[string]time.Time{}}
	q.due, _ = opts.Store.(store.DueIndex)
	q.dead, _ = opts.Store.(store.DeadLetters)
	for k, l := range opts.Lanes {
		if l.Concurrency <= 0 {
			l.Concurrency = DefaultConcurrency
		}
		q.lanes[k] = &lane{key: k, Lane: l, wake: make(chan struct{}, 1)}
	}
	return q
}

// ErrNoLane is returned by Add for a job whose app and platform have no
// configured provider.
var ErrNoLane = errors.New("no provider configured for app and platform")

// ErrFull is returned by Admit when the backlog reached MaxOpenJobs.
var ErrFull = errors.New("queue full")

// Recover prepares a start on a store that keeps a due index: it counts
// the open jobs left by the previous run and lets Run page them in, in due
// order, instead of loading them all. It returns the number of open jobs.
// Without a due index it returns an error wrapping errors.ErrUnsupported,
// and the caller adds the open jobs itself.
func (q *Queue) Recover(ctx context.Context) (int, error) {
	if q.due == nil {
		return 0, fmt.Errorf("recover open jobs: store has no due index: %w", errors.ErrUnsupported)
	}
	n, err := q.due.OpenJobCount(ctx)
	if err != nil {
		return 0, fmt.Errorf("recover open jobs: %w", err)
	}
	q.mu.Lock()
	q.open.Store(int64(n))
	if n > 0 {
		q.spilled, q.mark = true, store.DueCursor{}
	}
	q.mu.Unlock()
	q.wakePager()
	return n, nil
}

// Admit reports whether n more events may be accepted: it fails with an
// error wrapping ErrFull once MaxOpenJobs jobs are open.
func (q *Queue) Admit(n int) error {
	if open := q.open.Load(); open >= int64(q.opts.MaxOpenJobs) {
		return fmt.Errorf("%w: %d open jobs ≥ limit %d; providers unreachable?", ErrFull, open, q.opts.MaxOpenJobs)
	}
	return nil
}

// Add schedules items: new open jobs, already durable in the store. An item
// whose job is already queued is ignored.
func (q *Queue) Add(items ...*Item) error {
	var errs []error
	q.mu.Lock()
	for _, it := range items {
		l := q.lanes[LaneKey(it.Device.App, it.Device.Platform)]
		if l == nil {
			errs = append(errs, fmt.Errorf("add job %s/%s: %w: %s/%s", it.Job.Event, it.Job.DeviceID, ErrNoLane, it.Device.App, it.Device.Platform))
			continue
		}
		if _, ok := q.mem[it.Job.Key()]; ok {
			continue
		}
		q.open.Add(1)
		it.lane = l
		if q.keepLocked(it) {
			q.pushLocked(it)
		}
	}
	q.shrinkLocked()
	q.mu.Unlock()
	return errors.Join(errs...)
}

// Stats describes a lane's backlog in memory.
type Stats struct {
	Lane      string        `json:"lane"`
	Depth     int           `json:"depth"`
	InFlight  int           `json:"in_flight"`
	Due       int           `json:"due"`
	OldestAge time.Duration `json:"-"`
	Oldest    string        `json:"oldest_age"`
	// Breaker is closed, open or half-open.
	Breaker string `json:"breaker"`
	// BreakerUntil is when an open breaker lets a probe through.
	BreakerUntil time.Time `json:"breaker_until,omitzero"`
	// BreakerReason is the configuration error that opened it.
	BreakerReason string `json:"breaker_reason,omitempty"`
}

// Stats returns each lane's depth in memory (waiting jobs, in flight
// included), the age of its oldest due job and its breaker. Jobs paged out
// to disk are counted by Open, not here.
func (q *Queue) Stats() []Stats {
	now := q.opts.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Stats, 0, len(q.lanes))
	for _, l := range q.lanes {
		s := Stats{Lane: l.key, Depth: len(l.heap) + l.inFlight, InFlight: l.inFlight,
			Breaker: l.br.state.String(), BreakerReason: l.br.reason}
		if l.br.state == breakerOpen {
			s.BreakerUntil = l.br.until
		}
		for _, it := range l.heap {
			if at := store.DueAt(&it.Job); !at.After(now) {
				s.Due++
				s.OldestAge = max(s.OldestAge, now.Sub(at))
			}
		}
		s.Oldest = s.OldestAge.String()
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Stats) int {
		if a.Lane < b.Lane {
			return -1
		}
		if a.Lane > b.Lane {
			return 1
		}
		return 0
	})
	return out
}

// Open returns the number of open jobs, in memory or on disk.
func (q *Queue) Open() int { return int(q.open.Load()) }

// Len returns the number of open jobs (the same as Open).
func (q *Queue) Len() int { return q.Open() }

// InMemory returns the number of jobs held in memory (waiting or in
// flight).
func (q *Queue) InMemory() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.mem)
}

// Run sends due jobs until ctx is done, then lets in-flight sends finish
// within DrainTimeout (jobs not finished stay open in the store and are sent
// again after a restart). It returns when every goroutine it started has
// exited.
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

	var wg sync.WaitGroup
	if q.due != nil {
		wg.Go(func() { q.runPager(ctx) })
	}
	for _, l := range q.lanes {
		work := make(chan task)
		wg.Go(func() { q.schedule(ctx, l, work) })
		for range l.Concurrency {
			wg.Go(func() {
				for {
					select {
					case <-ctx.Done():
						return
					case t := <-work:
						q.process(sendCtx, t)
					}
				}
			})
		}
	}
	wg.Wait()
	cancelSends()
	return nil
}

// task is one item handed to a worker: send it, or (parkUntil set) move it
// to parkUntil without sending, as its lane's breaker is open.
type task struct {
	it        *Item
	parkUntil time.Time
	reason    string
	probe     bool
}

// process runs one task.
func (q *Queue) process(ctx context.Context, t task) {
	if !t.parkUntil.IsZero() {
		q.park(ctx, t.it, t.parkUntil, t.reason)
		return
	}
	if !t.probe {
		// The breaker may have opened since the scheduler handed this out.
		if until, open := q.breakerUntil(t.it.lane); open {
			q.park(ctx, t.it, until, "circuit breaker open")
			return
		}
		if until, ok := q.tokenBlocked(t.it.Device.Token); ok {
			q.park(ctx, t.it, until, "device token throttled by the provider (429 TooManyRequests)")
			return
		}
	}
	q.send(ctx, t)
}

// send makes one attempt and records its outcome.
func (q *Queue) send(ctx context.Context, t task) {
	it := t.it
	l := it.lane
	j := it.Job
	now := q.opts.Now()
	log := q.log.With(relay.LogKeyEventID, j.Event.ID, relay.LogKeyWorkspace, j.Event.Workspace,
		relay.LogKeyDevice, j.DeviceID, relay.LogKeyProvider, l.key)
	if !now.Before(it.Alert.ExpiresAt) {
		q.breakerResult(l, t.probe, noAnswer, "")
		q.finish(ctx, it, relay.StateExpired, j.LastError, 0)
		return
	}
	// The send's deadline is never after the alert's expiry.
	sctx, cancel := context.WithDeadline(ctx, it.Alert.ExpiresAt)
	start := time.Now()
	err := l.Notifier.Notify(sctx, it.Device, it.Alert)
	cancel()
	took := time.Since(start)
	if err != nil && ctx.Err() != nil {
		// Shutdown cut this send: leave the job open for the next start.
		q.breakerResult(l, t.probe, noAnswer, "")
		q.forget(it)
		return
	}
	it.Job.Attempts++
	a, reason := answerOf(err)
	q.breakerResult(l, t.probe, a, reason)
	if err == nil {
		q.finish(ctx, it, relay.StateDelivered, "", took)
		return
	}
	if errors.Is(err, relay.ErrExpired) {
		q.finish(ctx, it, relay.StateExpired, err.Error(), took)
		return
	}
	outcome, retryAfter := delivery.Classify(err)
	switch outcome {
	case delivery.DropToken:
		q.dropToken(ctx, it, err, took, log)
	case delivery.Permanent:
		log.Warn("delivery failed permanently; job moved to dead letters", relay.LogKeyError, err)
		q.fail(ctx, it, err.Error(), took)
	default: // Retry, ConfigError
		now := q.opts.Now()
		next := now.Add(q.opts.Backoff.Delay(it.Job.Attempts, retryAfter))
		if until, open := q.breakerUntil(l); open && until.After(next) {
			next = until // wait for the breaker's probe
		}
		var de *delivery.Error
		if errors.As(err, &de) && de.Provider == "apns" && de.Status == 429 && de.Reason != "TooManyProviderTokenUpdates" {
			// APNs throttles this device token: its other jobs wait too.
			q.blockToken(it.Device.Token, next)
		}
		q.retry(ctx, it, next, err.Error(), took)
	}
}

// dropToken handles a dead token: the device is removed unless it
// re-registered with a new token meanwhile, in which case the job is sent
// again, at once, to the new token.
func (q *Queue) dropToken(ctx context.Context, it *Item, err error, took time.Duration, log hclog.Logger) {
	d := it.Device
	removed, rerr := q.opts.Store.RemoveDeviceToken(ctx, d.Workspace, d.User, d.ID, d.Token)
	switch {
	case rerr != nil:
		log.Error("remove dead device token", relay.LogKeyError, rerr)
	case removed:
		log.Info("device token removed", "reason", err.Error())
	default:
		cur, derr := q.opts.Store.Device(ctx, d.Workspace, d.User, d.ID)
		if derr == nil && cur.Token != d.Token && cur.App == d.App && cur.Platform == d.Platform {
			log.Info("device re-registered with a new token; sending to it", "reason", err.Error())
			it.Device = cur
			q.retry(ctx, it, q.opts.Now(), err.Error(), took)
			return
		}
	}
	q.finish(ctx, it, relay.StateTokenRemoved, err.Error(), took)
}

// retry records that the job is due again at next, or expired when next is
// not before its expiry.
func (q *Queue) retry(ctx context.Context, it *Item, next time.Time, lastErr string, took time.Duration) {
	if !next.Before(it.Alert.ExpiresAt) {
		q.finish(ctx, it, relay.StateExpired, lastErr, took)
		return
	}
	it.Job.State = relay.StatePending
	it.Job.NextAt = next
	it.Job.LastError = lastErr
	it.Job.UpdatedAt = q.opts.Now()
	if err := q.opts.Store.UpdateJobs(ctx, []relay.Job{it.Job}); err != nil {
		q.log.Error("record retry", relay.LogKeyEventID, it.Job.Event.ID, relay.LogKeyWorkspace, it.Job.Event.Workspace,
			relay.LogKeyDevice, it.Job.DeviceID, relay.LogKeyError, err)
	}
	q.requeue(it)
}

// park moves a job to until without sending it and without counting an
// attempt (its lane's breaker is open, or its device token is throttled).
func (q *Queue) park(ctx context.Context, it *Item, until time.Time, reason string) {
	q.retry(ctx, it, until, reason, 0)
}

// fail records a permanent failure, as a dead letter when the store keeps
// them.
func (q *Queue) fail(ctx context.Context, it *Item, reason string, took time.Duration) {
	if q.dead == nil {
		q.finish(ctx, it, relay.StateFailed, reason, took)
		return
	}
	it.Job.State = relay.StateFailed
	it.Job.LastError = reason
	it.Job.NextAt = time.Time{}
	it.Job.UpdatedAt = q.opts.Now()
	if _, err := q.dead.FailJob(ctx, it.Job, reason); err != nil {
		q.log.Error("record dead letter", relay.LogKeyEventID, it.Job.Event.ID,
			relay.LogKeyWorkspace, it.Job.Event.Workspace, relay.LogKeyDevice, it.Job.DeviceID, relay.LogKeyError, err)
	}
	q.closed(it, took)
}

// finish records a final state and forgets the job.
func (q *Queue) finish(ctx context.Context, it *Item, s relay.DeliveryState, lastErr string, took time.Duration) {
	it.Job.State = s
	it.Job.LastError = lastErr
	it.Job.NextAt = time.Time{}
	it.Job.UpdatedAt = q.opts.Now()
	if err := q.opts.Store.UpdateJobs(ctx, []relay.Job{it.Job}); err != nil {
		q.log.Error("record delivery outcome", relay.LogKeyEventID, it.Job.Event.ID,
			relay.LogKeyWorkspace, it.Job.Event.Workspace, relay.LogKeyDevice, it.Job.DeviceID, relay.LogKeyError, err)
	}
	q.closed(it, took)
}

// closed forgets a job that reached a final state.
func (q *Queue) closed(it *Item, took time.Duration) {
	q.open.Add(-1)
	q.mu.Lock()
	if q.finished != nil {
		q.finished[it.Job.Key()] = struct{}{}
	}
	q.mu.Unlock()
	q.forget(it)
	if q.opts.OnOutcome != nil {
		q.opts.OnOutcome(it.Job, took)
	}
}

// forget drops an in-flight item from memory.
func (q *Queue) forget(it *Item) {
	q.mu.Lock()
	it.lane.inFlight--
	delete(q.mem, it.Job.Key())
	low := q.lowLocked()
	q.mu.Unlock()
	it.lane.signal()
	if low {
		q.wakePager()
	}
}

// requeue puts an in-flight item back to wait for its new due time, in
// memory or (outside the window) on disk only.
func (q *Queue) requeue(it *Item) {
	q.mu.Lock()
	it.lane.inFlight--
	if q.keepLocked(it) {
		heap.Push(&it.lane.heap, it)
		q.queued++
		q.shrinkLocked()
	} else {
		delete(q.mem, it.Job.Key())
	}
	low := q.lowLocked()
	q.mu.Unlock()
	it.lane.signal()
	if low {
		q.wakePager()
	}
}

// keepLocked reports whether an item belongs in memory: everything does
// unless jobs were paged out and it comes after them. While a page is read
// everything is kept, so nothing falls between the page and the window.
func (q *Queue) keepLocked(it *Item) bool {
	return !q.spilled || q.paging || it.cursor().Compare(q.mark) <= 0
}

// pushLocked adds a new item to its lane's heap.
func (q *Queue) pushLocked(it *Item) {
	q.mem[it.Job.Key()] = it
	heap.Push(&it.lane.heap, it)
	q.queued++
	it.lane.signal()
}

// lowLocked reports whether the pager should read more.
func (q *Queue) lowLocked() bool {
	return q.spilled && !q.paging && q.queued < q.opts.MaxInMemory/2
}

// shrinkLocked pages out the latest-due waiting items when more than
// MaxInMemory wait, keeping the earliest three quarters.
func (q *Queue) shrinkLocked() {
	if q.due == nil || q.queued <= q.opts.MaxInMemory {
		return
	}
	all := make([]*Item, 0, q.queued)
	for _, l := range q.lanes {
		all = append(all, l.heap...)
	}
	slices.SortFunc(all, func(a, b *Item) int { return a.cursor().Compare(b.cursor()) })
	keep := q.opts.MaxInMemory * 3 / 4
	last := all[keep-1].cursor()
	if !q.spilled || last.Compare(q.mark) < 0 {
		q.mark = last
		q.markGen++
	}
	q.spilled = true
	for _, it := range all[keep:] {
		delete(q.mem, it.Job.Key())
		it.index = -1
	}
	for _, l := range q.lanes {
		l.heap = slices.DeleteFunc(l.heap, func(it *Item) bool { return it.index < 0 })
		for i, it := range l.heap {
			it.index = i
		}
		heap.Init(&l.heap)
	}
	q.queued = keep
}

func (q *Queue) wakePager() {
	select {
	case q.pager <- struct{}{}:
	default:
	}
}

// runPager reads pages of open jobs from the store whenever the window
// runs low, until ctx is done.
func (q *Queue) runPager(ctx context.Context) {
	limit := max(min(firstPage, q.opts.MaxInMemory/2), 1)
	for {
		q.mu.Lock()
		low := q.lowLocked()
		q.mu.Unlock()
		if low {
			if err := q.pageIn(ctx, limit); err != nil {
				if ctx.Err() != nil {
					return
				}
				q.log.Error("page in open jobs", relay.LogKeyError, err)
				// Retry after a pause rather than spinning on a broken store.
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			limit = max(q.opts.MaxInMemory/2, 1)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-q.pager:
		}
	}
}

// pageIn reads up to limit open jobs after the window's mark and adds those
// not already in memory.
func (q *Queue) pageIn(ctx context.Context, limit int) error {
	q.mu.Lock()
	from, gen := q.mark, q.markGen
	q.paging, q.finished = true, map[relay.JobKey]struct{}{}
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.paging, q.finished = false, nil
		q.shrinkLocked()
		q.mu.Unlock()
	}()

	page, next, err := q.due.DueJobs(ctx, from, limit)
	if err != nil {
		return err
	}
	items := make([]*Item, 0, len(page))
	devices := map[[3]string]relay.Device{}
	for _, dj := range page {
		j := dj.Job
		k := [3]string{j.Event.Workspace, dj.User, j.DeviceID}
		d, ok := devices[k]
		if !ok {
			d, err = q.opts.Store.Device(ctx, j.Event.Workspace, dj.User, j.DeviceID)
			if err != nil && !errors.Is(err, relay.ErrNotFound) {
				return fmt.Errorf("load device of job %s/%s: %w", j.Event, j.DeviceID, err)
			}
			devices[k] = d
		}
		items = append(items, &Item{Job: j, Alert: dj.Alert, Device: d, index: -1})
	}

	var orphans []*Item
	q.mu.Lock()
	for _, it := range items {
		key := it.Job.Key()
		if _, ok := q.mem[key]; ok {
			continue
		}
		if _, ok := q.finished[key]; ok {
			continue
		}
		l := q.lanes[LaneKey(it.Device.App, it.Device.Platform)]
		if l == nil || it.Alert == nil || it.Device.ID == "" {
			orphans = append(orphans, it)
			continue
		}
		it.lane = l
		q.pushLocked(it)
	}
	switch {
	case len(page) < limit:
		q.spilled = false
	case q.markGen == gen:
		q.mark = next
	}
	q.mu.Unlock()

	// Jobs that can no longer be sent fail, as recovery always did.
	for _, it := range orphans {
		reason := "device no longer registered"
		switch {
		case it.Alert == nil:
			reason = "event has no stored alert"
		case it.Device.ID != "":
			reason = fmt.Sprintf("%s: %s/%s", ErrNoLane, it.Device.App, it.Device.Platform)
		}
		it.Job.State, it.Job.LastError, it.Job.NextAt, it.Job.UpdatedAt = relay.StateFailed, reason, time.Time{}, q.opts.Now()
		if err := q.opts.Store.UpdateJobs(ctx, []relay.Job{it.Job}); err != nil {
			return fmt.Errorf("fail job %s/%s: %w", it.Job.Event, it.Job.DeviceID, err)
		}
		q.open.Add(-1)
		q.log.Warn("open job cannot be sent; marked failed", relay.LogKeyEventID, it.Job.Event.ID,
			relay.LogKeyWorkspace, it.Job.Event.Workspace, relay.LogKeyDevice, it.Job.DeviceID, "reason", reason)
		if q.opts.OnOutcome != nil {
			q.opts.OnOutcome(it.Job, 0)
		}
	}
	return nil
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

// lane is one notifier's schedule: a min-heap by due time, guarded by the
// queue's mutex.
type lane struct {
	Lane
	key  string
	wake chan struct{}

	heap     itemHeap
	inFlight int
	br       breaker
}

func (l *lane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// schedule hands due items to the lane's workers and sleeps until the next
// due time or a wake-up. While the lane's breaker is open, due items are
// handed out to be parked until it half-opens; then one item goes out as
// the probe and the rest wait for its result.
func (q *Queue) schedule(ctx context.Context, l *lane, work chan<- task) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := q.opts.Now()
		q.mu.Lock()
		var t task
		wait := time.Duration(-1)
		if len(l.heap) > 0 {
			if d := store.DueAt(&l.heap[0].Job).Sub(now); d > 0 {
				wait = d
			} else {
				switch until, probe, hold := l.br.admit(now); {
				case hold:
					wait = -1 // a probe is out; its result wakes us
				default:
					t = task{it: heap.Pop(&l.heap).(*Item), parkUntil: until, probe: probe}
					if !until.IsZero() {
						t.reason = "circuit breaker open: " + l.br.reason
					}
					q.queued--
					l.inFlight++
				}
			}
		}
		low := q.lowLocked()
		q.mu.Unlock()
		if low {
			q.wakePager()
		}
		if t.it != nil {
			select {
			case work <- t:
				continue
			case <-ctx.Done():
				q.mu.Lock()
				l.inFlight--
				delete(q.mem, t.it.Job.Key())
				q.mu.Unlock()
				return
			}
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-tc:
		}
		timer.Stop()
	}
}

// itemHeap orders items by due time, then by key (the due index's order).
type itemHeap []*Item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	return h[i].cursor().Compare(h[j].cursor()) < 0
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *itemHeap) Push(x any) {
	it := x.(*Item)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	it.index = -1
	*h = old[:n-1]
	return it
}
