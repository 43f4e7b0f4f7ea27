package bolt

import (
	"bytes"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// updateJob stores value v of job j under key k, moving it between the open
// and done buckets as its state says (the schedule is the caller's). It
// reports false, writing nothing, for an unknown job.
func updateJob(w *wtx, k, v []byte, j *relay.Job) (bool, error) {
	open, done := w.tx.Bucket(bucketJobsOpen), history(w.tx, bucketJobsDone)
	to := open
	if j.State.Final() {
		to = done
	}
	// Delete through the cursor that found the job: no second search.
	if c := w.cursor(bucketJobsOpen); bytesEqualSeek(c, k) {
		if to != open {
			if err := c.Delete(); err != nil {
				return false, fmt.Errorf("delete job: %w", err)
			}
		}
	} else if c := w.cursor(bucketJobsDone); bytesEqualSeek(c, k) {
		if to != done {
			if err := c.Delete(); err != nil {
				return false, fmt.Errorf("delete job: %w", err)
			}
		}
	} else {
		return false, nil // unknown job
	}
	if err := to.Put(k, v); err != nil {
		return false, fmt.Errorf("put job: %w", err)
	}
	return true, nil
}

// bytesEqualSeek moves c to k and reports whether k is there.
func bytesEqualSeek(c *bbolt.Cursor, k []byte) bool {
	got, _ := c.Seek(k)
	return bytes.Equal(got, k)
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
