package relaytest

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Action is something a scripted rule does to the connection instead of
// answering.
type Action int

// Actions.
const (
	// ActionNone answers normally.
	ActionNone Action = iota
	// ActionCloseConn closes the TCP connection the request came on,
	// failing every stream on it.
	ActionCloseConn
	// ActionResetStream resets the request's HTTP/2 stream (RST_STREAM).
	ActionResetStream
)

// Rule scripts the fake's answer to matching requests. Rules run after the
// fake's validation, so a malformed request is rejected the way the real
// service would reject it whatever the script says.
type Rule struct {
	// Status is the HTTP status to answer. Zero with a Reason derives the
	// status from the reason (FakeAPNs: Apple's reason table; FakeFCM: the
	// FcmError code). Zero without a Reason answers success, after Latency.
	Status int
	// Reason is the APNs reason (e.g. "TooManyRequests") or the FCM error
	// code (e.g. "QUOTA_EXCEEDED").
	Reason string
	// RetryAfter, when set, is sent as the Retry-After header (seconds or
	// an HTTP date).
	RetryAfter string
	// Timestamp is the APNs 410 "timestamp" (zero: the time of the request).
	Timestamp time.Time
	// Latency delays the answer (the request's context still ends it).
	Latency time.Duration
	// Times limits the rule to the next Times matching requests ("fail next
	// N"); zero applies it to every matching request.
	Times int
	// Probability, in (0,1), applies the rule to each matching request with
	// that chance, drawn from the fake's seeded random source. Zero or one
	// applies it always.
	Probability float64
	// Action, when not ActionNone, breaks the connection or stream instead
	// of answering.
	Action Action
	// Body, when set, is sent verbatim instead of the provider's JSON error
	// body (e.g. an HTML page from a proxy).
	Body string
}

type ruleState struct {
	Rule
	left int
}

// script holds the rules of one fake.
type script struct {
	mu     sync.Mutex
	rng    *rand.Rand
	tokens map[string][]*ruleState
	global []*ruleState
}

func newScript(seed uint64) *script {
	return &script{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), tokens: map[string][]*ruleState{}}
}

func (s *script) add(token string, r Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := &ruleState{Rule: r, left: r.Times}
	if token == "" {
		s.global = append(s.global, rs)
		return
	}
	s.tokens[token] = append(s.tokens[token], rs)
}

func (s *script) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string][]*ruleState{}
	s.global = nil
}

// match returns the first applicable rule for token: per-token rules first,
// then global ones.
func (s *script) match(token string) (Rule, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.pick(s.tokens[token], func(l []*ruleState) { s.tokens[token] = l }); ok {
		return r, true
	}
	return s.pick(s.global, func(l []*ruleState) { s.global = l })
}

func (s *script) pick(list []*ruleState, set func([]*ruleState)) (Rule, bool) {
	for i, rs := range list {
		if p := rs.Probability; p > 0 && p < 1 && s.rng.Float64() >= p {
			continue
		}
		if rs.Times > 0 {
			rs.left--
			if rs.left <= 0 {
				set(append(list[:i:i], list[i+1:]...))
			}
		}
		return rs.Rule, true
	}
	return Rule{}, false
}
