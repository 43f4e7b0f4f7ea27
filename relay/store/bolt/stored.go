package bolt

import (
	"bytes"
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
		// One cursor for all: a Get makes a cursor (and its stack) each.
		c := tx.Bucket(bucketEvents).Cursor()
		for i, key := range keys {
			ek := eventKey(key)
			k, _ := c.Seek(ek)
			out[i] = bytes.Equal(k, ek)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stored events: %w", err)
	}
	return out, nil
}
