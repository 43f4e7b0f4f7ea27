package bolt

import (
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// Stored reports, for each key, whether its event is stored, from one read
// transaction (store.EventLog).
func (s *Store) Stored(ctx context.Context, keys []relay.EventKey) ([]bool, error) {
	for _, key := range keys {
		if err := checkEventKey(key); err != nil {
			return nil, fmt.Errorf("stored events: %w", err)
		}
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, fmt.Errorf("stored events: %w", err)
	}
	defer leave()
	out := make([]bool, len(keys))
	err = s.db.View(func(tx *bbolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		for i, key := range keys {
			out[i] = events.Get(eventKey(key)) != nil
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stored events: %w", err)
	}
	return out, nil
}
