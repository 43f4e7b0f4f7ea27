package api

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate limit defaults (Options fields left zero).
const (
	// DefaultUserRate and DefaultUserBurst limit one user (workspace, sub).
	DefaultUserRate  rate.Limit = 5
	DefaultUserBurst            = 20
	// DefaultAddrRate and DefaultAddrBurst limit one client address (an
	// IPv4 address or an IPv6 /64), before authentication. Generous:
	// phones behind carrier NAT share addresses.
	DefaultAddrRate  rate.Limit = 50
	DefaultAddrBurst            = 100
)

// limiter is a set of token buckets keyed by string.
type limiter struct {
	rate  rate.Limit
	burst int
	// full is how long an unused bucket takes to refill: an entry idle
	// that long is the same as a new one, so dropping it loses nothing.
	full time.Duration

	mu        sync.Mutex
	buckets   map[string]*bucket
	nextSweep int
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

const minSweep = 1024

func newLimiter(r rate.Limit, burst int) *limiter {
	full := time.Hour
	if r > 0 {
		full = time.Duration(float64(burst) / float64(r) * float64(time.Second))
	}
	return &limiter{rate: r, burst: burst, full: full, buckets: map[string]*bucket{}, nextSweep: minSweep}
}

// allow takes a token for key at now. When none is left it reports how
// long until one is.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.nextSweep {
			l.sweep(now)
		}
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	l.mu.Unlock()

	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops buckets idle long enough to be full again. Under l.mu.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.full {
			delete(l.buckets, k)
		}
	}
	l.nextSweep = max(2*len(l.buckets), minSweep)
}

// addrKey is the rate-limit key of a client address: the IP, or its /64
// for IPv6 (one host usually owns a /64). The peer address is used as is:
// the API does not trust forwarding headers.
func addrKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
