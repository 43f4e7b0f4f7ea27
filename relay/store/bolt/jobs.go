package bolt

import (
	"bytes"
	"fmt"

	bbolt "go.etcd.io/bbolt"
)

// updateJob stores value v under key k of a job stored before (the
// schedule is the caller's). It reports false, writing nothing, for an
// unknown job.
func updateJob(w *wtx, k, v []byte) (bool, error) {
	if !bytesEqualSeek(w.cursor(bucketJobs), k) {
		return false, nil
	}
	if err := history(w.tx, bucketJobs).Put(k, v); err != nil {
		return false, fmt.Errorf("put job: %w", err)
	}
	return true, nil
}

// mergeOpenJobs moves the open jobs of a file written before 2026-12-07
// (bucket jobs_open) into bucketJobs, and drops jobs_open. It runs after
// the schedule's places are in the jobs' values (migrateSchedIndex).
func mergeOpenJobs(tx *bbolt.Tx) error {
	open := tx.Bucket(bucketJobsOpen)
	if open == nil {
		return nil
	}
	jobs := history(tx, bucketJobs)
	if err := open.ForEach(func(k, v []byte) error {
		return jobs.Put(k, bytes.Clone(v)) // Put keeps v until the commit
	}); err != nil {
		return err
	}
	return tx.DeleteBucket(bucketJobsOpen)
}

// hasOpenJob reports whether an event's jobs (keys with prefix) include an
// open one: one with a place in the schedule, or one whose value does not
// read (never deleted as if closed).
func hasOpenJob(jobs *bbolt.Bucket, prefix []byte) bool {
	c := jobs.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if place, err := jobPlace(v); err != nil || place != nil {
			return true
		}
	}
	return false
}

// bytesEqualSeek moves c to k and reports whether k is there.
func bytesEqualSeek(c *bbolt.Cursor, k []byte) bool {
	got, _ := c.Seek(k)
	return bytes.Equal(got, k)
}

// historyFill is the fill percent of the buckets that only grow until
// pruning (events, decisions, jobs): bbolt's default (0.5) splits
// a full page in two halves, which left these buckets' pages half empty.
const historyFill = 0.9

// jobsFill is the fill percent of bucketJobs. A job's value grows after
// it is first written (a delivered prompt waiting for its expiry withdraw
// records its due time and a longer state), and a page filled to
// historyFill then splits in two half-empty ones: a store of delivered
// prompts took twice the pages. At 0.8 the grown values still fit.
const jobsFill = 0.8

// history returns one of the history buckets of tx, filled to historyFill
// (bucketJobs to jobsFill).
func history(tx *bbolt.Tx, name []byte) *bbolt.Bucket {
	b := tx.Bucket(name)
	b.FillPercent = historyFill
	if bytes.Equal(name, bucketJobs) {
		b.FillPercent = jobsFill
	}
	return b
}
