package relaytest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Push is one request a fake received on its push endpoint, and its answer.
type Push struct {
	Provider string      // "apns" or "fcm"
	Time     time.Time   // when it arrived
	Token    string      // the device token (APNs path, FCM message.token)
	Header   http.Header // request headers
	Body     []byte      // raw request body
	// Payload is the parsed JSON: for APNs the whole body, for FCM the
	// "message" object. Nil when the body was not a JSON object.
	Payload map[string]any
	Status  int    // the status the fake answered
	Reason  string // the APNs reason or FCM error code answered, if any
}

// Title returns the visible title: APNs aps.alert.title; FCM
// notification.title, android.notification.title or data.title.
func (p *Push) Title() string { return p.field("title") }

// BodyText returns the visible body, found like Title.
func (p *Push) BodyText() string { return p.field("body") }

// Category returns the APNs aps.category or the FCM data.category /
// android.notification.click_action.
func (p *Push) Category() string {
	if p.Provider == "apns" {
		return str(dig(p.Payload, "aps", "category"))
	}
	if c := str(dig(p.Payload, "data", "category")); c != "" {
		return c
	}
	return str(dig(p.Payload, "android", "notification", "click_action"))
}

// CollapseID returns the apns-collapse-id header or the FCM
// android.collapse_key.
func (p *Push) CollapseID() string {
	if p.Provider == "apns" {
		return p.Header.Get("apns-collapse-id")
	}
	return str(dig(p.Payload, "android", "collapse_key"))
}

// Priority returns the apns-priority header or the FCM android.priority.
func (p *Push) Priority() string {
	if p.Provider == "apns" {
		return p.Header.Get("apns-priority")
	}
	return str(dig(p.Payload, "android", "priority"))
}

// PushType returns the apns-push-type header, or for FCM "notification"
// when the message has a notification block and "data" otherwise.
func (p *Push) PushType() string {
	if p.Provider == "apns" {
		return p.Header.Get("apns-push-type")
	}
	if dig(p.Payload, "notification") != nil || dig(p.Payload, "android", "notification") != nil {
		return "notification"
	}
	return "data"
}

// Data returns FCM message.data, or the APNs payload's keys other than "aps"
// rendered as strings.
func (p *Push) Data() map[string]string {
	out := map[string]string{}
	if p.Provider == "fcm" {
		m, _ := dig(p.Payload, "data").(map[string]any)
		for k, v := range m {
			out[k] = str(v)
		}
		return out
	}
	for k, v := range p.Payload {
		if k != "aps" {
			if s, ok := v.(string); ok {
				out[k] = s
			} else {
				out[k] = fmt.Sprint(v)
			}
		}
	}
	return out
}

func (p *Push) field(name string) string {
	if p.Provider == "apns" {
		return str(dig(p.Payload, "aps", "alert", name))
	}
	for _, path := range [][]string{{"notification", name}, {"android", "notification", name}, {"data", name}} {
		if s := str(dig(p.Payload, path...)); s != "" {
			return s
		}
	}
	return ""
}

// String renders the push as one readable line, e.g.
//
//	apns 200 token=1f2e3d4c… type=alert prio=10 collapse="evt-1" category="APPROVE_DENY" title="Sign-in" body="Approve?"
func (p *Push) String() string {
	var b strings.Builder
	b.WriteString(p.Provider)
	b.WriteString(" ")
	b.WriteString(strconv.Itoa(p.Status))
	if p.Reason != "" {
		b.WriteString(" ")
		b.WriteString(p.Reason)
	}
	tok := p.Token
	if len(tok) > 8 {
		tok = tok[:8] + "…"
	}
	fmt.Fprintf(&b, " token=%s type=%s prio=%s", tok, p.PushType(), p.Priority())
	for _, kv := range [][2]string{{"collapse", p.CollapseID()}, {"category", p.Category()}, {"title", p.Title()}, {"body", p.BodyText()}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%q", kv[0], kv[1])
		}
	}
	return b.String()
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// DefaultMaxRecorded is how many pushes a fake keeps when
// ServerOptions.MaxRecorded is 0.
const DefaultMaxRecorded = 10_000

// recorder keeps the latest pushes a fake received and wakes waiters.
type recorder struct {
	mu      sync.Mutex
	pushes  []Push
	total   int // pushes since start or the last reset
	max     int
	changed chan struct{}
	onPush  func(Push)

	requests atomic.Int64
	conns    atomic.Int64
	holding  atomic.Int64 // requests a rule's latency holds now
	// abandoned: requests whose client went away while a rule's latency
	// held them (never answered, not in pushes).
	abandoned []Push
}

// abandon records a request whose client went away before the answer.
func (r *recorder) abandon(p Push) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.abandoned) < r.max {
		r.abandoned = append(r.abandoned, p)
	}
}

// Abandoned returns the requests whose client went away while the fake
// held them (a rule's Latency): sends cut by a crash or a timeout.
func (r *recorder) Abandoned() []Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.abandoned)
}

func newRecorder(max int, onPush func(Push)) *recorder {
	if max <= 0 {
		max = DefaultMaxRecorded
	}
	return &recorder{changed: make(chan struct{}), onPush: onPush, max: max}
}

func (r *recorder) add(p Push) {
	r.mu.Lock()
	if len(r.pushes) >= r.max {
		n := copy(r.pushes, r.pushes[len(r.pushes)-r.max/2:])
		clear(r.pushes[n:])
		r.pushes = r.pushes[:n]
	}
	r.pushes = append(r.pushes, p)
	r.total++
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	if r.onPush != nil {
		r.onPush(p)
	}
}

func (r *recorder) all() []Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Push(nil), r.pushes...)
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes = nil
	r.total = 0
}

// wait blocks until at least n pushes were recorded since start or the last
// reset, or ctx ends; it returns the pushes kept.
func (r *recorder) wait(ctx context.Context, n int) ([]Push, error) {
	for {
		r.mu.Lock()
		if r.total >= n {
			out := append([]Push(nil), r.pushes...)
			r.mu.Unlock()
			return out, nil
		}
		ch, have := r.changed, r.total
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for %d pushes (have %d): %w", n, have, ctx.Err())
		}
	}
}
