package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

var _ store.DueIndex = (*Store)(nil)

// The due index: bucket jobs_due holds one empty-valued key per open job,
// 8-byte big-endian store.DueAt in Unix nanoseconds (0 before 1970)
// followed by the job's key. Decide and UpdateJobs keep it in step with
// jobs_open in the same transaction, so a cursor walk yields open jobs in
// due order without reading the others.
var bucketJobsDue = []byte("jobs_due")

// dueLen is the length of the time prefix of a due key.
const dueLen = 8

func dueNanos(t time.Time) uint64 {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

// dueKey returns the due index key of the open job j stored under jk.
func dueKey(jk []byte, j *relay.Job) []byte {
	b := make([]byte, dueLen, dueLen+len(jk))
	binary.BigEndian.PutUint64(b, dueNanos(store.DueAt(j)))
	return append(b, jk...)
}

// putDue indexes the open job j stored under jk.
func putDue(tx *bbolt.Tx, jk []byte, j *relay.Job) error {
	if err := tx.Bucket(bucketJobsDue).Put(dueKey(jk, j), nil); err != nil {
		return fmt.Errorf("put due index: %w", err)
	}
	return nil
}

// deleteDue removes the index entry of the open job stored under jk with
// value v.
func deleteDue(tx *bbolt.Tx, jk, v []byte) error {
	var j relay.Job
	if err := decodeJobValue(&j, v); err != nil {
		return fmt.Errorf("delete due index of %q: %w", jk, err)
	}
	if err := tx.Bucket(bucketJobsDue).Delete(dueKey(jk, &j)); err != nil {
		return fmt.Errorf("delete due index: %w", err)
	}
	return nil
}

// deleteDuePrefix removes the index entries of the open jobs whose keys
// start with prefix.
func deleteDuePrefix(tx *bbolt.Tx, prefix []byte) error {
	type kv struct{ k, v []byte }
	var found []kv
	c := tx.Bucket(bucketJobsOpen).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		found = append(found, kv{bytes.Clone(k), bytes.Clone(v)})
	}
	for _, e := range found {
		if err := deleteDue(tx, e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// ensureDueIndex builds the due index of a file written before the index
// existed: an empty index beside open jobs.
func (s *Store) ensureDueIndex() error {
	var missing bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		open, _ := tx.Bucket(bucketJobsOpen).Cursor().First()
		due, _ := tx.Bucket(bucketJobsDue).Cursor().First()
		missing = open != nil && due == nil
		return nil
	})
	if err != nil || !missing {
		return err
	}
	n := 0
	err = s.db.Update(func(tx *bbolt.Tx) error {
		n = 0
		return tx.Bucket(bucketJobsOpen).ForEach(func(k, v []byte) error {
			var j relay.Job
			if err := decodeJobValue(&j, v); err != nil {
				return fmt.Errorf("decode job %q: %w", k, err)
			}
			n++
			return putDue(tx, k, &j)
		})
	})
	if err != nil {
		return fmt.Errorf("build due index: %w", err)
	}
	s.log.Info("built the due index of open jobs", "jobs", n)
	return nil
}

// cursorKey returns the due key of a cursor; nil for the zero cursor.
func cursorKey(c store.DueCursor) []byte {
	if c == (store.DueCursor{}) {
		return nil
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, dueLen+64), dueNanos(c.At))
	return append(b, jobKey(c.Job.Event, c.Job.DeviceID)...)
}

// eventUser is the part of an events value DueJobs needs.
type eventUser struct {
	Event struct {
		User string `json:"user"`
	} `json:"event"`
}

// DueJobs returns up to limit open jobs after cursor, in due order, with
// their event's user and alert, read in one transaction. On a file written
// before the due index existed, the first call from the zero cursor builds
// the index.
func (s *Store) DueJobs(ctx context.Context, after store.DueCursor, limit int) ([]store.DueJob, store.DueCursor, error) {
	if limit <= 0 {
		return nil, after, nil
	}
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, after, fmt.Errorf("walk due jobs: %w", err)
	}
	defer leave()
	if after == (store.DueCursor{}) {
		if err := s.ensureDueIndex(); err != nil {
			return nil, after, fmt.Errorf("walk due jobs: %w", err)
		}
	}
	from := cursorKey(after)
	var out []store.DueJob
	next := after
	err = s.db.View(func(tx *bbolt.Tx) error {
		open, evb, decb := tx.Bucket(bucketJobsOpen), tx.Bucket(bucketEvents), tx.Bucket(bucketDecisions)
		type owner struct {
			user  string
			alert *relay.Alert
		}
		owners := map[string]owner{}
		var dec jobDecoder
		c := tx.Bucket(bucketJobsDue).Cursor()
		k, _ := c.First()
		if from != nil {
			k, _ = c.Seek(from)
			if k != nil && bytes.Equal(k, from) {
				k, _ = c.Next()
			}
		}
		for ; k != nil && len(out) < limit; k, _ = c.Next() {
			if len(k) <= dueLen {
				return fmt.Errorf("due index key %x: too short", k)
			}
			jk := k[dueLen:]
			v := open.Get(jk)
			if v == nil {
				return fmt.Errorf("due index key %q: job not open", jk)
			}
			j, err := dec.decode(jk, v)
			if err != nil {
				return err
			}
			ek := string(eventKey(j.Event))
			o, ok := owners[ek]
			if !ok {
				if ev := evb.Get([]byte(ek)); ev != nil && len(ev) > eventHeaderLen {
					var eu eventUser
					if err := json.Unmarshal(ev[eventHeaderLen:], &eu); err != nil {
						return fmt.Errorf("decode event %s: %w", j.Event, err)
					}
					o.user = eu.Event.User
				}
				if dv := decb.Get([]byte(ek)); dv != nil {
					d, err := decodeDecision(dv)
					if err != nil {
						return err
					}
					o.alert = d.Alert
				}
				owners[ek] = o
			}
			out = append(out, store.DueJob{Job: j, User: o.user, Alert: o.alert})
			next = store.DueCursor{At: time.Unix(0, int64(binary.BigEndian.Uint64(k[:dueLen]))).UTC(), Job: j.Key()}
		}
		return nil
	})
	if err != nil {
		return nil, after, fmt.Errorf("walk due jobs: %w", err)
	}
	return out, next, nil
}

// OpenJobCount returns the number of open jobs.
func (s *Store) OpenJobCount(ctx context.Context) (int, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return 0, fmt.Errorf("count open jobs: %w", err)
	}
	defer leave()
	var n int
	err = s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketJobsOpen).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count open jobs: %w", err)
	}
	return n, nil
}
