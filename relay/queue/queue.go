package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/delivery"
)

// Defaults for Options.
const (
	DefaultConcurrency   = 64
	DefaultDrainTimeout  = 10 * time.Second
	DefaultMaxSendWindow = 30 * time.Second
)

// Store is what the queue needs from the store.
type Store interface {
	UpdateJobs(ctx context.Context, jobs []relay.Job) error
	RemoveDeviceToken(ctx context.Context, workspace, user, id, token string) (bool, error)
}

// Item is one open job with what is needed to send it.
type Item struct {
	Job    relay.Job
	Alert  *relay.Alert // shared by all jobs of an event; read-only
	Device relay.Device

	index int // in the lane's heap
}

// Lane is a notifier and how many sends it may have in flight. Each app and
// platform has its own lane, so a slow provider does not hold up another.
type Lane struct {
	Notifier    delivery.Notifier
	Concurrency int
}

// LaneKey names the lane of an app and platform.
func LaneKey(app string, p relay.Platform) string { return app + "/" + string(p) }

// Options configure a Queue.
type Options struct {
	Store   Store
	Lanes   map[string]Lane // by LaneKey
	Backoff Backoff
	Logger  hclog.Logger
	// DrainTimeout bounds how long in-flight sends may continue after Run's
	// context is done.
	DrainTimeout time.Duration
	// Now returns the current time; nil uses time.Now.
	Now func() time.Time
	// OnOutcome, when set, is called after each job reaches a new state.
	OnOutcome func(j relay.Job, sendDuration time.Duration)
}

// Queue schedules and sends delivery jobs. Add may be called before Run (the
// jobs wait) and concurrently with it.
type Queue struct {
	opts  Options
	log   hclog.Logger
	lanes map[string]*lane
}

// New returns a queue. It starts nothing.
func New(opts Options) *Queue {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	q := &Queue{opts: opts, log: opts.Logger, lanes: make(map[string]*lane)}
	for k, l := range opts.Lanes {
		if l.Concurrency <= 0 {
			l.Concurrency = DefaultConcurrency
		}
		q.lanes[k] = &lane{key: k, Lane: l, wake: make(chan struct{}, 1), keys: make(map[relay.JobKey]*Item)}
	}
	return q
}

// ErrNoLane is returned by Add for a job whose app and platform have no
// configured provider.
var ErrNoLane = errors.New("no provider configured for app and platform")

// Add schedules items. An item whose job is already queued is ignored.
func (q *Queue) Add(items ...*Item) error {
	var errs []error
	for _, it := range items {
		l := q.lanes[LaneKey(it.Device.App, it.Device.Platform)]
		if l == nil {
			errs = append(errs, fmt.Errorf("add job %s/%s: %w: %s/%s", it.Job.Event, it.Job.DeviceID, ErrNoLane, it.Device.App, it.Device.Platform))
			continue
		}
		l.push(it)
	}
	return errors.Join(errs...)
}

// Stats describes a lane's backlog.
type Stats struct {
	Lane      string        `json:"lane"`
	Depth     int           `json:"depth"`
	InFlight  int           `json:"in_flight"`
	Due       int           `json:"due"`
	OldestAge time.Duration `json:"-"`
	Oldest    string        `json:"oldest_age"`
}

// Stats returns each lane's depth (queued jobs, in flight included) and the
// age of its oldest due job.
func (q *Queue) Stats() []Stats {
	now := q.opts.Now()
	out := make([]Stats, 0, len(q.lanes))
	for _, l := range q.lanes {
		out = append(out, l.stats(now))
	}
	return out
}

// Len returns the number of queued jobs over all lanes.
func (q *Queue) Len() int {
	n := 0
	for _, l := range q.lanes {
		l.mu.Lock()
		n += len(l.keys)
		l.mu.Unlock()
	}
	return n
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
	for _, l := range q.lanes {
		work := make(chan *Item)
		wg.Go(func() { l.schedule(ctx, q.opts.Now, work) })
		for range l.Concurrency {
			wg.Go(func() {
				for {
					select {
					case <-ctx.Done():
						return
					case it := <-work:
						q.send(sendCtx, l, it)
					}
				}
			})
		}
	}
	wg.Wait()
	cancelSends()
	return nil
}

// send makes one attempt and records its outcome.
func (q *Queue) send(ctx context.Context, l *lane, it *Item) {
	j := it.Job
	now := q.opts.Now()
	log := q.log.With(relay.LogKeyEventID, j.Event.ID, relay.LogKeyWorkspace, j.Event.Workspace,
		relay.LogKeyDevice, j.DeviceID, relay.LogKeyProvider, l.key)
	if !now.Before(it.Alert.ExpiresAt) {
		q.finish(ctx, l, it, relay.StateExpired, j.LastError, 0)
		return
	}
	sctx, cancel := context.WithDeadline(ctx, it.Alert.ExpiresAt)
	start := time.Now()
	err := l.Notifier.Notify(sctx, it.Device, it.Alert)
	cancel()
	took := time.Since(start)
	if err != nil && ctx.Err() != nil {
		// Shutdown cut this send: leave the job open for the next start.
		l.done(it)
		return
	}
	it.Job.Attempts++
	if err == nil {
		q.finish(ctx, l, it, relay.StateDelivered, "", took)
		return
	}
	if errors.Is(err, relay.ErrExpired) {
		q.finish(ctx, l, it, relay.StateExpired, err.Error(), took)
		return
	}
	outcome, retryAfter := delivery.Classify(err)
	switch outcome {
	case delivery.DropToken:
		removed, rerr := q.opts.Store.RemoveDeviceToken(ctx, it.Device.Workspace, it.Device.User, it.Device.ID, it.Device.Token)
		if rerr != nil {
			log.Error("remove dead device token", relay.LogKeyError, rerr)
		} else if removed {
			log.Info("device token removed", "reason", err.Error())
		}
		q.finish(ctx, l, it, relay.StateTokenRemoved, err.Error(), took)
	case delivery.Permanent:
		log.Warn("delivery failed permanently", relay.LogKeyError, err)
		q.finish(ctx, l, it, relay.StateFailed, err.Error(), took)
	default: // Retry, ConfigError
		if outcome == delivery.ConfigError {
			log.Error("provider configuration error", relay.LogKeyError, err)
		}
		next := q.opts.Now().Add(q.opts.Backoff.Delay(it.Job.Attempts, retryAfter))
		if !next.Before(it.Alert.ExpiresAt) {
			q.finish(ctx, l, it, relay.StateExpired, err.Error(), took)
			return
		}
		log.Debug("delivery will be retried", relay.LogKeyAttempt, it.Job.Attempts, "at", next, relay.LogKeyError, err)
		it.Job.State = relay.StatePending
		it.Job.NextAt = next
		it.Job.LastError = err.Error()
		it.Job.UpdatedAt = q.opts.Now()
		if err := q.opts.Store.UpdateJobs(ctx, []relay.Job{it.Job}); err != nil {
			log.Error("record retry", relay.LogKeyError, err)
		}
		l.requeue(it)
	}
}

// finish records a final state and forgets the job.
func (q *Queue) finish(ctx context.Context, l *lane, it *Item, s relay.DeliveryState, lastErr string, took time.Duration) {
	it.Job.State = s
	it.Job.LastError = lastErr
	it.Job.NextAt = time.Time{}
	it.Job.UpdatedAt = q.opts.Now()
	if err := q.opts.Store.UpdateJobs(ctx, []relay.Job{it.Job}); err != nil {
		q.log.Error("record delivery outcome", relay.LogKeyEventID, it.Job.Event.ID,
			relay.LogKeyWorkspace, it.Job.Event.Workspace, relay.LogKeyDevice, it.Job.DeviceID, relay.LogKeyError, err)
	}
	l.done(it)
	if q.opts.OnOutcome != nil {
		q.opts.OnOutcome(it.Job, took)
	}
}

// lane is one notifier's schedule: a min-heap by due time.
type lane struct {
	Lane
	key  string
	wake chan struct{}

	mu       sync.Mutex
	heap     itemHeap
	keys     map[relay.JobKey]*Item // queued or in flight
	inFlight int
}

func (l *lane) push(it *Item) {
	l.mu.Lock()
	k := it.Job.Key()
	if _, ok := l.keys[k]; ok {
		l.mu.Unlock()
		return
	}
	l.keys[k] = it
	heap.Push(&l.heap, it)
	l.mu.Unlock()
	l.signal()
}

func (l *lane) requeue(it *Item) {
	l.mu.Lock()
	l.inFlight--
	heap.Push(&l.heap, it)
	l.mu.Unlock()
	l.signal()
}

func (l *lane) done(it *Item) {
	l.mu.Lock()
	l.inFlight--
	delete(l.keys, it.Job.Key())
	l.mu.Unlock()
}

func (l *lane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// schedule hands due items to the lane's workers and sleeps until the next
// due time or a wake-up.
func (l *lane) schedule(ctx context.Context, now func() time.Time, work chan<- *Item) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		l.mu.Lock()
		var it *Item
		wait := time.Duration(-1)
		if len(l.heap) > 0 {
			if d := l.heap[0].Job.NextAt.Sub(now()); d > 0 {
				wait = d
			} else {
				it = heap.Pop(&l.heap).(*Item)
				l.inFlight++
			}
		}
		l.mu.Unlock()
		if it != nil {
			select {
			case work <- it:
				continue
			case <-ctx.Done():
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

func (l *lane) stats(now time.Time) Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Stats{Lane: l.key, Depth: len(l.keys), InFlight: l.inFlight}
	for _, it := range l.heap {
		if !it.Job.NextAt.After(now) {
			s.Due++
			if age := now.Sub(it.Job.NextAt); age > s.OldestAge {
				s.OldestAge = age
			}
		}
	}
	s.Oldest = s.OldestAge.String()
	return s
}

// itemHeap orders items by due time, then by expiry (shorter-lived first).
type itemHeap []*Item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if !a.Job.NextAt.Equal(b.Job.NextAt) {
		return a.Job.NextAt.Before(b.Job.NextAt)
	}
	return a.Alert.ExpiresAt.Before(b.Alert.ExpiresAt)
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
