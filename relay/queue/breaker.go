package queue

import (
	"errors"
	"time"

	"github.com/edgerelay/edgerelay/relay/delivery"
)

// breakerState is where a lane's circuit breaker stands.
type breakerState int

const (
	breakerClosed   breakerState = iota // sends flow
	breakerOpen                         // due jobs are parked until the cool-down ends
	breakerHalfOpen                     // one probe send decides
)

func (s breakerState) String() string {
	switch s {
	case breakerOpen:
		return "open"
	case breakerHalfOpen:
		return "half-open"
	}
	return "closed"
}

// breaker stops a lane from burning every job's attempts on a provider
// configuration error (bad key or certificate, wrong topic, FCM auth). It
// is guarded by the queue's mutex.
type breaker struct {
	state    breakerState
	fails    int // consecutive configuration errors
	until    time.Time
	cooldown time.Duration
	probing  bool
	reason   string
}

// admit says what the scheduler may do with the lane's next due job at
// now: park it until until (open), send it as the probe (half-open), hold
// it (a probe is out), or send it (closed: all zero).
func (b *breaker) admit(now time.Time) (until time.Time, probe, hold bool) {
	switch b.state {
	case breakerOpen:
		if now.Before(b.until) {
			return b.until, false, false
		}
		b.state, b.probing = breakerHalfOpen, false
		fallthrough
	case breakerHalfOpen:
		if b.probing {
			return time.Time{}, false, true
		}
		b.probing = true
		return time.Time{}, true, false
	}
	return time.Time{}, false, false
}

// answer is what a send told a lane's breaker.
type answer int

const (
	noAnswer  answer = iota // no provider answer (expired first, shutdown)
	answered                // an answer that is not a configuration error
	configErr               // a configuration error
)

// answerOf classifies a send's error for the breaker.
func answerOf(err error) (answer, string) {
	if o, _ := delivery.Classify(err); o != delivery.ConfigError {
		return answered, ""
	}
	var de *delivery.Error
	if errors.As(err, &de) && de.Reason != "" {
		return configErr, de.Provider + ": " + de.Reason
	}
	return configErr, err.Error()
}

// breakerResult feeds a send's answer to its lane's breaker: K consecutive
// configuration errors open it (one loud ERROR line, OnBreaker), a failed
// probe opens it again for twice as long (capped), and any other answer
// closes it.
func (q *Queue) breakerResult(l *lane, probe bool, a answer, reason string) {
	now := q.opts.Now()
	var changed, open bool
	q.mu.Lock()
	b := &l.br
	if probe {
		b.probing = false
	}
	switch a {
	case configErr:
		b.fails++
		b.reason = reason
		switch {
		case b.state == breakerHalfOpen && probe:
			b.cooldown = min(2*b.cooldown, q.opts.BreakerMaxCooldown)
			b.state, b.until = breakerOpen, now.Add(b.cooldown)
			q.log.Warn("provider configuration error persists: circuit breaker open again", "lane", l.key,
				"reason", reason, "retry_in", b.cooldown)
			changed, open = true, true
		case b.state == breakerClosed && b.fails >= q.opts.BreakerThreshold:
			b.cooldown = q.opts.BreakerCooldown
			b.state, b.until = breakerOpen, now.Add(b.cooldown)
			q.log.Error("PROVIDER CONFIGURATION ERROR: circuit breaker open; deliveries on this lane wait (no attempts spent) until a probe succeeds. Fix the app's key, certificate, topic or project.",
				"lane", l.key, "reason", reason, "consecutive_errors", b.fails, "retry_in", b.cooldown)
			changed, open = true, true
		}
	case answered:
		b.fails = 0
		if b.state != breakerClosed {
			q.log.Info("provider accepts the configuration again: circuit breaker closed", "lane", l.key)
			b.state, b.reason, b.cooldown, b.probing = breakerClosed, "", 0, false
			changed = true
		}
	}
	q.mu.Unlock()
	l.signal()
	if changed && q.opts.OnBreaker != nil {
		q.opts.OnBreaker(l.key, open, reason)
	}
}

// breakerUntil reports whether a lane's breaker is open, and until when.
func (q *Queue) breakerUntil(l *lane) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return l.br.until, l.br.state == breakerOpen
}
