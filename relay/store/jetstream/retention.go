package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// PruneDeadLetters implements store.Schedule.
func (s *Store) PruneDeadLetters(ctx context.Context, before time.Time) (int, error) {
	var old []string
	err := scanBucket(ctx, s.eventsStr, "dl.*", func(key string, val []byte) error {
		var dl store.DeadLetter
		if json.Unmarshal(val, &dl) == nil && dl.FailedAt.Before(before) {
			old = append(old, key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune dead letters: %w", err)
	}
	if err := purgeKeys(ctx, s.eventsStr, old...); err != nil {
		return 0, fmt.Errorf("prune dead letters: %w", err)
	}
	return len(old), nil
}

// PruneDevices implements store.Directory: each old device is removed with
// a compare-and-set (a device registered again meanwhile stays), with its
// token index entry and roster place.
func (s *Store) PruneDevices(ctx context.Context, before time.Time) (int, error) {
	var old []relay.Device
	err := scanBucket(ctx, s.dirStr, "dev.>", func(key string, val []byte) error {
		var d relay.Device
		if json.Unmarshal(val, &d) == nil && d.UpdatedAt.Before(before) {
			old = append(old, d)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune devices: %w", err)
	}
	n := 0
	for _, d := range old {
		ok, err := s.removeDevice(ctx, d.Workspace, d.User, d.ID, func(cur relay.Device) bool { return cur.UpdatedAt.Before(before) })
		if err != nil && !errors.Is(err, relay.ErrNotFound) {
			return n, fmt.Errorf("prune devices: %w", err)
		}
		if ok {
			n++
		}
	}
	return n, nil
}
