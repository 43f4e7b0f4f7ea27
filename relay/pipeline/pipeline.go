package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Policy judges an event the baseline would deliver. The daemon adapts the
// plugin engine to it; nil means no plugins.
type Policy interface {
	Evaluate(ctx context.Context, in PolicyInput) (PolicyResult, error)
}

// PolicyInput is what the plugins see.
type PolicyInput struct {
	Now         time.Time
	Event       relay.Event
	Baseline    relay.Decision
	Settings    map[string]relay.Setting
	Preferences map[string]bool
	Devices     []relay.Device
	// Recent is the user's user.recent counts, this event included (nil:
	// no counts).
	Recent map[string]store.RecentCounts
}

// PolicyResult is what the plugin chain decided.
type PolicyResult struct {
	Verdict    relay.Verdict
	Reason     string
	DeferUntil time.Time
	Plugins    []relay.PluginDecision
	// Apply changes the rendered alert (the plugins' "set"); nil: no change.
	Apply func(*relay.Alert)
	// Devices narrows the target devices; nil: all.
	Devices []string
	// Notices are the informational alerts the plugins asked the host to
	// send the same user (abi.Notice), in chain order.
	Notices []Notice
}

// Notice is an informational alert a plugin asked for: never actionable.
type Notice struct {
	Plugin string // the plugin that asked
	Title  string
	Body   string
	Data   map[string]string
}

// Store is what the pipeline needs: the event log and the directory.
type Store interface {
	store.EventLog
	Settings(ctx context.Context, workspace string) (map[string]relay.Setting, error)
	Preferences(ctx context.Context, workspace, user string) (map[string]bool, error)
	Devices(ctx context.Context, workspace, user string) ([]relay.Device, error)
}

// Queue is told of decided jobs (they are in the schedule already) and
// admits events while the backlog allows.
type Queue interface {
	// Scheduled wakes the lane of n new jobs of priority p.
	Scheduled(lane string, p relay.Priority, n int)
	// Admit fails once the backlog is full for events of priority p.
	Admit(p relay.Priority) error
}

// DefaultDeciders is the default number of concurrent deciders. Deciding
// is I/O-bound (each decision is a durable store commit that waits for a
// group fsync), so it is well above the number of cores.
const DefaultDeciders = 64

// DefaultInlineBudget is Options.InlineBudget's default: a hundred times
// a shipped policy's call, and well under the plugins' kill switch.
const DefaultInlineBudget = 10 * time.Millisecond

// lineWaits is how many budgets an Accept call may wait in all for users
// whose earlier events are with the deciders. Long enough for their lines
// to empty under load (the deciders judge a line at the plugins' speed):
// a call that gave up sooner would add to them, and at saturation they
// would never empty again, every later event taking the decider's path.
const lineWaits = 50

// Options configure a Pipeline.
type Options struct {
	Config   *config.Config
	Store    Store
	Queue    Queue
	Policy   Policy // optional
	Logger   hclog.Logger
	Deciders int // concurrent deciders; default DefaultDeciders
	// Backlog is how many accepted events may wait for a decider before
	// Accept blocks (backpressure on the socket).
	Backlog int
	Now     func() time.Time
	// DecideOnAccept decides, in Accept, the events that need no plugin
	// and no user.recent count, and stores each with its decision
	// (Store.AddDecided). For a store that writes both at once (bolt: one
	// commit instead of two); on JetStream AddDecided is two writes, and
	// the POST would wait for the second, so it is off there.
	DecideOnAccept bool
	// InlineBudget bounds Accept's judging of events with the plugins
	// itself (with DecideOnAccept and a Policy): such an event is stored
	// with its decision in the accept's write, like one no plugin applies
	// to, instead of waiting for a decider (a second write, a hop and a
	// read of the directory per event). After a judgement that took longer
	// than the budget (a slow or failing plugin) the rest of the call's
	// plugin-judged events go to the deciders, so such a plugin delays a
	// POST by about one budget. The call also waits, up to 50 budgets in
	// all, for users whose earlier events are with the deciders (inliner,
	// lineWaits). Zero: DefaultInlineBudget; negative: never.
	InlineBudget time.Duration
	// Recent keeps the user.recent counts; nil: the plugins see none. An
	// event is counted when it is decided, just before the plugins judge
	// it, so each decision sees the events decided before it and itself.
	Recent store.Recents
	// OnNotices, when set, is called after an event's decision is
	// recorded with the notices its plugins asked for (at most once per
	// event: a decision that lost to another relay's calls nothing).
	OnNotices func(ctx context.Context, ev relay.Event, notices []Notice)
	// OnScheduled, when set, is called after a decision that sends (jobs
	// pending or deferred) is recorded, with the alert and the jobs.
	OnScheduled func(ctx context.Context, ev relay.Event, alert *relay.Alert, jobs []relay.Job)
	// OnDecided, when set, is called with each decision this relay
	// recorded (not those another relay or an earlier sweep recorded
	// first): decision metrics.
	OnDecided func(relay.Event, relay.Decision)
	// SweepInterval is how often Run looks for accepted events that no
	// decider took (a decision that failed, a relay that died between
	// accepting and deciding); default DefaultSweepInterval.
	SweepInterval time.Duration
	// SweepAge is how long an event may wait undecided before a sweep
	// decides it; default DefaultSweepAge.
	SweepAge time.Duration
}

// Defaults for the undecided sweep.
const (
	DefaultSweepInterval = 2 * time.Second
	DefaultSweepAge      = 5 * time.Second
)

// Pipeline accepts events and decides them.
type Pipeline struct {
	opts Options
	log  hclog.Logger
	// in holds accepted normal-priority events, by pointer: a channel's
	// buffer is allocated whole, and Backlog events by value were 1.6 MB
	// of live heap the GC scanned at every cycle, idle or not.
	in chan *relay.Event
	// inHigh holds accepted high-priority events; deciders take them first.
	inHigh chan *relay.Event
	// slots bounds the accepted events waiting for a decider (in the
	// channels or a user's line): Accept waits for a slot, a decider
	// frees it. The channels hold as many, so sends to them never block.
	slots chan struct{}
	// lines keeps each user's events in acceptance order: a user with a
	// key here has one event in a channel or being decided, and the rest
	// wait in the line. One user's events are thus decided one by one in
	// order (the push-bombing guard's counts follow the events), while
	// different users' events are decided in parallel.
	mu    sync.Mutex
	lines map[userKey][]relay.Event
	// freed has, for a user with a line that an Accept call waits for, a
	// channel that closes when the line is done: the call then judges the
	// user's events itself instead of adding them to the line.
	freed map[userKey]chan struct{}
	// judging holds the events an Accept call is judging and has not
	// stored yet: a copy of one in another call (or later in the same
	// call) is a duplicate to store, not to judge and count again.
	judging map[relay.EventKey]struct{}
	// stopping is closed when Run's context ends: Accept then stops
	// waiting for a decider (the events are stored; Recover decides them
	// at the next start).
	stopping     chan struct{}
	stoppingOnce sync.Once
	// sendable reports whether an app has a provider for a platform.
	sendable func(app string, p relay.Platform) bool
	// cfg is the config in force: opts.Config, then what SetConfig gave.
	cfg atomic.Pointer[config.Config]
}

// SetConfig makes cfg (notification types, apps) the config of the
// decisions that start from now on (a reload).
func (p *Pipeline) SetConfig(cfg *config.Config) { p.cfg.Store(cfg) }

// New returns a pipeline; Run starts its deciders.
func New(opts Options) *Pipeline {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Deciders <= 0 {
		opts.Deciders = DefaultDeciders
	}
	if opts.Backlog <= 0 {
		opts.Backlog = 4096
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.SweepAge <= 0 {
		opts.SweepAge = DefaultSweepAge
	}
	p := &Pipeline{opts: opts, log: opts.Logger, in: make(chan *relay.Event, opts.Backlog), inHigh: make(chan *relay.Event, opts.Backlog),
		slots: make(chan struct{}, opts.Backlog), lines: map[userKey][]relay.Event{}, freed: map[userKey]chan struct{}{},
		judging: map[relay.EventKey]struct{}{}, stopping: make(chan struct{})}
	p.cfg.Store(opts.Config)
	p.sendable = func(app string, pl relay.Platform) bool {
		a := p.cfg.Load().AppByName(app)
		if a == nil {
			return false
		}
		return (pl == relay.PlatformIOS && a.APNS != nil) || (pl == relay.PlatformAndroid && a.FCM != nil)
	}
	return p
}

// Accept fills each event's defaults and stores the events durably. It
// returns one error per event: nil (accepted), relay.ErrDuplicate, or why it
// was rejected. Accepted events are queued for a decider; when the deciders
// are behind, Accept waits (the socket slows down rather than memory
// growing).
func (p *Pipeline) Accept(ctx context.Context, events []relay.Event) ([]error, error) {
	now := p.opts.Now()
	errs := make([]error, len(events))
	ok := make([]relay.Event, 0, len(events))
	idx := make([]int, 0, len(events))
	for i := range events {
		ev := events[i]
		if err := p.fill(&ev, now); err != nil {
			errs[i] = err
			continue
		}
		ok = append(ok, ev)
		idx = append(idx, i)
	}
	if len(ok) == 0 {
		return errs, nil
	}
	// Refuse the call (503, retryable) if any event's priority is over the
	// backlog limit: normal-priority events are refused before high ones.
	for _, ev := range ok {
		if err := p.opts.Queue.Admit(ev.Priority); err != nil {
			return nil, err
		}
	}
	// Decide at once what needs no plugin and no user.recent count (and so
	// nothing to wait for): the event and its decision go into the same
	// store write, and no decider is involved. The rest wait for a decider.
	decided := make([]*judged, len(ok))
	stored := make([]*store.Decided, len(ok))
	reads := &directoryReads{}
	if p.opts.DecideOnAccept {
		p.readUsers(ctx, ok, reads)
	}
	in := p.inliner()
	in.claim(ctx, ok)
	// The events the plugins judge here, prepared: their plugin calls run
	// back to back below, after the reads (a guest's code and data stay
	// in the CPU's caches from one call to the next; with other work in
	// between, a call costs about twice as much).
	type inlined struct {
		k  int
		pr *prepared
	}
	var plugins []inlined
	for k := range ok {
		if !p.opts.DecideOnAccept {
			break
		}
		reads.inline = in.take(ok[k])
		pr, err := p.prepare(ctx, ok[k], now, reads)
		if err != nil || pr == nil {
			in.leave(ok[k]) // a decider judges it (a failed read is tried again there), and the user's later events
			continue
		}
		if reads.inline && pr.chain {
			plugins = append(plugins, inlined{k, pr})
			continue
		}
		j, err := p.finish(ctx, pr, now)
		if err != nil {
			in.leave(ok[k])
			continue
		}
		decided[k] = j
		stored[k] = &store.Decided{Decision: j.dec, Alert: j.stored, Jobs: j.jobs}
	}
	var stopped map[userKey]bool // users with an event the plugins did not judge here
	for _, e := range plugins {
		ev := ok[e.k]
		u := userKey{ev.Workspace, ev.User}
		if in.slow || stopped[u] {
			in.leave(ev)
			continue
		}
		start := time.Now()
		// The poster hanging up must not cut a plugin call short: the
		// event would be judged again by a decider.
		j, err := p.finish(context.WithoutCancel(ctx), e.pr, now)
		in.took(time.Since(start))
		if err != nil {
			in.leave(ev) // a decider judges it, and the user's later events
			if stopped == nil {
				stopped = map[userKey]bool{}
			}
			stopped[u] = true
			continue
		}
		decided[e.k] = j
		stored[e.k] = &store.Decided{Decision: j.dec, Alert: j.stored, Jobs: j.jobs}
	}
	// The users whose events go to the deciders are busy from now on, so
	// no other call judges their later events before these.
	defer in.release(in.reserve()) // after the dispatches below: their lines go on
	res, err := p.storeDecided(ctx, ok, stored, now)
	in.stored()
	if err != nil {
		return nil, fmt.Errorf("store events: %w", err)
	}
	for k, e := range res {
		errs[idx[k]] = e
		if e != nil {
			continue
		}
		if j := decided[k]; j != nil {
			// Hooks run whatever the poster does: the event is decided.
			p.decided(context.WithoutCancel(ctx), ok[k], j)
			continue
		}
		// Wait for a decider even if the poster hangs up: the event is
		// accepted, so it must be decided now, not at the next restart.
		select {
		case p.slots <- struct{}{}:
			p.dispatch(ok[k])
		case <-p.stopping:
			// Shutting down: stored but not decided; Recover decides it at
			// the next start.
		}
	}
	return errs, nil
}

type userKey struct{ ws, user string }

// maxEarlyLeases bounds the jobs one Accept call hands out before its
// write is durable. Their sends run while the write commits, on the cores
// that write and the POST's answer need: a batch of 50 events for two
// devices each (100 sends at once) delayed its own 202 from 4.7 to 14 ms.
// The others the write leases too (as many as the lanes have free send
// slots, unless a lane is backlogged) are handed out once it is durable:
// they need no Lease write of their own, and do not wait for the lane's
// next one. A POST of a few events, the latency case, goes out whole
// before the commit.
const maxEarlyLeases = 8

// leasingQueue is a queue that takes jobs leased for it in an accept's
// write (queue.Queue: Reserve, Offer, see store.AcceptLeaser).
type leasingQueue interface {
	LeaseTerms() (owner string, ttl time.Duration)
	Reserve(lane string, n int) int
	Backlogged(lane string) bool
	Unreserve(lane string, n int)
	Offer(lane string, jobs []store.Leased)
}

// storeDecided stores the accepted events, with the decisions made here
// (nil: none). With a store that can lease in that write and a queue that
// takes such leases, the decided jobs due now that have a free send slot
// are leased to this relay in the same write and sent before it is
// durable: their pushes wait for neither the commits nor a lease's commit
// after them (store.AcceptLeaser says when, and what a crash then can do).
func (p *Pipeline) storeDecided(ctx context.Context, events []relay.Event, decided []*store.Decided, receivedAt time.Time) ([]error, error) {
	al, ok := p.opts.Store.(store.AcceptLeaser)
	lq, qok := p.opts.Queue.(leasingQueue)
	if !ok || !qok {
		return p.opts.Store.AddDecided(ctx, events, decided, receivedAt)
	}
	now := p.opts.Now()
	due := func(j *relay.Job) bool { return !j.State.Final() && j.App != "" && !store.DueAt(j).After(now) }
	need := map[string]int{}
	for _, d := range decided {
		if d == nil {
			continue
		}
		for i := range d.Jobs {
			if due(&d.Jobs[i]) {
				need[d.Jobs[i].Lane()]++
			}
		}
	}
	// A backlogged lane's free slots go to its older jobs first (the lane
	// leases them): there the call takes at most maxEarlyLeases in all,
	// as many as it hands out early.
	slots := make(map[string]int, len(need))
	budget := maxEarlyLeases
	for lane, n := range need {
		backlogged := lq.Backlogged(lane)
		if backlogged {
			n = min(n, budget)
		}
		if got := lq.Reserve(lane, n); got > 0 {
			slots[lane] = got
			if backlogged {
				budget -= got
			}
		}
	}
	if len(slots) == 0 {
		return p.opts.Store.AddDecided(ctx, events, decided, receivedAt)
	}
	left := maps.Clone(slots)
	want := make([][]bool, len(decided))
	for k, d := range decided {
		if d == nil {
			continue
		}
		for i := range d.Jobs {
			if j := &d.Jobs[i]; due(j) && left[j.Lane()] > 0 {
				if want[k] == nil {
					want[k] = make([]bool, len(d.Jobs))
				}
				want[k][i] = true
				left[j.Lane()]--
			}
		}
	}
	owner, ttl := lq.LeaseTerms()
	until := now.Add(ttl)
	offered := map[string]int{} // written by Ready and Durable, before AddDecidedLeasing returns
	offer := func(leased []store.Leased, early bool) {
		byLane := map[string][]store.Leased{}
		for _, l := range leased {
			byLane[l.Job.Lane()] = append(byLane[l.Job.Lane()], l)
		}
		for lane, jobs := range byLane {
			offered[lane] += len(jobs)
			// Those handed out once the write is durable are sent once
			// the POST has its answer (relay.AfterAnswer).
			if early || !relay.RunAfterAnswer(ctx, func() { lq.Offer(lane, jobs) }) {
				lq.Offer(lane, jobs)
			}
		}
	}
	res, err := al.AddDecidedLeasing(ctx, events, decided, receivedAt, store.AcceptLease{Owner: owner, Until: until, Want: want,
		MaxEarly: maxEarlyLeases,
		Ready:    func(leased []store.Leased) { offer(leased, true) },
		Durable:  func(leased []store.Leased) { offer(leased, false) },
	})
	for lane, n := range slots {
		lq.Unreserve(lane, n-offered[lane]) // duplicates', events another call stored first, all of a failed write
	}
	return res, err
}

// dispatch hands an event holding a slot to the deciders, behind the
// user's events accepted before it.
func (p *Pipeline) dispatch(ev relay.Event) {
	k := userKey{ev.Workspace, ev.User}
	p.mu.Lock()
	defer p.mu.Unlock()
	if line, busy := p.lines[k]; busy {
		p.lines[k] = append(line, ev)
		return
	}
	p.lines[k] = nil
	p.queueFor(ev) <- &ev // never blocks: the channel holds every slot
}

// own marks a user busy for a sweep's decision; false: the user's events
// are with the deciders, which will decide them in order.
func (p *Pipeline) own(k userKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, busy := p.lines[k]; busy {
		return false
	}
	p.lines[k] = nil
	return true
}

// next ends the decision of one of the user's events: the next event of
// its line goes to the deciders, or the user is free.
func (p *Pipeline) next(k userKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := p.lines[k]
	if len(line) == 0 {
		delete(p.lines, k)
		if freed, ok := p.freed[k]; ok {
			close(freed)
			delete(p.freed, k)
		}
		return
	}
	ev := line[0]
	line[0] = relay.Event{}
	if len(line) == 1 {
		line = nil // keeps the user busy with an empty line
	} else {
		line = line[1:]
	}
	p.lines[k] = line
	p.queueFor(ev) <- &ev // never blocks: it holds a slot
}

// queueFor returns the decider queue of an accepted event.
func (p *Pipeline) queueFor(ev relay.Event) chan *relay.Event {
	if ev.Priority == relay.PriorityHigh {
		return p.inHigh
	}
	return p.in
}

// fill applies the notification type's defaults.
func (p *Pipeline) fill(ev *relay.Event, now time.Time) error {
	n := p.cfg.Load().Notifications[ev.Type]
	if n == nil {
		return fmt.Errorf("field %q: unknown notification type %q", "type", ev.Type)
	}
	if ev.Priority == "" {
		ev.Priority = n.Priority
	}
	if ev.ExpiresAt.IsZero() {
		ev.ExpiresAt = now.Add(n.TTL)
	}
	if len(ev.Actions) == 0 && n.Actionable() {
		ev.Actions = slices.Clone(n.Actions)
	}
	return nil
}

// Run decides queued events until ctx is done.
func (p *Pipeline) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { p.stoppingOnce.Do(func() { close(p.stopping) }) })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { p.runSweeps(ctx) })
	for range p.opts.Deciders {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-p.inHigh:
					p.decideQueued(ctx, *ev)
				default:
					// High priority first: a backlog of accepted shares
					// never delays deciding a sign-in.
					select {
					case <-ctx.Done():
						return
					case ev := <-p.inHigh:
						p.decideQueued(ctx, *ev)
					case ev := <-p.in:
						p.decideQueued(ctx, *ev)
					}
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// decideQueued decides an event a decider took from a channel, frees its
// slot and passes the user's next event on: as soon as this one is judged
// (counted and through the plugins), so the next is judged while this
// decision is written, and a user's line empties at the plugins' speed,
// not one store commit per event.
func (p *Pipeline) decideQueued(ctx context.Context, ev relay.Event) {
	k := userKey{ev.Workspace, ev.User}
	released := false
	release := func() {
		if !released {
			released = true
			p.next(k)
		}
	}
	p.decideWithRetry(ctx, ev, release)
	<-p.slots
	release()
}

// decideWithRetry decides an event, trying again a few times when the store
// fails; an event still undecided after that is decided at the next start
// (Recover). judged, if not nil, is called once the event is judged.
func (p *Pipeline) decideWithRetry(ctx context.Context, ev relay.Event, judged func()) {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.decide(ctx, ev, judged)
		if err == nil || ctx.Err() != nil {
			return
		}
		if attempt == 4 {
			p.log.Error("decide event: giving up until the next start", relay.LogKeyEventID, ev.ID,
				relay.LogKeyWorkspace, ev.Workspace, relay.LogKeyError, err)
			return
		}
		p.log.Warn("decide event: retrying", relay.LogKeyEventID, ev.ID, relay.LogKeyWorkspace, ev.Workspace,
			relay.LogKeyAttempt, attempt, relay.LogKeyError, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 4
	}
}

// runSweeps decides, every SweepInterval, the events accepted more than
// SweepAge ago and still undecided, until ctx is done.
func (p *Pipeline) runSweeps(ctx context.Context) {
	t := time.NewTicker(p.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := p.sweep(ctx, p.opts.Now().Add(-p.opts.SweepAge))
			switch {
			case err != nil && ctx.Err() == nil:
				p.log.Warn("decide undecided events", "decided", n, relay.LogKeyError, err)
			case n > 0:
				p.log.Info("decided events no decider had taken", "events", n)
			}
		}
	}
}

// Recover decides the events left undecided by a previous run (or, in a
// cluster, by a relay that died). Call it after opening the store and
// before accepting new events. Open jobs need no recovery: they are in the
// schedule.
func (p *Pipeline) Recover(ctx context.Context) (events int, err error) {
	return p.sweep(ctx, p.opts.Now())
}

// sweep decides the undecided events received before before. An event
// whose decision fails is logged and left for the next sweep; the others
// go on.
func (p *Pipeline) sweep(ctx context.Context, before time.Time) (events int, err error) {
	var pending []relay.Event
	err = p.opts.Store.Undecided(ctx, before, func(ev relay.Event) error {
		pending = append(pending, ev)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("walk undecided events: %w", err)
	}
	var failed int
	var last error
	for _, ev := range pending {
		if ctx.Err() != nil {
			return events, ctx.Err()
		}
		k := userKey{ev.Workspace, ev.User}
		if !p.own(k) {
			continue // the deciders have this user's events, in order
		}
		err := p.Decide(ctx, ev)
		p.next(k)
		if err != nil {
			failed++
			last = fmt.Errorf("decide event %s: %w", ev.Key(), err)
			p.log.Warn("decide undecided event: left for the next sweep", relay.LogKeyEventID, ev.ID,
				relay.LogKeyWorkspace, ev.Workspace, relay.LogKeyError, err)
			continue
		}
		events++
	}
	if failed > 0 {
		return events, fmt.Errorf("%d of %d undecided events could not be decided yet (last: %w)", failed, len(pending), last)
	}
	return events, nil
}

// ReasonUnknownType is the reason of an event whose type is no longer
// declared in config (it was, when the event was accepted).
const ReasonUnknownType = "unknown_type"

// Decide runs the decision chain for one stored event, records it and queues
// its jobs.
func (p *Pipeline) Decide(ctx context.Context, ev relay.Event) error {
	return p.decide(ctx, ev, nil)
}

// decide is Decide, calling judged (if not nil) once the event is judged,
// before its decision is recorded. (A record that fails is judged again
// on the next attempt; a later event of the user judged meanwhile was
// counted in user.recent before it then.)
func (p *Pipeline) decide(ctx context.Context, ev relay.Event, judged func()) error {
	now := p.opts.Now()
	if p.cfg.Load().Notifications[ev.Type] == nil {
		dec := relay.Decision{Verdict: relay.VerdictSuppress, Reason: ReasonUnknownType}
		err := p.opts.Store.Decide(ctx, ev.Key(), dec, nil, nil)
		if err == nil && p.opts.OnDecided != nil {
			p.opts.OnDecided(ev, dec)
		}
		return ignoreConflict(err)
	}
	j, err := p.judge(ctx, ev, now)
	if err != nil {
		return err
	}
	if judged != nil {
		judged()
	}
	if err := p.opts.Store.Decide(ctx, ev.Key(), j.dec, j.stored, j.jobs); err != nil {
		if errors.Is(err, relay.ErrConflict) {
			return nil // decided already (a sweep, or another relay)
		}
		return fmt.Errorf("record decision: %w", err)
	}
	p.decided(ctx, ev, j)
	return nil
}

// judged is a decision ready to be recorded.
type judged struct {
	dec     relay.Decision
	alert   *relay.Alert // the rendered alert
	stored  *relay.Alert // the alert to store: nil when the jobs are final
	jobs    []relay.Job
	final   bool
	notices []Notice
}

// decided runs what follows a recorded decision: OnDecided, the plugins'
// notices, the queue's wake-up and OnScheduled.
func (p *Pipeline) decided(ctx context.Context, ev relay.Event, j *judged) {
	if p.opts.OnDecided != nil {
		p.opts.OnDecided(ev, j.dec)
	}
	if len(j.notices) > 0 && p.opts.OnNotices != nil {
		p.opts.OnNotices(ctx, ev, j.notices)
	}
	if j.final {
		return
	}
	Scheduled(p.opts.Queue, j.alert.Priority, j.jobs)
	if p.opts.OnScheduled != nil && len(j.jobs) > 0 {
		p.opts.OnScheduled(ctx, ev, j.alert, j.jobs)
	}
}

// policyApplies reports whether the policies would see ev; a Policy that
// cannot tell sees every event.
func (p *Pipeline) policyApplies(ev relay.Event) bool {
	if a, ok := p.opts.Policy.(interface{ Applies(relay.Event) bool }); ok {
		return a.Applies(ev)
	}
	return true
}

// needsChain reports whether deciding ev (a delivering baseline) needs
// the plugins: one applies to it, or one could read the user.recent count
// it adds to.
func (p *Pipeline) needsChain(ev relay.Event) bool {
	return p.policyApplies(ev) || (p.opts.Recent != nil && p.policyActive())
}

// policyActive reports whether any plugin is loaded (one could read the
// user.recent counts); a Policy that cannot tell is.
func (p *Pipeline) policyActive() bool {
	if a, ok := p.opts.Policy.(interface{ Active() bool }); ok {
		return a.Active()
	}
	return true
}

// inliner decides which of an Accept call's events the call judges with
// the plugins itself: those of users whose earlier events are not with
// the deciders (they would be counted and judged after later ones), never
// an event stored before or being judged by another call (a duplicate
// must not be counted in user.recent again), and none after a judgement
// that took longer than the budget (a slow or failing plugin: the rest
// go to the deciders, so it delays the POST by about one budget).
// Concurrent calls may judge the same user's events at once: their order
// is theirs (neither was accepted first), and each event's count is its
// own (CountRecent is atomic).
type inliner struct {
	p       *Pipeline
	budget  time.Duration           // 0: the call judges nothing itself
	slow    bool                    // a judgement took longer than the budget
	waiting time.Duration           // how long the call may still wait for users (lineWaits)
	free    map[userKey]bool        // users found with no line at the deciders
	left    map[userKey]bool        // users whose events go to the deciders from here on
	keys    []relay.EventKey        // the events this call took (in p.judging)
	claimed map[relay.EventKey]bool // of keys, those not stored: the call may judge them
}

func (p *Pipeline) inliner() *inliner {
	in := &inliner{p: p}
	budget := p.opts.InlineBudget
	if budget == 0 {
		budget = DefaultInlineBudget
	}
	if p.opts.DecideOnAccept && p.opts.Policy != nil && budget > 0 {
		in.budget, in.waiting = budget, lineWaits*budget
	}
	return in
}

// took notes how long the call's last judgement with the plugins took.
func (in *inliner) took(d time.Duration) {
	if d > in.budget {
		in.slow = true
	}
}

// take reports whether the call judges ev with the plugins itself. It is
// only asked for events in the call's order. A user with a line at the
// deciders is waited for (lineWaits).
func (in *inliner) take(ev relay.Event) bool {
	if in.budget == 0 || in.slow {
		return false
	}
	k := userKey{ev.Workspace, ev.User}
	if in.left[k] || !in.p.needsChain(ev) {
		return false
	}
	if !in.free[k] {
		start := time.Now()
		free := in.p.waitFree(k, start.Add(in.waiting))
		in.waiting = max(in.waiting-time.Since(start), 0)
		if !free {
			in.leave(ev) // its events go behind the line
			return false
		}
		if in.free == nil {
			in.free = map[userKey]bool{}
		}
		in.free[k] = true
	}
	key := ev.Key()
	if !in.claimed[key] {
		return false // stored before, or another call's to store first
	}
	in.claimed[key] = false // a copy later in the call is a duplicate
	return true
}

// claim takes for the call the events it may judge (those the plugins
// would see): each one neither stored (a duplicate: AddDecided says so)
// nor taken by another call, nor earlier in this one. Taking comes first,
// so an event another call stores meanwhile is seen stored.
func (in *inliner) claim(ctx context.Context, events []relay.Event) {
	if in.budget == 0 {
		return
	}
	in.p.mu.Lock()
	for _, ev := range events {
		if !in.p.needsChain(ev) {
			continue
		}
		key := ev.Key()
		if _, taken := in.p.judging[key]; !taken {
			in.p.judging[key] = struct{}{}
			in.keys = append(in.keys, key)
		}
	}
	in.p.mu.Unlock()
	if len(in.keys) == 0 {
		return
	}
	stored, err := in.p.opts.Store.Stored(ctx, in.keys)
	if err != nil {
		return // judged by the deciders, which read again
	}
	in.claimed = make(map[relay.EventKey]bool, len(in.keys))
	for i, key := range in.keys {
		in.claimed[key] = !stored[i]
	}
}

// waitFree waits until k's user has no line at the deciders, or until
// deadline; it reports whether the user is free.
func (p *Pipeline) waitFree(k userKey, deadline time.Time) bool {
	p.mu.Lock()
	if _, busy := p.lines[k]; !busy {
		p.mu.Unlock()
		return true
	}
	freed, ok := p.freed[k]
	if !ok {
		freed = make(chan struct{})
		p.freed[k] = freed
	}
	p.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-freed:
		// Free now; a call's events dispatched meanwhile are concurrent
		// with this one's.
		return true
	case <-t.C:
		return false
	case <-p.stopping: // shutting down: store, do not wait
		return false
	}
}

// leave sends ev's user's later events of this call to the deciders, in
// order behind ev.
func (in *inliner) leave(ev relay.Event) {
	if in.budget == 0 {
		return
	}
	if in.left == nil {
		in.left = map[userKey]bool{}
	}
	in.left[userKey{ev.Workspace, ev.User}] = true
}

// reserve makes the users whose events this call leaves to the deciders
// busy (if they are not already) before the events are stored: a call
// that stores later then waits for their lines rather than judging its
// own first. It returns the users it made busy.
func (in *inliner) reserve() []userKey {
	if len(in.left) == 0 {
		return nil
	}
	var reserved []userKey
	in.p.mu.Lock()
	defer in.p.mu.Unlock()
	for k := range in.left {
		if _, busy := in.p.lines[k]; !busy {
			in.p.lines[k] = nil
			reserved = append(reserved, k)
		}
	}
	return reserved
}

// release lets the lines of the reserved users go on, once this call's
// events have joined them.
func (in *inliner) release(reserved []userKey) {
	for _, k := range reserved {
		in.p.next(k)
	}
}

// stored ends the call's hold on the events it judged: they are in the
// store (or failed to be), where a copy finds them.
func (in *inliner) stored() {
	if len(in.keys) == 0 {
		return
	}
	in.p.mu.Lock()
	defer in.p.mu.Unlock()
	for _, k := range in.keys {
		delete(in.p.judging, k)
	}
}

// directoryReads keeps what deciding on accept read of the directory for
// one batch: its events for the same workspace and user (a batch of 1,000
// events often has a few dozen users) read the settings, preferences and
// devices once, as they were when the batch arrived. The maps and slices
// are shared by the batch's events, so they are only read.
type directoryReads struct {
	settings map[string]map[string]relay.Setting
	prefs    map[userKey]map[string]bool
	devices  map[userKey][]relay.Device
	// inline: the event may be judged by the plugins here (none of its
	// user's earlier events is with the deciders: inliner).
	inline bool
}

// readUsers reads the preferences and devices of the events' users into
// reads, in one read per workspace, when the store can (store.UsersReader);
// otherwise, or if that read fails, prepare reads them one by one.
func (p *Pipeline) readUsers(ctx context.Context, events []relay.Event, reads *directoryReads) {
	r, ok := p.opts.Store.(store.UsersReader)
	if !ok {
		return
	}
	var workspaces []string
	users := map[string][]string{}
	seen := make(map[userKey]bool, len(events))
	for _, ev := range events {
		k := userKey{ev.Workspace, ev.User}
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, ok := users[ev.Workspace]; !ok {
			workspaces = append(workspaces, ev.Workspace)
		}
		users[ev.Workspace] = append(users[ev.Workspace], ev.User)
	}
	for _, ws := range workspaces {
		prefs, devices, err := r.ReadUsers(ctx, ws, users[ws])
		if err != nil {
			if !errors.Is(err, errors.ErrUnsupported) {
				p.log.Debug("batch read of users failed: reading them one by one", relay.LogKeyError, err)
			}
			continue
		}
		if reads.prefs == nil {
			reads.prefs = make(map[userKey]map[string]bool, len(seen))
			reads.devices = make(map[userKey][]relay.Device, len(seen))
		}
		for i, u := range users[ws] {
			reads.prefs[userKey{ws, u}] = prefs[i]
			reads.devices[userKey{ws, u}] = devices[i]
		}
	}
}

// cached returns m[k], or reads it with read and keeps it in *m.
func cached[K comparable, V any](m *map[K]V, k K, read func() (V, error)) (V, error) {
	if v, ok := (*m)[k]; ok {
		return v, nil
	}
	v, err := read()
	if err != nil {
		return v, err
	}
	if *m == nil {
		*m = map[K]V{}
	}
	(*m)[k] = v
	return v, nil
}

// judge runs the decision chain for ev, whose type is known, as a decider
// does: the reads, the plugins (when its baseline delivers) and the jobs.
func (p *Pipeline) judge(ctx context.Context, ev relay.Event, now time.Time) (*judged, error) {
	pr, err := p.prepare(ctx, ev, now, nil)
	if err != nil {
		return nil, err
	}
	return p.finish(ctx, pr, now)
}

// prepared is an event ready for its judgement: what the directory says
// and the baseline, read and rendered.
type prepared struct {
	ev       relay.Event
	settings map[string]relay.Setting
	prefs    map[string]bool
	dec      relay.Decision
	expired  bool
	// policy: the policies judge it (its baseline delivers); chain: the
	// plugins run for it (finish calls them) — otherwise, deciding on
	// accept, the baseline stands.
	policy, chain bool
	devices       []relay.Device // the sendable ones
	alert         *relay.Alert
}

// prepare is judge's first half: the reads and the baseline. With reads
// (quick: deciding on accept, reads keeping the batch's directory reads),
// it returns nil, nil when the event needs a decider: a plugin to judge
// it, or a user.recent count (kept in event order by the deciders'
// per-user lines) — unless reads.inline, when Accept runs the chain
// itself (inliner).
func (p *Pipeline) prepare(ctx context.Context, ev relay.Event, now time.Time, reads *directoryReads) (*prepared, error) {
	quick := reads != nil
	if reads == nil {
		reads = &directoryReads{}
	}
	n := p.cfg.Load().Notifications[ev.Type]
	if n == nil {
		return nil, fmt.Errorf("unknown notification type %q", ev.Type)
	}
	uk := userKey{ev.Workspace, ev.User}
	settings, err := cached(&reads.settings, ev.Workspace, func() (map[string]relay.Setting, error) {
		return p.opts.Store.Settings(ctx, ev.Workspace)
	})
	if err != nil {
		return nil, fmt.Errorf("load settings: %w", err)
	}
	prefs, err := cached(&reads.prefs, uk, func() (map[string]bool, error) {
		return p.opts.Store.Preferences(ctx, ev.Workspace, ev.User)
	})
	if err != nil {
		return nil, fmt.Errorf("load preferences: %w", err)
	}
	setting := relay.EffectiveSetting(ev.Type, n.Default, settings)
	var pref *bool
	if v, ok := prefs[ev.Type]; ok {
		pref = &v
	}
	dec := relay.Baseline(setting, pref)
	dec.Plugins = []relay.PluginDecision{}
	expired := ev.Expired(now)
	// As before deciding on accept existed: with a Policy, every event
	// whose baseline delivers is counted in user.recent and judged.
	judgedByPolicy := !expired && dec.Verdict != relay.VerdictSuppress && p.opts.Policy != nil
	needsChain := judgedByPolicy && p.needsChain(ev)
	if quick && needsChain && !reads.inline {
		return nil, nil
	}
	all, err := cached(&reads.devices, uk, func() ([]relay.Device, error) {
		return p.opts.Store.Devices(ctx, ev.Workspace, ev.User)
	})
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	devices := all[:0:0]
	for _, d := range all {
		if p.sendable(d.App, d.Platform) {
			devices = append(devices, d)
		}
	}
	return &prepared{ev: ev, settings: settings, prefs: prefs, dec: dec, expired: expired,
		policy: judgedByPolicy, chain: judgedByPolicy && (!quick || needsChain),
		devices: devices, alert: p.render(ev, n)}, nil
}

// finish is judge's second half: the plugins, if they run, and the jobs.
func (p *Pipeline) finish(ctx context.Context, pr *prepared, now time.Time) (*judged, error) {
	ev, dec, devices, alert := pr.ev, pr.dec, pr.devices, pr.alert
	out := &judged{}
	state := relay.StatePending
	switch {
	case pr.expired:
		dec = relay.Decision{Verdict: relay.VerdictSuppress, Reason: relay.ReasonExpired, Enforced: dec.Enforced, Plugins: dec.Plugins}
		state = relay.StateExpired
	case dec.Verdict == relay.VerdictSuppress:
		state = relay.StateSuppressed
	case pr.policy && !pr.chain:
		// No plugin applies and none could read a count: the baseline
		// stands, as the (empty) chain would say.
	case pr.policy:
		var recent map[string]store.RecentCounts
		if p.opts.Recent != nil {
			var err error
			recent, err = p.opts.Recent.CountRecent(ctx, ev.Workspace, ev.User, ev.Type, ev.ID, now)
			if err != nil {
				return nil, fmt.Errorf("count user.recent: %w", err)
			}
		}
		res, err := p.opts.Policy.Evaluate(ctx, PolicyInput{Now: now, Event: ev, Baseline: dec, Settings: pr.settings, Preferences: pr.prefs, Devices: devices, Recent: recent})
		if err != nil {
			return nil, fmt.Errorf("evaluate policies: %w", err)
		}
		out.notices = res.Notices
		dec.Plugins = res.Plugins
		if res.Verdict != "" {
			dec.Verdict = res.Verdict
			if res.Reason != "" {
				dec.Reason = res.Reason
			}
		}
		if res.Apply != nil {
			res.Apply(alert)
		}
		if res.Devices != nil {
			devices = slices.DeleteFunc(devices, func(d relay.Device) bool { return !slices.Contains(res.Devices, d.ID) })
		}
		switch dec.Verdict {
		case relay.VerdictSuppress:
			state = relay.StateSuppressed
		case relay.VerdictDefer:
			state = relay.StateDeferred
			dec.DeferUntil = res.DeferUntil
			if !dec.DeferUntil.Before(ev.ExpiresAt) {
				// A defer to or past expiry is never delivered.
				state = relay.StateExpired
			}
		}
	}

	jobs := make([]relay.Job, 0, len(devices))
	for _, d := range devices {
		j := relay.Job{Event: ev.Key(), DeviceID: d.ID, Platform: d.Platform, App: d.App, State: state,
			ExpiresAt: ev.ExpiresAt, UpdatedAt: now}
		if state == relay.StateDeferred {
			j.NextAt = dec.DeferUntil
		}
		jobs = append(jobs, j)
	}
	out.dec, out.alert, out.jobs, out.final = dec, alert, jobs, state.Final()
	if !out.final {
		out.stored = alert
	}
	return out, nil
}

// Scheduled tells q of the open jobs just decided, per lane.
func Scheduled(q Queue, prio relay.Priority, jobs []relay.Job) {
	// Most events' open jobs share one lane (one device, or one app and
	// platform): one call then, without a map.
	var first *relay.Job
	n := 0
	for i := range jobs {
		j := &jobs[i]
		if j.State.Final() {
			continue
		}
		if first != nil && (j.App != first.App || j.Platform != first.Platform) {
			first = nil
			break
		}
		if first == nil {
			first = j
		}
		n++
	}
	if first != nil {
		q.Scheduled(first.Lane(), prio, n)
		return
	}
	lanes := map[string]int{}
	for i := range jobs {
		if !jobs[i].State.Final() {
			lanes[jobs[i].Lane()]++
		}
	}
	for lane, n := range lanes {
		q.Scheduled(lane, prio, n)
	}
}

func ignoreConflict(err error) error {
	if errors.Is(err, relay.ErrConflict) {
		return nil
	}
	return err
}

// render builds the alert every device of the event gets.
func (p *Pipeline) render(ev relay.Event, n *config.Notification) *relay.Alert {
	a := &relay.Alert{
		EventID:    ev.ID,
		Workspace:  ev.Workspace,
		Type:       ev.Type,
		Title:      ev.Title,
		Body:       ev.Body,
		Data:       ev.Data,
		Actions:    ev.Actions,
		Priority:   ev.Priority,
		CollapseID: CollapseID(ev.Key()),
		ExpiresAt:  ev.ExpiresAt,
	}
	if len(a.Actions) > 0 {
		a.Category = n.Category
	}
	switch ev.Type {
	case relay.TypeIdentityVerification, relay.TypeNewTrustedDevice:
		a.InterruptionLevel = "time-sensitive"
	}
	return a
}

// CollapseID is the stable collapse id of an event: the same on every
// attempt and after a restart, so a duplicate replaces the first copy on the
// phone. 32 hex characters (APNs allows 64 bytes).
func CollapseID(k relay.EventKey) string {
	h := sha256.Sum256([]byte(k.Workspace + "\x00" + k.ID))
	return hex.EncodeToString(h[:16])
}
