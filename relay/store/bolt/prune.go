package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// pruneEventsChunk is how many events one prune step reads and deletes; each step
// is its own short transaction, so pruning never holds up deliveries for
// long.
const pruneEventsChunk = 512

// PruneEvents deletes events that expired before `before` and are
// finished — decided, with no open job — together with their decision and
// finished jobs, so the file stops growing. Once an event's record is gone
// its (workspace, id) may be accepted again: the idempotency window is the
// retention. The event's first answer (the answers bucket) goes with it;
// the answer log and dead letters have their own retention. It returns
// how many events it removed.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer leave()
	total := 0
	var after []byte // last key read
	for {
		if err := s.stopped(ctx); err != nil {
			return total, err
		}
		var keys [][]byte
		var last []byte
		err := s.db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for n := 0; k != nil && n < pruneEventsChunk; k, v = c.Next() {
				n++
				last = bytes.Clone(k)
				ev, err := decodeEvent(v)
				if err != nil {
					continue // never delete what cannot be read
				}
				if exp := ev.Event.ExpiresAt; !exp.IsZero() && exp.Before(before) {
					keys = append(keys, bytes.Clone(k))
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune events: %w", err)
		}
		if len(keys) > 0 {
			var removed int
			err := s.write(func(tx *bbolt.Tx) error {
				removed = 0 // Batch may run fn again
				events, decisions := tx.Bucket(bucketEvents), tx.Bucket(bucketDecisions)
				jobs := tx.Bucket(bucketJobs)
				answers := tx.Bucket(bucketAnswers) // nil until the first answer
				for _, k := range keys {
					ev := events.Get(k)
					if ev == nil {
						continue
					}
					if d, err := decisionOf(tx, k, ev); err != nil || d == nil {
						continue // not decided yet, or unreadable
					}
					separate := ev[0] != eventFormat // its decision in the decisions bucket
					prefix := append(bytes.Clone(k), sep)
					if hasOpenJob(jobs, prefix) {
						continue
					}
					if err := deletePrefix(jobs, prefix); err != nil {
						return err
					}
					if separate {
						if err := decisions.Delete(k); err != nil {
							return err
						}
					}
					if err := events.Delete(k); err != nil {
						return err
					}
					// The first answer goes with its event: a reused id
					// can be answered again.
					if answers != nil {
						if err := answers.Delete(k); err != nil {
							return err
						}
					}
					removed++
				}
				return nil
			})
			if err != nil {
				return total, fmt.Errorf("prune events: %w", err)
			}
			total += removed
		}
		if last == nil {
			return total, nil
		}
		after = last
	}
}

// pruneLog deletes the entries of a log bucket (keyed by sequence number,
// written in time order) whose time, read by timeOf, is before before:
// from the oldest, in chunks of pruneChunk per transaction, stopping at
// the first newer entry. what names the log in errors.
func (s *Store) pruneLog(ctx context.Context, bucket []byte, what string, before time.Time, timeOf func(v []byte) (time.Time, error)) (int, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", what, err)
	}
	defer leave()
	total := 0
	for {
		if err := s.stopped(ctx); err != nil {
			return total, fmt.Errorf("prune %s: %w", what, err)
		}
		var n int
		var more bool
		err := s.write(func(tx *bbolt.Tx) error {
			n, more = 0, false
			b := tx.Bucket(bucket)
			if b == nil {
				return nil
			}
			var drop [][]byte
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(drop) == pruneChunk {
					more = true
					break
				}
				t, err := timeOf(v)
				if err != nil {
					return fmt.Errorf("decode %s entry %d: %w", what, binary.BigEndian.Uint64(k), err)
				}
				if !t.Before(before) {
					break
				}
				drop = append(drop, bytes.Clone(k))
			}
			for _, k := range drop {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n = len(drop)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", what, err)
		}
		total += n
		if !more {
			return total, nil
		}
	}
}
