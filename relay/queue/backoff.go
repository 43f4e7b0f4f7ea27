package queue

import (
	"math/rand/v2"
	"time"
)

// Backoff computes retry delays: exponential from Initial, capped at Max,
// with Jitter (0..1) of the delay randomized. Jitter 1 is "full jitter"
// (uniform in [0, d]); 0.2 gives a delay in [0.8d, d].
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Jitter  float64
	// Rand returns a float in [0,1); nil uses math/rand/v2.
	Rand func() float64
}

// Delay returns the wait before retry number attempt (1 = first retry),
// at least floor (a provider's Retry-After).
func (b Backoff) Delay(attempt int, floor time.Duration) time.Duration {
	d := b.Initial
	if d <= 0 {
		d = time.Second
	}
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	j := min(max(b.Jitter, 0), 1)
	d = time.Duration(float64(d) * (1 - j*r()))
	return max(d, floor)
}
