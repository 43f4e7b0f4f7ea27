package store

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/edgerelay/edgerelay/relay/jsonstr"
)

// Recents keeps the counts plugins see as user.recent: how many events of
// each type a user's decisions counted over the last minute, ten minutes
// and hour. They live in the store so that they survive a restart and, on
// a shared backend, every relay counts into the same numbers (a load
// balancer cannot split the push-bombing guard's count).
type Recents interface {
	// CountRecent counts one event of type typ for (ws, user) at t and
	// returns, from the same atomic write, the user's counts for every type
	// as of t, this event included. Two calls for one user, from any
	// relays, never return the same count for a type in the same bucket
	// window: each sees the other's event or is seen by it. id is the
	// event's id: the same event counted again right after (a decision
	// judged again because its write failed) is not counted twice.
	CountRecent(ctx context.Context, ws, user, typ, id string, t time.Time) (map[string]RecentCounts, error)
	// Recent returns the counts for every type (ws, user) had events of in
	// the last hour, as of now, without counting; nil when there are none.
	Recent(ctx context.Context, ws, user string, now time.Time) (map[string]RecentCounts, error)
}

// RecentCounts is how many events of one type a user got over the last
// minute, ten minutes and hour (abi.Recent).
type RecentCounts struct {
	M1, M10, H1 int
}

// RecentCounter is one type's counts as backends keep them: 10-second
// buckets for the minute, minute buckets for the hour (a count may include
// up to one bucket's worth of older events). Only buckets still inside
// their window are kept, so a value stays small (at most 66 buckets).
type RecentCounter struct {
	Tens [][2]int64 `json:"s,omitempty"` // 10-second period, count
	Mins [][2]int64 `json:"m,omitempty"` // unix minute, count
	// Last is the id of the last event counted, so a count repeated for
	// it is not counted again (a user's events are counted in order, one
	// at a time, so a repeat comes before the next event).
	Last string `json:"l,omitempty"`
}

// RecentBump counts one event of type typ at t into m (a user's counters
// by type), first dropping every bucket that fell out of its window as of
// now (or t, if later). Events more than a window before now are not
// counted in that window. An event whose id (when not empty) is the last
// one counted for typ is not counted again.
func RecentBump(m map[string]*RecentCounter, typ, id string, t, now time.Time) {
	sec := t.Unix()
	ten, minute := floorDiv(sec, 10), floorDiv(sec, 60)
	nowTen, nowMin := max(floorDiv(now.Unix(), 10), ten), max(floorDiv(now.Unix(), 60), minute)
	for typ, c := range m {
		if c == nil {
			delete(m, typ)
			continue
		}
		c.Tens = keepSince(c.Tens, nowTen-5)
		c.Mins = keepSince(c.Mins, nowMin-59)
		if len(c.Tens) == 0 && len(c.Mins) == 0 {
			delete(m, typ)
		}
	}
	c := m[typ]
	if c == nil {
		c = &RecentCounter{}
		m[typ] = c
	}
	if id != "" && c.Last == id {
		return
	}
	c.Last = id
	if ten > nowTen-6 {
		c.Tens = bump(c.Tens, ten)
	}
	if minute > nowMin-60 {
		c.Mins = bump(c.Mins, minute)
	}
}

// RecentAt returns the counts of m as of now; nil when there are none.
func RecentAt(m map[string]*RecentCounter, now time.Time) map[string]RecentCounts {
	sec := now.Unix()
	ten, minute := floorDiv(sec, 10), floorDiv(sec, 60)
	var out map[string]RecentCounts
	for typ, c := range m {
		if c == nil {
			continue
		}
		var rc RecentCounts
		for _, b := range c.Tens {
			if d := ten - b[0]; d >= 0 && d < 6 {
				rc.M1 += int(b[1])
			}
		}
		for _, b := range c.Mins {
			d := minute - b[0]
			if d < 0 || d >= 60 {
				continue
			}
			rc.H1 += int(b[1])
			if d < 10 {
				rc.M10 += int(b[1])
			}
		}
		if rc.H1 > 0 || rc.M1 > 0 {
			if out == nil {
				out = map[string]RecentCounts{}
			}
			out[typ] = rc
		}
	}
	return out
}

// bump adds one to the bucket of period p.
func bump(bs [][2]int64, p int64) [][2]int64 {
	for i := range bs {
		if bs[i][0] == p {
			bs[i][1]++
			return bs
		}
	}
	return append(bs, [2]int64{p, 1})
}

// keepSince drops buckets of periods before p.
func keepSince(bs [][2]int64, p int64) [][2]int64 {
	out := bs[:0]
	for _, b := range bs {
		if b[0] >= p {
			out = append(out, b)
		}
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// AppendRecentJSON appends m as json.Marshal encodes it (keys sorted,
// empty fields left out), without reflection: a user's counters are
// encoded on every count (bolt writes them behind), which with
// encoding/json cost more than the count itself.
func AppendRecentJSON(dst []byte, m map[string]*RecentCounter) []byte {
	if m == nil {
		return append(dst, "null"...)
	}
	var small [8]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonstr.Append(dst, k)
		dst = append(dst, ':')
		c := m[k]
		if c == nil {
			dst = append(dst, "null"...)
			continue
		}
		dst = append(dst, '{')
		sep := false
		for _, f := range [...]struct {
			name string
			bs   [][2]int64
		}{{`"s":`, c.Tens}, {`"m":`, c.Mins}} {
			if len(f.bs) == 0 {
				continue
			}
			if sep {
				dst = append(dst, ',')
			}
			sep = true
			dst = append(dst, f.name...)
			dst = append(dst, '[')
			for j, b := range f.bs {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, '[')
				dst = strconv.AppendInt(dst, b[0], 10)
				dst = append(dst, ',')
				dst = strconv.AppendInt(dst, b[1], 10)
				dst = append(dst, ']')
			}
			dst = append(dst, ']')
		}
		if c.Last != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"l":`...)
			dst = jsonstr.Append(dst, c.Last)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}
