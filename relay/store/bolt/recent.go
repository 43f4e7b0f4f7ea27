package bolt

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay/store"
)

// recentCache holds users' user.recent counters once read from the file:
// the counts are answered from memory and written behind (writeLater), so
// counting an event costs no fsync of its own. The write is committed no
// later than the decision the count led to, which is queued after it: a
// crash loses only counts of undecided events, which are counted again
// when Recover decides them. Only this process writes the file, so memory
// is the truth. A user leaves the cache once all their counts are out of
// their windows (their last write is long committed).
type recentCache struct {
	mu    sync.Mutex
	users map[string]map[string]*store.RecentCounter // by joinKey(ws, user)
	calls int                                        // since the last sweep
}

// recentSweepEvery is how many counts pass between sweeps of the cache.
const recentSweepEvery = 4096

// CountRecent counts one event of type typ for (ws, user) at t and returns
// the user's counts as of t (store.Recents). The counters are in the file,
// so they survive a restart.
func (s *Store) CountRecent(ctx context.Context, ws, user, typ, id string, t time.Time) (map[string]store.RecentCounts, error) {
	if err := checkUserKey(ws, user); err != nil {
		return nil, fmt.Errorf("count recent: %w", err)
	}
	if typ == "" {
		return nil, fmt.Errorf("count recent %s/%s: type: must not be empty", ws, user)
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("count recent %s/%s: %w", ws, user, err)
	}
	defer leave()
	key := joinKey(ws, user)
	c := &s.recent
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.users[string(key)]
	if !ok {
		m = map[string]*store.RecentCounter{}
		if err := s.getMap(ctx, bucketRecent, key, &m); err != nil {
			return nil, fmt.Errorf("count recent %s/%s: %w", ws, user, err)
		}
		if c.users == nil {
			c.users = make(map[string]map[string]*store.RecentCounter)
		}
		c.users[string(key)] = m
	}
	store.RecentBump(m, typ, id, t, t)
	raw := store.AppendRecentJSON(nil, m)
	s.writeLater(func(tx *bbolt.Tx) error { return tx.Bucket(bucketRecent).Put(key, raw) })
	if c.calls++; c.calls >= recentSweepEvery {
		c.calls = 0
		for k, um := range c.users {
			if store.RecentAt(um, t) == nil {
				delete(c.users, k)
			}
		}
	}
	return store.RecentAt(m, t), nil
}

// forgetRecent drops the cached counters of a workspace's users (user
// empty) or of one user. The caller holds s.recent.mu.
func (s *Store) forgetRecent(workspace, user string) {
	if user != "" {
		delete(s.recent.users, string(joinKey(workspace, user)))
		return
	}
	prefix := string(prefixKey(workspace))
	for k := range s.recent.users {
		if strings.HasPrefix(k, prefix) {
			delete(s.recent.users, k)
		}
	}
}

// Recent returns the counts for every type (ws, user) had events of in the
// last hour, as of now; nil when there are none.
func (s *Store) Recent(ctx context.Context, ws, user string, now time.Time) (map[string]store.RecentCounts, error) {
	if err := checkUserKey(ws, user); err != nil {
		return nil, fmt.Errorf("recent: %w", err)
	}
	s.recent.mu.Lock()
	defer s.recent.mu.Unlock()
	if m, ok := s.recent.users[string(joinKey(ws, user))]; ok {
		return store.RecentAt(m, now), nil
	}
	m := map[string]*store.RecentCounter{}
	if err := s.getMap(ctx, bucketRecent, joinKey(ws, user), &m); err != nil {
		return nil, fmt.Errorf("recent %s/%s: %w", ws, user, err)
	}
	return store.RecentAt(m, now), nil
}
