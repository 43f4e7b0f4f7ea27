package policy

import "sync"

// ring keeps the last len(buf) bytes written to it: a guest's stdout and
// stderr, so a failure can say what the guest printed.
type ring struct {
	mu   sync.Mutex
	buf  []byte
	n    int // bytes written in total
	head int // next write position
}

func newRing(size int) *ring { return &ring{buf: make([]byte, size)} }

// Write implements io.Writer; it never fails.
func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	if len(p) > len(r.buf) {
		p = p[len(p)-len(r.buf):]
	}
	for len(p) > 0 {
		c := copy(r.buf[r.head:], p)
		p = p[c:]
		r.head = (r.head + c) % len(r.buf)
	}
	r.n += n
	return n, nil
}

// Tail returns at most max of the most recently written bytes.
func (r *ring) Tail(max int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	have := r.n
	if have > len(r.buf) {
		have = len(r.buf)
	}
	if max > have {
		max = have
	}
	out := make([]byte, max)
	start := (r.head - max + len(r.buf)) % len(r.buf)
	c := copy(out, r.buf[start:])
	if c < max {
		copy(out[c:], r.buf[:max-c])
	}
	return string(out)
}

// Excerpt returns at most max bytes for an error message: the start of the
// output when the ring still holds all of it (a panic message comes first,
// then stack traces), otherwise its most recent bytes.
func (r *ring) Excerpt(max int) string {
	r.mu.Lock()
	n := r.n
	r.mu.Unlock()
	if n > len(r.buf) {
		return r.Tail(max)
	}
	all := r.Tail(len(r.buf))
	if len(all) > max {
		all = all[:max]
	}
	return all
}

// Reset forgets what was written.
func (r *ring) Reset() {
	r.mu.Lock()
	r.n, r.head = 0, 0
	r.mu.Unlock()
}
