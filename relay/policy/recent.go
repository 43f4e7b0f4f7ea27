package policy

import (
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// RecentSource supplies the user.recent counts of a plugin's input.
type RecentSource interface {
	// Lookup returns the counts for every type (ws, user) had events of in
	// the last hour, as of now; nil when there are none.
	Lookup(ws, user string, now time.Time) map[string]abi.Recent
}

// Recent counts accepted events per (workspace, user, type) over the last
// minute, ten minutes and hour, for the "user.recent" input. The minute
// counts use six 10-second buckets; the 10-minute and hour counts use a
// ring of 60 minute buckets, so a count may include up to one bucket's
// worth of events older than the window. Memory is about 600 bytes per
// active (user, type); entries idle for an hour are dropped.
//
// # Notes
//
//   - Recent is safe for concurrent use.
type Recent struct {
	mu        sync.Mutex
	users     map[userKey]map[string]*counter
	lastSweep int64 // unix minute of the last sweep
}

type userKey struct{ ws, user string }

type counter struct {
	secs    [6]uint32 // 10-second buckets
	secIdx  [6]int64  // which 10-second period each holds
	mins    [60]uint32
	minIdx  [60]int64 // which unix minute each holds
	lastMin int64
}

// NewRecent returns empty counters.
func NewRecent() *Recent {
	return &Recent{users: make(map[userKey]map[string]*counter)}
}

// Record counts one event of type typ for (ws, user) at t.
func (r *Recent) Record(ws, user, typ string, t time.Time) {
	sec := t.Unix()
	ten, min := floorDiv(sec, 10), floorDiv(sec, 60)
	r.mu.Lock()
	defer r.mu.Unlock()
	if min > r.lastSweep {
		r.sweep(min)
	}
	k := userKey{ws, user}
	types := r.users[k]
	if types == nil {
		types = make(map[string]*counter, 1)
		r.users[k] = types
	}
	c := types[typ]
	if c == nil {
		c = &counter{}
		types[typ] = c
	}
	// A bucket already holding a later period keeps it: an event recorded
	// out of order and more than a window late is not counted there.
	if i := int(ten % 6); c.secIdx[i] <= ten {
		if c.secIdx[i] != ten {
			c.secIdx[i], c.secs[i] = ten, 0
		}
		c.secs[i]++
	}
	if j := int(min % 60); c.minIdx[j] <= min {
		if c.minIdx[j] != min {
			c.minIdx[j], c.mins[j] = min, 0
		}
		c.mins[j]++
	}
	if min > c.lastMin {
		c.lastMin = min
	}
}

// Lookup returns the counts for every type (ws, user) had events of in the
// last hour, as of now. It returns nil when there are none.
func (r *Recent) Lookup(ws, user string, now time.Time) map[string]abi.Recent {
	sec := now.Unix()
	ten, min := floorDiv(sec, 10), floorDiv(sec, 60)
	r.mu.Lock()
	defer r.mu.Unlock()
	types := r.users[userKey{ws, user}]
	if len(types) == 0 {
		return nil
	}
	out := make(map[string]abi.Recent, len(types))
	for typ, c := range types {
		var rc abi.Recent
		for i := range c.secs {
			if d := ten - c.secIdx[i]; d >= 0 && d < 6 {
				rc.M1 += int(c.secs[i])
			}
		}
		for j := range c.mins {
			d := min - c.minIdx[j]
			if d < 0 || d >= 60 {
				continue
			}
			rc.H1 += int(c.mins[j])
			if d < 10 {
				rc.M10 += int(c.mins[j])
			}
		}
		if rc.H1 > 0 || rc.M1 > 0 {
			out[typ] = rc
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// sweep drops counters idle for over an hour. Caller holds mu.
func (r *Recent) sweep(min int64) {
	r.lastSweep = min
	for k, types := range r.users {
		for typ, c := range types {
			if min-c.lastMin >= 60 {
				delete(types, typ)
			}
		}
		if len(types) == 0 {
			delete(r.users, k)
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
