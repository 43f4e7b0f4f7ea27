package queue

import "sync"

// sendPool runs a lane's sends on goroutines that live as long as the
// lane, at most as many as sends in flight. A goroutine per send paid for
// growing its stack through the HTTP/2 and TLS calls every time
// (runtime.newstack: 7-10% of relayd's CPU). An idle goroutine waits on a
// channel of its own, and the one idle the shortest takes the next send
// (LIFO): the runtime shrinks idle goroutines' stacks at each GC, so a
// FIFO hand-off (one shared channel) gave every send to the goroutine idle
// the longest, whose stack then grew again.
type sendPool[T any] struct {
	do     func(T)
	wg     *sync.WaitGroup
	mu     sync.Mutex
	idle   []chan T
	closed bool
}

func newSendPool[T any](wg *sync.WaitGroup, do func(T)) *sendPool[T] {
	return &sendPool[T]{do: do, wg: wg}
}

// run hands v to an idle goroutine, or starts one.
func (p *sendPool[T]) run(v T) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		ch := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		ch <- v // buffered, and only run sends to it: never blocks
		return
	}
	p.mu.Unlock()
	p.wg.Go(func() {
		ch := make(chan T, 1)
		for ok := true; ok; v, ok = p.wait(ch) {
			p.do(v)
		}
	})
}

// wait parks the goroutine owning ch as idle until run hands it the next
// value; false once the pool is closed.
func (p *sendPool[T]) wait(ch chan T) (T, bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		var zero T
		return zero, false
	}
	p.idle = append(p.idle, ch)
	p.mu.Unlock()
	v, ok := <-ch
	return v, ok
}

// close ends the idle goroutines now and the busy ones when their send is
// done. run must not be called after.
func (p *sendPool[T]) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, ch := range p.idle {
		close(ch)
	}
	p.idle = nil
}
