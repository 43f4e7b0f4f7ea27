package bolt

import (
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// updateJob stores value v of job j under key k, moving it between the open
// and done buckets as its state says (the schedule is the caller's). It
// reports false, writing nothing, for an unknown job.
func updateJob(tx *bbolt.Tx, k, v []byte, j *relay.Job) (bool, error) {
	open, done := tx.Bucket(bucketJobsOpen), history(tx, bucketJobsDone)
	var from *bbolt.Bucket
	if old := open.Get(k); old != nil {
		from = open
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
	return true, nil
}

// historyFill is the fill percent of the buckets that only grow until
// pruning (events, decisions, finished jobs): bbolt's default (0.5) splits
// a full page in two halves, which left these buckets' pages half empty.
const historyFill = 0.9

// history returns one of the history buckets of tx, filled to historyFill.
func history(tx *bbolt.Tx, name []byte) *bbolt.Bucket {
	b := tx.Bucket(name)
	b.FillPercent = historyFill
	return b
}
