package bolt

import (
	"bytes"

	bbolt "go.etcd.io/bbolt"
)

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
