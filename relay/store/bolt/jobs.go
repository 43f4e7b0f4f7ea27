package bolt

import (
	"bytes"
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// UpdateJobs stores new states of existing jobs, matched by event and device
// id, in one group commit. A job moves between the open and done buckets as
// its state becomes final (or, replayed, open again). Jobs that do not exist
// (unknown event or device) are ignored. An invalid key fails the whole
// call before anything is written.
func (s *Store) UpdateJobs(ctx context.Context, jobs []relay.Job) error {
	keys := make([][]byte, len(jobs))
	values := make([][]byte, len(jobs))
	for i := range jobs {
		j := &jobs[i]
		if err := checkEventKey(j.Event); err != nil {
			return fmt.Errorf("update jobs: job %d: %w", i, err)
		}
		if err := checkPart("device_id", j.DeviceID); err != nil {
			return fmt.Errorf("update jobs: job %d: %w", i, err)
		}
		keys[i], values[i] = jobKey(j.Event, j.DeviceID), encodeJob(j)
	}
	if len(jobs) == 0 {
		return nil
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return fmt.Errorf("update jobs: %w", err)
	}
	defer leave()

	err = s.write(func(tx *bbolt.Tx) error {
		for i, k := range keys {
			if _, err := updateJob(tx, k, values[i], &jobs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update jobs: %w", err)
	}
	return nil
}

// updateJob stores value v of job j under key k, moving it between the open
// and done buckets as its state says and keeping the due index in step. It
// reports false, writing nothing, for an unknown job.
func updateJob(tx *bbolt.Tx, k, v []byte, j *relay.Job) (bool, error) {
	open, done := tx.Bucket(bucketJobsOpen), tx.Bucket(bucketJobsDone)
	var from *bbolt.Bucket
	if old := open.Get(k); old != nil {
		from = open
		if err := deleteDue(tx, k, old); err != nil {
			return false, err
		}
	} else if done.Get(k) != nil {
		from = done
	} else {
		return false, nil // unknown job
	}
	to := open
	if j.State.Final() {
		to = done
	}
	if from != to {
		if err := from.Delete(k); err != nil {
			return false, fmt.Errorf("delete job: %w", err)
		}
	}
	if err := to.Put(k, v); err != nil {
		return false, fmt.Errorf("put job: %w", err)
	}
	if to == open {
		if err := putDue(tx, k, j); err != nil {
			return false, err
		}
	}
	return true, nil
}

// OpenJobs calls fn for every job in a pending or deferred state, in key
// order (workspace, event id, device id). It reads only open jobs, in
// chunks, and calls fn outside any transaction, so fn may call UpdateJobs.
// It stops at fn's first error (returned as is), when ctx is done, or with
// relay.ErrClosed when the store closes.
func (s *Store) OpenJobs(ctx context.Context, fn func(relay.Job) error) error {
	leave, err := s.enter(ctx)
	if err != nil {
		return fmt.Errorf("walk open jobs: %w", err)
	}
	defer leave()

	var after []byte // last key seen
	chunk := make([]relay.Job, 0, walkChunk)
	for {
		chunk = chunk[:0]
		err := s.db.View(func(tx *bbolt.Tx) error {
			var dec jobDecoder
			c := tx.Bucket(bucketJobsOpen).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(chunk) < walkChunk; k, v = c.Next() {
				j, err := dec.decode(k, v)
				if err != nil {
					return err
				}
				chunk = append(chunk, j)
				after = k
			}
			after = bytes.Clone(after)
			return nil
		})
		if err != nil {
			return fmt.Errorf("walk open jobs: %w", err)
		}
		for _, j := range chunk {
			if err := s.stopped(ctx); err != nil {
				return fmt.Errorf("walk open jobs: %w", err)
			}
			if err := fn(j); err != nil {
				return err
			}
		}
		if len(chunk) < walkChunk {
			return nil
		}
	}
}
