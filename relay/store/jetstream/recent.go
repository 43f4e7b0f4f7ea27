package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/edgerelay/edgerelay/relay/store"
)

// RecentCounts is how many events of one type a user got over the last
// minute, ten minutes and hour (the plugins' user.recent, abi.Recent).
type RecentCounts = store.RecentCounts

func recentKey(ws, user string) string { return "rc." + tok(ws) + "." + tok(user) }

// RecordRecent counts one event of type typ for (ws, user) at t, in
// counters every relay shares (compare-and-set on the user's key; a
// flood of events for one user makes relays retry, not lose counts).
func (s *Store) RecordRecent(ctx context.Context, ws, user, typ string, t time.Time) error {
	_, err := s.countRecent(ctx, ws, user, typ, "", t, time.Now())
	return err
}

// CountRecent counts one event like RecordRecent and returns the counts
// as of t that its compare-and-set wrote (store.Recents).
func (s *Store) CountRecent(ctx context.Context, ws, user, typ, id string, t time.Time) (map[string]RecentCounts, error) {
	for _, f := range []struct{ name, v string }{{"workspace", ws}, {"user", user}, {"type", typ}} {
		if f.v == "" {
			return nil, fmt.Errorf("count recent: %s: must not be empty", f.name)
		}
	}
	return s.countRecent(ctx, ws, user, typ, id, t, t)
}

func (s *Store) countRecent(ctx context.Context, ws, user, typ, id string, t, now time.Time) (map[string]RecentCounts, error) {
	key := recentKey(ws, user)
	for attempt := range maxCAS {
		m := map[string]*store.RecentCounter{}
		rev, err := getJSON(ctx, s.recent, key, &m)
		if err != nil {
			return nil, fmt.Errorf("record recent of %s: %w", user, err)
		}
		store.RecentBump(m, typ, id, t, now)
		if _, err = putJSON(ctx, s.recent, key, rev, m); err == nil {
			return store.RecentAt(m, t), nil
		}
		if !isWrongLast(err) {
			return nil, fmt.Errorf("record recent of %s: %w", user, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("record recent of %s: %w", user, errTooManyConflicts)
}

// Recent returns the counts for every type (ws, user) had events of in
// the last hour, as of now; nil when there are none.
func (s *Store) Recent(ctx context.Context, ws, user string, now time.Time) (map[string]RecentCounts, error) {
	m := map[string]*store.RecentCounter{}
	if _, err := getJSON(ctx, s.recent, recentKey(ws, user), &m); err != nil {
		return nil, fmt.Errorf("recent of %s: %w", user, err)
	}
	return store.RecentAt(m, now), nil
}
