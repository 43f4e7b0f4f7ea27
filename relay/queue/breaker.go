package queue

import (
	"errors"
	"fmt"
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
	outages  int // consecutive retryable failures
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
	noAnswer    answer = iota // no provider answer (expired first, shutdown)
	answered                  // an answer that shows the provider works
	configErr                 // a configuration error
	unavailable               // a retryable failure (5xx, transport, quota)
)

// answerOf classifies a send's error for the breaker, with a short reason.
func answerOf(err error) (answer, string) {
	if err == nil {
		return answered, "" // and no errors.As target on the heap per send
	}
	o, _ := delivery.Classify(err)
	var de *delivery.Error
	isDE := errors.As(err, &de)
	reason := ""
	if err != nil {
		reason = err.Error()
		if isDE && de.Reason != "" {
			reason = de.Provider + ": " + de.Reason
		} else if isDE && de.Status != 0 {
			reason = fmt.Sprintf("%s: %d", de.Provider, de.Status)
		}
	}
	switch {
	case o == delivery.ConfigError:
		return configErr, reason
	case o == delivery.Retry && !(isDE && de.Provider == "apns" && de.Status == 429):
		// APNs 429 is about one device token, not the provider.
		return unavailable, reason
	}
	return answered, reason
}

// breakerResult feeds a send's answer to its lane's breaker.
//
//   - BreakerThreshold consecutive configuration errors open it, with one
//     loud ERROR line: the operator must fix the key, certificate, topic or
//     project.
//   - OutageThreshold consecutive retryable failures (the provider is down)
//     open it too, with a WARN line: parking the backlog until a probe
//     succeeds spares the provider, the disk and the CPU a retry storm.
//   - A failed probe opens it again for twice as long (capped); any answer
//     that shows the provider works closes it.
func (q *Queue) breakerResult(l *lane, probe bool, a answer, reason string) {
	now := q.opts.Now()
	var changed, open bool
	q.mu.Lock()
	b := &l.br
	if probe {
		b.probing = false
	}
	trip := func(why string) {
		b.cooldown = q.opts.BreakerCooldown
		b.state, b.until, b.reason = breakerOpen, now.Add(b.cooldown), why
		changed, open = true, true
	}
	if a == unavailable {
		reason = "provider unavailable: " + reason
	}
	switch a {
	case configErr, unavailable:
		if a == configErr {
			b.fails++
			b.outages = 0
		} else {
			b.outages++
			b.fails = 0
		}
		switch {
		case b.state == breakerHalfOpen && probe:
			b.cooldown = min(2*b.cooldown, q.opts.BreakerMaxCooldown)
			b.state, b.until, b.reason = breakerOpen, now.Add(b.cooldown), reason
			q.log.Warn("probe failed: circuit breaker open again", "lane", l.key, "reason", reason, "retry_in", b.cooldown)
			changed, open = true, true
		case b.state == breakerClosed && b.fails >= q.opts.BreakerThreshold:
			trip(reason)
			q.log.Error("PROVIDER CONFIGURATION ERROR: circuit breaker open; deliveries on this lane wait (no attempts spent) until a probe succeeds. Fix the app's key, certificate, topic or project.",
				"lane", l.key, "reason", reason, "consecutive_errors", b.fails, "retry_in", b.cooldown)
		case b.state == breakerClosed && b.outages >= q.opts.OutageThreshold:
			trip(reason)
			q.log.Warn("provider unavailable: circuit breaker open; deliveries on this lane wait on disk until a probe succeeds",
				"lane", l.key, "reason", reason, "consecutive_failures", b.outages, "retry_in", b.cooldown)
		}
	case answered:
		b.fails, b.outages = 0, 0
		if b.state != breakerClosed {
			q.log.Info("provider answers again: circuit breaker closed", "lane", l.key)
			b.state, b.reason, b.cooldown, b.probing = breakerClosed, "", 0, false
			changed = true
		}
	}
	why := b.reason
	q.mu.Unlock()
	l.signal()
	if changed && q.opts.OnBreaker != nil {
		q.opts.OnBreaker(l.key, open, why)
	}
}

// breakerUntil reports whether a lane's breaker is open, and until when.
func (q *Queue) breakerUntil(l *lane) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return l.br.until, l.br.state == breakerOpen
}
