package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// PruneDeadLetters implements store.Schedule: dead letters that failed
// before before are deleted.
func (s *Store) PruneDeadLetters(ctx context.Context, before time.Time) (int, error) {
	return s.pruneWhere(ctx, bucketDeadLetters, "dead letters", func(v []byte) (bool, error) {
		var dl store.DeadLetter
		if err := json.Unmarshal(v, &dl); err != nil {
			return false, err
		}
		return dl.FailedAt.Before(before), nil
	}, nil)
}

// PruneDevices implements store.Directory: devices last registered before
// before are deleted.
func (s *Store) PruneDevices(ctx context.Context, before time.Time) (int, error) {
	defer s.devices.reset()
	return s.pruneWhere(ctx, bucketDevices, "devices", func(v []byte) (bool, error) {
		var d relay.Device
		if err := json.Unmarshal(v, &d); err != nil {
			return false, err
		}
		return d.UpdatedAt.Before(before), nil
	}, deleteDeviceKey)
}

// pruneWhere deletes the entries of bucket for which old says so: read in
// a read transaction, then deleted in chunks of short writes that check
// each value again (it may have been written meanwhile). An entry that
// cannot be decoded is kept. del, when set, deletes an entry (and what is
// derived from it: the devices' token index).
func (s *Store) pruneWhere(ctx context.Context, bucket []byte, what string, old func(v []byte) (bool, error), del func(tx *bbolt.Tx, k []byte) (bool, error)) (int, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", what, err)
	}
	defer leave()
	var keys [][]byte
	err = s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if ok, err := old(v); err == nil && ok {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", what, err)
	}
	n := 0
	for len(keys) > 0 {
		if err := s.stopped(ctx); err != nil {
			return n, err
		}
		chunk := keys[:min(len(keys), pruneChunk)]
		keys = keys[len(chunk):]
		var removed int
		err := s.write(func(tx *bbolt.Tx) error {
			removed = 0
			b := tx.Bucket(bucket)
			for _, k := range chunk {
				v := b.Get(k)
				if v == nil {
					continue
				}
				if ok, err := old(v); err != nil || !ok {
					continue
				}
				if del != nil {
					if _, err := del(tx, k); err != nil {
						return err
					}
				} else if err := b.Delete(k); err != nil {
					return err
				}
				removed++
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("prune %s: %w", what, err)
		}
		n += removed
	}
	return n, nil
}
