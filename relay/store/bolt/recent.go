package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/edgerelay/edgerelay/relay/store"
)

// CountRecent counts one event of type typ for (ws, user) at t and returns
// the user's counts as of t from the same write (store.Recents). The
// counters are in the file, so they survive a restart.
func (s *Store) CountRecent(ctx context.Context, ws, user, typ string, t time.Time) (map[string]store.RecentCounts, error) {
	if err := checkUserKey(ws, user); err != nil {
		return nil, fmt.Errorf("count recent: %w", err)
	}
	if typ == "" {
		return nil, fmt.Errorf("count recent %s/%s: type: must not be empty", ws, user)
	}
	var out map[string]store.RecentCounts
	err := s.mergeMap(ctx, bucketRecent, joinKey(ws, user), func(raw []byte) ([]byte, error) {
		m := map[string]*store.RecentCounter{}
		if raw != nil {
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, err
			}
		}
		store.RecentBump(m, typ, t, t)
		// The batch may run this more than once; the run that commits
		// sets out last.
		out = store.RecentAt(m, t)
		return json.Marshal(m)
	}, 1)
	if err != nil {
		return nil, fmt.Errorf("count recent %s/%s: %w", ws, user, err)
	}
	return out, nil
}

// Recent returns the counts for every type (ws, user) had events of in the
// last hour, as of now; nil when there are none.
func (s *Store) Recent(ctx context.Context, ws, user string, now time.Time) (map[string]store.RecentCounts, error) {
	if err := checkUserKey(ws, user); err != nil {
		return nil, fmt.Errorf("recent: %w", err)
	}
	m := map[string]*store.RecentCounter{}
	if err := s.getMap(ctx, bucketRecent, joinKey(ws, user), &m); err != nil {
		return nil, fmt.Errorf("recent %s/%s: %w", ws, user, err)
	}
	return store.RecentAt(m, now), nil
}
