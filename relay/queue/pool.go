package queue

import (
	"sync"
	"time"
)

// sendPool runs a lane's sends on goroutines that live as long as the
// lane. A goroutine per send paid for growing its stack through the HTTP/2
// and TLS calls every time (runtime.newstack: 7-10% of relayd's CPU). An
// idle goroutine waits on a channel of its own, and the one idle the
// shortest takes the next send (LIFO): the runtime shrinks idle
// goroutines' stacks at each GC, so a FIFO hand-off (one shared channel)
// gave every send to the goroutine idle the longest, whose stack then grew
// again.
//
// The pool runs at most as many goroutines as make the sends go faster
// (its limiter sets how many); a send handed over while they are all busy
// waits its turn, urgent ones first. The lane's concurrency still bounds
// the jobs leased, so a provider 100 ms away gets hundreds of goroutines
// and one on the same network a few dozen: leasing 256 jobs at once
// against a fake at 0 ms had started 512 goroutines with grown stacks,
// ~16 MiB of relayd's peak memory and as many stacks for the GC to scan.
type sendPool[T any] struct {
	do     func(T)
	urgent func(T) bool // sent before the others waiting (nil: none)
	// sample returns the mean and the shortest time of the sends since
	// its last call (ok false: none).
	sample func() (mean, least time.Duration, ok bool)
	wg     *sync.WaitGroup
	now    func() time.Time

	mu      sync.Mutex
	idle    []chan T
	waiting [2]fifo[T] // values no goroutine was free for: urgent, then the rest
	live    int        // goroutines started and not ended
	busy    int        // goroutines running do
	closed  bool
	lim     limiter
	// The window the limit is computed from: its start, the integral of
	// busy over time (busy·nanoseconds) up to last, and whether a value
	// waited for a goroutine.
	start, last time.Time
	area        float64
	waited      bool
}

const (
	// poolMin is a pool's smallest limit.
	poolMin = 64
	// poolWindow is how often a pool's limit follows the load.
	poolWindow = 100 * time.Millisecond
)

// newSendPool returns a pool of at most most goroutines running do; its
// limiter follows sample, or without one (nil) the limit is most.
func newSendPool[T any](wg *sync.WaitGroup, most int, now func() time.Time, urgent func(T) bool,
	sample func() (time.Duration, time.Duration, bool), do func(T)) *sendPool[T] {
	most = max(most, 1)
	limit := most
	if sample != nil {
		limit = min(poolMin, most)
	}
	t := now()
	return &sendPool[T]{do: do, urgent: urgent, sample: sample, wg: wg, now: now,
		lim: limiter{limit: float64(limit), max: most}, start: t, last: t}
}

// run hands v to an idle goroutine, starts one, or queues v for the next
// goroutine free.
func (p *sendPool[T]) run(v T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tick()
	if n := len(p.idle); n > 0 {
		ch := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.busy++
		ch <- v // buffered, and only run sends to it: never blocks
		return
	}
	if p.live < p.lim.n() {
		p.start1(v)
		return
	}
	p.waited = true
	i := 1
	if p.urgent != nil && p.urgent(v) {
		i = 0
	}
	p.waiting[i].push(v)
}

// start1 starts a goroutine running v, then the values it is handed
// (p.mu held).
func (p *sendPool[T]) start1(v T) {
	p.live++
	p.busy++
	p.wg.Go(func() {
		ch := make(chan T, 1)
		for ok := true; ok; v, ok = p.next(ch) {
			p.do(v)
		}
	})
}

// pop takes the first value waiting (p.mu held).
func (p *sendPool[T]) pop() (T, bool) {
	for i := range p.waiting {
		if v, ok := p.waiting[i].pop(); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// fifo is a queue on a slice that it reuses once drained: the waiting
// values of a burst used to be appended to a slice that shrank from the
// front as they were taken and was dropped when empty, so every burst
// grew a new one (3 % of the bytes relayd allocated at saturation). It
// keeps at most what one burst needed (the lane's concurrency bounds it).
type fifo[T any] struct {
	buf  []T
	head int // buf[:head] are taken
}

func (q *fifo[T]) len() int { return len(q.buf) - q.head }

func (q *fifo[T]) push(v T) {
	if q.head > 0 && len(q.buf) == cap(q.buf) && q.head >= len(q.buf)/2 {
		// Full, but half of it taken: slide down instead of growing.
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, v)
}

func (q *fifo[T]) pop() (T, bool) {
	var zero T
	if q.head == len(q.buf) {
		return zero, false
	}
	v := q.buf[q.head]
	q.buf[q.head] = zero // the queue must not keep a sent value alive
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
	return v, true
}

// next returns the goroutine owning ch its next value: one waiting, or
// the next that run hands it after it parked as idle. False when the
// goroutine is to end: the pool closed, or it is one more than the limit.
func (p *sendPool[T]) next(ch chan T) (T, bool) {
	p.mu.Lock()
	p.tick()
	if v, ok := p.pop(); ok {
		p.mu.Unlock()
		return v, true
	}
	p.busy--
	if p.closed || p.live > p.lim.n() {
		p.live--
		p.mu.Unlock()
		var zero T
		return zero, false
	}
	p.idle = append(p.idle, ch)
	p.mu.Unlock()
	v, ok := <-ch
	return v, ok
}

// tick adds the time since the last tick to the window and, once the
// window is over, has the limiter set the limit from it: then it ends the
// idle goroutines beyond the limit, those idle the longest first, or
// starts goroutines for the values waiting (p.mu held).
func (p *sendPool[T]) tick() {
	if p.sample == nil {
		return // a fixed limit
	}
	now := p.now()
	if d := now.Sub(p.last); d > 0 {
		p.area += float64(p.busy) * float64(d)
		p.last = now
	}
	span := p.last.Sub(p.start)
	if span < poolWindow {
		return
	}
	mean, least, ok := p.sample()
	p.lim.window(p.area/float64(span), mean, least, ok, p.waited)
	p.start, p.area = p.last, 0
	limit := p.lim.n()
	for p.live > limit && len(p.idle) > 0 {
		close(p.idle[0])
		p.idle[0] = nil
		p.idle = p.idle[1:]
		p.live--
	}
	for p.live < limit && !p.closed {
		v, ok := p.pop()
		if !ok {
			break
		}
		p.start1(v)
	}
	p.waited = p.waitingLen() > 0 // a backlog left counts for the next window
}

// waitingLen is the number of values waiting (p.mu held).
func (p *sendPool[T]) waitingLen() int { return p.waiting[0].len() + p.waiting[1].len() }

// close ends the idle goroutines now and the busy ones when their send is
// done, after the values waiting. run must not be called after.
func (p *sendPool[T]) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, ch := range p.idle {
		close(ch)
	}
	p.live -= len(p.idle)
	p.idle = nil
}

// limiter sets a pool's goroutine limit once per window. While sends wait
// for a goroutine, it compares the window's sends: when the mean send
// takes not much longer than the shortest, the time is the provider's
// round trip, and more sends at once mean more sends per second; when the
// mean is many times the shortest, the sends queue for something relayd
// has too little of (the CPU, the connection's writes), and more at once
// would only queue longer. So the next limit is 2 × limit × shortest/mean,
// moving by at most half up and a quarter down per window: a lane whose
// provider is 20 ms away reaches its concurrency in a few windows, and one
// a few hundred µs away stays near poolMin. A window's shortest send is
// its least disturbed one, so a busy machine, which stretches every send,
// moves the ratio less than it moves the times. With nothing waiting the
// limit follows the need: twice the mean busy.
type limiter struct {
	limit float64
	max   int
}

// n is the limit now.
func (l *limiter) n() int { return int(l.limit) }

// window ends a window in which busy goroutines were busy on average,
// the sends took mean and at least least (ok: sends were done), and
// values waited for a goroutine or not.
func (l *limiter) window(busy float64, mean, least time.Duration, ok, waited bool) {
	next := l.limit
	switch {
	case !waited:
		next = min(l.limit, 2*busy)
	case ok && mean > 0:
		ratio := float64(least) / float64(mean)
		next = min(max(2*l.limit*ratio, 0.75*l.limit), 1.5*l.limit)
	}
	l.limit = min(max(next, poolMin), float64(l.max))
}
