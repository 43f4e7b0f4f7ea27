package jetstream

import (
	"context"
	"fmt"
	"time"
)

// RecentCounts is how many events of one type a user got over the last
// minute, ten minutes and hour (the plugins' user.recent, abi.Recent).
type RecentCounts struct {
	M1, M10, H1 int
}

// recentCounter is one type's counts: 10-second buckets for the minute,
// minute buckets for the hour, as policy.Recent keeps them in memory
// (a count may include up to one bucket's worth of older events). Only
// buckets still inside their window are kept.
type recentCounter struct {
	Tens [][2]int64 `json:"s,omitempty"` // 10-second period, count
	Mins [][2]int64 `json:"m,omitempty"` // unix minute, count
}

func recentKey(ws, user string) string { return "rc." + tok(ws) + "." + tok(user) }

// RecordRecent counts one event of type typ for (ws, user) at t, in
// counters every relay shares (compare-and-set on the user's key; a
// flood of events for one user makes relays retry, not lose counts).
func (s *Store) RecordRecent(ctx context.Context, ws, user, typ string, t time.Time) error {
	key := recentKey(ws, user)
	sec := t.Unix()
	ten, minute := floorDiv(sec, 10), floorDiv(sec, 60)
	for attempt := range maxCAS {
		m := map[string]*recentCounter{}
		rev, err := getJSON(ctx, s.recent, key, &m)
		if err != nil {
			return fmt.Errorf("record recent of %s: %w", user, err)
		}
		now := time.Now().Unix()
		nowTen, nowMin := max(floorDiv(now, 10), ten), max(floorDiv(now, 60), minute)
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
			c = &recentCounter{}
			m[typ] = c
		}
		if ten > nowTen-6 {
			c.Tens = bump(c.Tens, ten)
		}
		if minute > nowMin-60 {
			c.Mins = bump(c.Mins, minute)
		}
		if _, err = putJSON(ctx, s.recent, key, rev, m); err == nil {
			return nil
		}
		if !isWrongLast(err) {
			return fmt.Errorf("record recent of %s: %w", user, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return fmt.Errorf("record recent of %s: %w", user, errTooManyConflicts)
}

// Recent returns the counts for every type (ws, user) had events of in
// the last hour, as of now; nil when there are none.
func (s *Store) Recent(ctx context.Context, ws, user string, now time.Time) (map[string]RecentCounts, error) {
	m := map[string]*recentCounter{}
	if _, err := getJSON(ctx, s.recent, recentKey(ws, user), &m); err != nil {
		return nil, fmt.Errorf("recent of %s: %w", user, err)
	}
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
	return out, nil
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
