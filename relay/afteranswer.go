package relay

import (
	"context"
	"sync"
)

// AfterAnswer holds work that waits until a request's answer is written.
// The ingest server gives each POST one: the sends of the jobs an accept
// leased past its first few start once the 202 is on the wire, instead of
// competing with it for the CPU (a batch's hundred sends at once held up
// its own answer by milliseconds).
type AfterAnswer struct {
	mu   sync.Mutex
	fns  []func()
	done bool
}

type afterAnswerKey struct{}

// WithAfterAnswer returns ctx carrying a new AfterAnswer. The handler must
// call its Close once it answered, on every path.
func WithAfterAnswer(ctx context.Context) (context.Context, *AfterAnswer) {
	a := &AfterAnswer{}
	return context.WithValue(ctx, afterAnswerKey{}, a), a
}

// RunAfterAnswer queues fn to run after the answer of ctx's request, and
// reports whether it did: false when ctx carries no AfterAnswer or it was
// closed, and the caller runs fn itself.
func RunAfterAnswer(ctx context.Context, fn func()) bool {
	a, _ := ctx.Value(afterAnswerKey{}).(*AfterAnswer)
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return false
	}
	a.fns = append(a.fns, fn)
	return true
}

// Pending reports whether work waits for the answer.
func (a *AfterAnswer) Pending() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.fns) > 0
}

// Run runs the work queued so far, in order (it must not wait longer);
// work queued later waits for the next Run or Close.
func (a *AfterAnswer) Run() { a.run(false) }

// Close runs the queued work, in order, and lets later RunAfterAnswer
// calls run theirs at once. The handler calls it once it answered.
func (a *AfterAnswer) Close() { a.run(true) }

func (a *AfterAnswer) run(closing bool) {
	a.mu.Lock()
	fns := a.fns
	a.fns = nil
	if closing {
		a.done = true
	}
	a.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
