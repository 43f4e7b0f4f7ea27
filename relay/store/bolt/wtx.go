package bolt

import (
	"bytes"
	"encoding/binary"

	bbolt "go.etcd.io/bbolt"
)

// wtx is what the write functions of one commit share (commit.go runs them
// one after another on the committer goroutine):
//
//   - a cursor per bucket for point reads and deletes. bbolt's Bucket.Get
//     and Bucket.Delete make a new cursor each, whose stack grows from
//     nothing on every call (a third of a delivery's allocations,
//     BenchmarkDeliveryCycle); a cursor repositioned with Seek reuses its
//     stack. (Bucket.Put still makes its own: bbolt has no cursor Put.)
//   - the open-job count deltas, written once per commit instead of a read
//     and a write of the lane's count for every job scheduled or closed.
//   - scratch buffers for keys: bbolt keeps no key it is given (Put
//     copies it; Get, Seek and Delete only compare), but it keeps every
//     value until the commit, so values never come from here.
type wtx struct {
	tx      *bbolt.Tx
	cursors []namedCursor
	counts  countDeltas
	key     []byte // scratch: one key at a time
	lane    []byte // scratch: a lane name for counts
}

type namedCursor struct {
	name []byte
	c    *bbolt.Cursor
}

func newWtx(tx *bbolt.Tx) *wtx { return &wtx{tx: tx} }

// wtx returns the shared state of tx, the transaction the committer runs.
// Every write function runs there (s.write and its kin).
func (s *Store) wtx(tx *bbolt.Tx) *wtx {
	if w := s.cur; w != nil && w.tx == tx {
		return w
	}
	panic("bolt: write function outside the committer's transaction")
}

// cursor returns the transaction's cursor on bucket name.
func (w *wtx) cursor(name []byte) *bbolt.Cursor {
	for _, nc := range w.cursors {
		if bytes.Equal(nc.name, name) {
			return nc.c
		}
	}
	c := w.tx.Bucket(name).Cursor()
	w.cursors = append(w.cursors, namedCursor{name, c})
	return c
}

// get is Bucket.Get without a new cursor.
func (w *wtx) get(name, k []byte) []byte {
	got, v := w.cursor(name).Seek(k)
	if !bytes.Equal(got, k) {
		return nil
	}
	return v
}

// del is Bucket.Delete without a new cursor.
func (w *wtx) del(name, k []byte) error {
	c := w.cursor(name)
	if got, _ := c.Seek(k); !bytes.Equal(got, k) {
		return nil
	}
	return c.Delete()
}

// keyOf builds a key of parts in the scratch buffer, valid until the next
// call.
func (w *wtx) keyOf(parts ...[]byte) []byte {
	w.key = appendJoined(w.key[:0], parts)
	return w.key
}

// keyOfStrings is keyOf for string parts.
func (w *wtx) keyOfStrings(parts ...string) []byte {
	w.key = appendJoined(w.key[:0], parts)
	return w.key
}

// appendJoined appends parts to dst, sep between them.
func appendJoined[S ~string | ~[]byte](dst []byte, parts []S) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, sep)
		}
		dst = append(dst, p...)
	}
	return dst
}

// countDeltas collects changes to the open job counts (lane \0 rank) until
// flush.
type countDeltas []countDelta

type countDelta struct {
	lane  string
	rank  byte
	delta int64
}

// add adds delta to a lane's count of one rank.
func (c *countDeltas) add(lane []byte, rank byte, delta int64) {
	for i := range *c {
		if d := &(*c)[i]; d.rank == rank && d.lane == string(lane) {
			d.delta += delta
			return
		}
	}
	*c = append(*c, countDelta{string(lane), rank, delta})
}

// addJob adds delta to the count of the lane of a job with app and
// platform.
func (w *wtx) addJob(app, platform string, rank byte, delta int64) {
	w.lane = append(append(append(w.lane[:0], app...), '/'), platform...)
	w.counts.add(w.lane, rank, delta)
}

// flush writes the counts and forgets them.
func (w *wtx) flush() error {
	b := w.tx.Bucket(bucketSchedCount)
	for _, d := range w.counts {
		if d.delta == 0 {
			continue
		}
		k := append(append(w.key[:0], d.lane...), sep, d.rank)
		var n int64
		if v := b.Get(k); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		n += d.delta
		var err error
		if n <= 0 {
			err = b.Delete(k)
		} else {
			err = b.Put(k, binary.BigEndian.AppendUint64(nil, uint64(n)))
		}
		if err != nil {
			return err
		}
	}
	w.counts = w.counts[:0]
	return nil
}
