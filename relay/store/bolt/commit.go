package bolt

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// Group commit. A write queues its function; one committer goroutine runs
// the queued functions in one read-write transaction and one fsync, then
// takes whatever queued up while that commit was syncing, and so on until
// the queue is empty. So a lone write commits at once (no waiting for a
// batch that will not fill), and under load each commit carries every
// write that arrived during the one before: the batch grows with the load.
// (bbolt's own DB.Batch waits up to MaxBatchDelay for company when more
// than one writer is in flight.)
//
// Between load and saturation, back-to-back commits carried a few writes
// each: at 2,000 one-event POSTs a second the writer committed 400-600
// times a second, ~7 writes each, busy 96 % of the time, and a commit of
// that size costs ~300 µs of CPU (two fdatasyncs, a pwrite per page, the
// B-tree pages it touches), ~100 µs of the ~480 relayd spent per event.
// So when fewer than lingerWrites writes queued during a commit, the
// committer waits for more, up to lingerDelay or until lingerWrites are
// queued, before the next one: a quarter fewer commits, the writer busy
// ~65 % of the time, 2-7 % less CPU per event and a lower tail
// (docs/benchmarks.md, session 15). A write that finds the writer idle,
// or that its caller queued after the last commit released it, still
// commits at once.

// writeCall is one queued write.
type writeCall struct {
	fn    func(*bbolt.Tx) error
	err   error
	panic any // a panic of fn, re-raised in the caller
	done  chan struct{}
	// later: nobody waits for this write (writeLater); its failure
	// goes to the store's log.
	later bool
	// early: the caller is released once fn ran in a transaction whose
	// functions all succeeded, before that transaction's fsync
	// (writeUnsynced); a failed commit then goes to the store's log.
	early bool
	// released: done was closed early.
	released bool
	// deferred: fn may wait up to deferDelay for company (writeDeferred).
	deferred bool
}

// committer is the queue of writes and whether a goroutine is committing it.
type committer struct {
	mu      sync.Mutex
	pending []*writeCall
	running bool
	// lingering, while the committer lingers, is closed once
	// lingerWrites writes are pending.
	lingering chan struct{}
	// committing is set while a commit runs, until its callers are
	// released; queuedDuring counts the writes queued meanwhile (the
	// writer is loaded: the next commit may linger). A write its caller
	// queued after the last commit released it commits at once.
	committing   bool
	queuedDuring int
	loops        sync.WaitGroup // the committer goroutine, when running
	// Commits are numbered; released is the last one that let an
	// unsynced write's caller go before committing, committed the last
	// one that ended. synced (on mu) is signalled at each end.
	seq, released, committed uint64
	synced                   *sync.Cond
	// kick starts the committer for deferred writes left alone.
	kick *time.Timer
	// What the committer did (CommitStats).
	commits, writes, busyNanos atomic.Uint64
}

// CommitStats is what the store's group commit has done since it opened.
type CommitStats struct {
	Commits uint64        // group commits run (a batch retried after a failed write counts once)
	Writes  uint64        // write calls they carried
	Busy    time.Duration // time spent in them, fsyncs included
}

// CommitStats reports the group commit's work. Busy growing as fast as the
// clock means the committer never rests: writes queue behind the disk
// (docs/metrics.md).
func (s *Store) CommitStats() CommitStats {
	cm := &s.commits
	return CommitStats{Commits: cm.commits.Load(), Writes: cm.writes.Load(), Busy: time.Duration(cm.busyNanos.Load())}
}

// waitUnsynced waits until every unsynced write returned so far is
// committed: a read after it sees them (read-your-writes for the schedule
// views; see writeUnsynced).
func (s *Store) waitUnsynced() {
	cm := &s.commits
	cm.mu.Lock()
	defer cm.mu.Unlock()
	for target := cm.released; cm.committed < target; {
		cm.cond().Wait()
	}
}

// cond returns the committer's condition variable (cm.mu held).
func (cm *committer) cond() *sync.Cond {
	if cm.synced == nil {
		cm.synced = sync.NewCond(&cm.mu)
	}
	return cm.synced
}

// write runs fn in a read-write transaction and returns once it is
// committed to disk, sharing the transaction and its fsync with the writes
// queued at the same time. fn must be idempotent: when another function of
// the same commit fails, the commit is rolled back and fn runs again.
func (s *Store) write(fn func(*bbolt.Tx) error) error {
	if s.fault != nil {
		if err := s.fault(); err != nil {
			return err
		}
	}
	c := &writeCall{fn: fn, done: make(chan struct{})}
	s.queue(c)
	<-c.done
	if c.panic != nil {
		panic(c.panic)
	}
	return c.err
}

// writeQueued is write, calling queued once fn is queued for a commit,
// before it runs: a write queued after it (a settle of a job fn writes)
// runs after it, in the same commit or a later one (AddDecidedLeasing).
func (s *Store) writeQueued(fn func(*bbolt.Tx) error, queued func()) error {
	if s.fault != nil {
		if err := s.fault(); err != nil {
			return err
		}
	}
	c := &writeCall{fn: fn, done: make(chan struct{})}
	s.queue(c)
	queued()
	<-c.done
	if c.panic != nil {
		panic(c.panic)
	}
	return c.err
}

// writeUnsynced runs fn in a read-write transaction as write does, but
// returns once fn ran in a transaction that will commit (every function
// of the batch succeeded), without waiting for its fsync. For writes that
// need not survive a crash to be correct: a bolt lease (Open releases
// every lease, see releaseLeases), whose jobs are sent while the lease
// commits. The commit is still ordered: a write queued after this one
// returns commits after it. A commit that fails afterwards is logged
// (the lease is then lost: its job stays due and is sent again). Reads
// that must see such a write call waitUnsynced first.
func (s *Store) writeUnsynced(fn func(*bbolt.Tx) error) error {
	return s.writeEarly(fn, false)
}

// writeDeferred is writeUnsynced for a write that may also wait up to
// deferDelay for another write to share its commit: a final settle. At a
// low rate every settle committed alone (two fsyncs each, and an accept
// arriving meanwhile waited for them); deferred, settles ride along with
// the next accept or lease.
func (s *Store) writeDeferred(fn func(*bbolt.Tx) error) error {
	return s.writeEarly(fn, true)
}

// deferDelay is how long a deferred write waits for company at most.
const deferDelay = time.Millisecond

const (
	// lingerWrites is the batch below which the committer lingers after
	// a commit, and lingerDelay how long at most (see the top of the
	// file). At saturation a commit carries ~26 writes: it does not
	// linger.
	lingerWrites = 16
	lingerDelay  = time.Millisecond
)

func (s *Store) writeEarly(fn func(*bbolt.Tx) error, deferred bool) error {
	if s.fault != nil {
		if err := s.fault(); err != nil {
			return err
		}
	}
	c := &writeCall{fn: fn, done: make(chan struct{}), early: true, deferred: deferred}
	s.queue(c)
	<-c.done
	if c.panic != nil {
		panic(c.panic)
	}
	return c.err
}

// writeLater queues fn as write does but returns at once. The queue is
// committed in order, so fn is on disk no later than any write queued
// after it returns: a write whose durability only matters together with
// a later one (a user.recent count, with the decision it led to) need not
// wait for an fsync of its own. A failure is logged.
func (s *Store) writeLater(fn func(*bbolt.Tx) error) {
	if s.fault != nil {
		if err := s.fault(); err != nil {
			s.log.Warn("store write failed", "error", err)
			return
		}
	}
	s.queue(&writeCall{fn: fn, later: true}) // no done: nobody waits
}

func (s *Store) queue(c *writeCall) {
	cm := &s.commits
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.pending = append(cm.pending, c)
	if cm.committing {
		cm.queuedDuring++
	}
	if cm.lingering != nil && len(cm.pending) >= lingerWrites {
		close(cm.lingering) // company enough: commit now
		cm.lingering = nil
	}
	switch {
	case cm.running:
	case c.deferred:
		if cm.kick == nil {
			cm.kick = time.AfterFunc(cmp.Or(s.deferDelay, deferDelay), s.kickCommits)
		}
	default:
		s.startCommits()
	}
}

// startCommits starts the committer (cm.mu held, not running).
func (s *Store) startCommits() {
	cm := &s.commits
	cm.running = true
	if cm.kick != nil {
		cm.kick.Stop() // the deferred writes go with this commit
		cm.kick = nil
	}
	cm.loops.Go(s.commitLoop)
}

// kickCommits commits the deferred writes no other write came to share.
func (s *Store) kickCommits() {
	cm := &s.commits
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.kick = nil
	if !cm.running && len(cm.pending) > 0 {
		s.startCommits()
	}
}

// commitLoop commits queued writes, up to maxBatch per transaction, until
// the queue is empty.
func (s *Store) commitLoop() {
	cm := &s.commits
	linger := cmp.Or(s.lingerDelay, lingerDelay)
	var timer *time.Timer
	for {
		cm.mu.Lock()
		n := min(len(cm.pending), s.maxBatch)
		if n > 0 && n < lingerWrites && cm.queuedDuring > 0 && linger > 0 {
			// Writes queued during the commit that just ended: the
			// writer is loaded, so wait for company (top of file).
			ch := make(chan struct{})
			cm.lingering = ch
			cm.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(linger)
				defer timer.Stop()
			} else {
				timer.Reset(linger)
			}
			select {
			case <-ch:
				timer.Stop()
			case <-timer.C:
			}
			cm.mu.Lock()
			cm.lingering = nil
			n = min(len(cm.pending), s.maxBatch)
		}
		if n == 0 {
			cm.running = false
			cm.pending = nil // drop the backing array a burst grew
			cm.mu.Unlock()
			return
		}
		batch := make([]*writeCall, n)
		copy(batch, cm.pending)
		cm.pending = cm.pending[n:]
		cm.seq++
		seq := cm.seq
		cm.committing, cm.queuedDuring = true, 0
		cm.mu.Unlock()
		s.commit(batch, seq)
		cm.mu.Lock()
		cm.committed = seq
		cm.committing = false // (commit clears it before its callers go on, unless every write failed)
		cm.cond().Broadcast()
		cm.mu.Unlock()
	}
}

// commit runs batch in one transaction. A function that fails (or panics)
// gets its own error and leaves the batch; the others run again in a new
// transaction, as bbolt's DB.Batch does.
func (s *Store) commit(batch []*writeCall, seq uint64) {
	start, n := time.Now(), len(batch)
	for len(batch) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bbolt.Tx) error {
			s.cur = newWtx(tx)
			defer func() { s.cur = nil }()
			for i, c := range batch {
				if err := runCall(c, tx); err != nil {
					failed = i
					return err
				}
			}
			// The open-job counts the functions changed, once.
			if err := s.cur.flush(); err != nil {
				return fmt.Errorf("write open job counts: %w", err)
			}
			// Every function succeeded: this transaction commits
			// unless the commit itself fails.
			// (released is set before the callers go on, so a read
			// they make after waitUnsynced sees this commit.)
			if slices.ContainsFunc(batch, func(c *writeCall) bool { return c.early }) {
				s.commits.mu.Lock()
				s.commits.released = seq
				s.commits.mu.Unlock()
			}
			for _, c := range batch {
				if c.early {
					c.released = true
					close(c.done)
				}
			}
			if s.beforeCommit != nil {
				s.beforeCommit()
			}
			return nil
		})
		if failed < 0 {
			s.commitFailed.Store(err != nil)
		}
		if failed >= 0 {
			s.finish(batch[failed], err)
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		s.countCommit(start, n) // before the callers go on: a write that returned is counted
		s.commits.mu.Lock()
		s.commits.committing = false // a write its callers queue next is not company
		s.commits.mu.Unlock()
		for _, c := range batch {
			s.finish(c, err) // nil, or the commit itself failed
		}
		return
	}
	s.countCommit(start, n) // every write failed
}

// countCommit adds a commit of n writes that began at start to CommitStats.
func (s *Store) countCommit(start time.Time, n int) {
	cm := &s.commits
	cm.busyNanos.Add(uint64(time.Since(start)))
	cm.commits.Add(1)
	cm.writes.Add(uint64(n))
}

// finish ends a write call with err.
func (s *Store) finish(c *writeCall, err error) {
	if c.released {
		if err != nil {
			s.log.Warn("store write failed after its caller went on", "error", err)
		}
		return
	}
	c.err = err
	if c.later {
		if err != nil {
			s.log.Warn("store write failed", "error", err)
		}
		return
	}
	close(c.done)
}

// runCall runs c's function, turning a panic into an error for the batch
// (and a panic for c's caller).
func runCall(c *writeCall, tx *bbolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.panic = p
			err = fmt.Errorf("write panicked: %v", p)
		}
	}()
	return c.fn(tx)
}

// pendingLen returns how many writes wait for the committer (tests).
func (cm *committer) pendingLen() int {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	return len(cm.pending)
}
