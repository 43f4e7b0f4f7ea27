package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

var _ store.Backend = (*Store)(nil)

// Defaults for Options fields left zero.
const (
	// DefaultLockTimeout is how long Open waits for another process to
	// release the file.
	DefaultLockTimeout = 2 * time.Second
	// DefaultMaxBatchSize is how many write calls one commit takes at most
	// (commit.go).
	DefaultMaxBatchSize = 1000
)

// Options configures Open. Zero fields take the Default* values.
type Options struct {
	// Logger receives the store's few log lines; nil discards them.
	Logger hclog.Logger
	// LockTimeout bounds the wait for the file lock held by another process.
	LockTimeout time.Duration
	// MaxBatchSize caps how many write calls share one commit (commit.go).
	MaxBatchSize int
	// WriteFault, when set, is asked before every write transaction; an
	// error fails the write as a full disk would (tests inject store
	// faults with it, on a real file).
	WriteFault func() error
}

// Bucket names (see doc.go for the layout).
var (
	bucketEvents    = []byte("events")
	bucketDecisions = []byte("decisions")
	bucketUndecided = []byte("undecided")
	// bucketJobs holds every job, open and closed. (Its name is from
	// before 2026-12-07, when open jobs had a bucket of their own,
	// jobs_open: open moves what such a file holds, see mergeOpenJobs.)
	bucketJobs     = []byte("jobs_done")
	bucketJobsOpen = []byte("jobs_open")
	bucketDevices  = []byte("devices")
	bucketSettings = []byte("settings")
	bucketPrefs    = []byte("prefs")
	bucketRecent   = []byte("recent")
)

var allBuckets = [][]byte{
	bucketEvents, bucketDecisions, bucketUndecided,
	bucketJobs, bucketDevices, bucketSettings, bucketPrefs, bucketRecent, bucketDeadLetters,
	bucketSched, bucketSchedLeases, bucketSchedCount,
}

// Store is a store.Store on one bbolt file. Its methods are safe for
// concurrent use. Open it with Open and release it with Close.
type Store struct {
	db   *bbolt.DB
	path string
	log  hclog.Logger

	mu       sync.RWMutex // guards closed and wg.Add
	closed   bool
	wg       sync.WaitGroup // calls in flight
	inflight atomic.Int32   // the same count, readable (tests)
	commits  committer      // group commit (commit.go)
	recent   recentCache    // user.recent counters (recent.go)
	maxBatch int            // write calls per commit at most
	fault    func() error   // Options.WriteFault
	devices  deviceCache    // decoded devices (devcache.go)
	// cur is the transaction the committer is running (wtx.go); only
	// the committer goroutine touches it.
	cur     *wtx
	leaveFn func()      // s.leave, made once: a method value allocates
	backlog laneBacklog // lanes with due jobs left by their last lease (sched.go)
	// accepting holds the events whose jobs an accept leased before its
	// write ran (acceptlease.go); commitFailed is set while the last
	// commit failed, when accepts lease nothing before their write runs.
	accepting    acceptingSet
	commitFailed atomic.Bool
	// beforeCommit, when set (tests), runs after a batch's functions and
	// before its commit writes and fsyncs.
	beforeCommit func()
	// deferDelay, when set (tests), replaces the const deferDelay;
	// lingerDelay the const lingerDelay (negative: no lingering).
	deferDelay, lingerDelay time.Duration
	done                    chan struct{} // closed by Close: walks stop
	once                    sync.Once
	closeErr                error
}

// initialMmapSize is the size bbolt maps the store file with at open (4
// GiB on 64-bit platforms; on 32-bit ones, whose address space is too
// small to reserve, bbolt's default). A store that outgrows it is mapped
// again, larger, as before.
const initialMmapSize = (strconv.IntSize / 64) * 4 << 30

// Open opens (creating if needed) the store file at path, after VerifyFile
// (a damaged file gives an error matching ErrDamaged). Missing parent
// directories are created with mode 0700 and a new file with mode 0600. If
// another process holds the file, Open gives up after opts.LockTimeout.
func Open(path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = DefaultMaxBatchSize
	}
	if path == "" {
		return nil, errors.New("open store: path is empty")
	}
	// A truncated file or broken meta pages make bbolt fault or panic:
	// refuse them with a message that says what to do. (The deep check,
	// Check, can crash on a damaged page: relayd runs it in a child.)
	if err := VerifyFile(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: create directory: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      opts.LockTimeout,
		FreelistType: bbolt.FreelistMapType,
		// The freelist is written at every commit, so open reads it from
		// its page. Unsynced (as etcd runs it), open rebuilds it by
		// reading every page of the file: a restart on a 1.8 GB store
		// showed 1.85 GB resident and read it all from disk.
		NoFreelistSync: false,
		// Room to grow without remapping: a remap waits for every read
		// transaction, and a backup holds one for as long as its copy
		// takes, so without it accepts stalled behind a backup once the
		// file outgrew its map. Address space only: pages count in RSS
		// when read.
		InitialMmapSize: initialMmapSize,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store: store %s is locked by another relayd (waited %s): %w", path, opts.LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		migrated, err := migrateSchedule(tx)
		if err != nil {
			return fmt.Errorf("build the job schedule: %w", err)
		}
		placed, err := migrateSchedIndex(tx)
		if err != nil {
			return fmt.Errorf("move the schedule's index into the jobs: %w", err)
		}
		if err := mergeOpenJobs(tx); err != nil {
			return fmt.Errorf("move the open jobs to the jobs bucket: %w", err)
		}
		indexed, err := openTokenIndex(tx)
		if err != nil {
			return fmt.Errorf("build the device token index: %w", err)
		}
		if indexed > 0 {
			opts.Logger.Info("device token index rebuilt (the file was not closed cleanly by this version)", "devices", indexed)
		}
		released, err := releaseLeases(tx)
		if err != nil {
			return fmt.Errorf("release leases: %w", err)
		}
		if migrated > 0 || placed > 0 || released > 0 {
			opts.Logger.Info("job schedule ready", "migrated_jobs", migrated+placed, "released_leases", released)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open store %s: %w", path, err), db.Close())
	}
	opts.Logger.Debug("store opened", "path", path)
	s := &Store{db: db, path: path, log: opts.Logger, done: make(chan struct{}), maxBatch: opts.MaxBatchSize, fault: opts.WriteFault}
	s.leaveFn = s.leave
	return s, nil
}

// Ping reports whether the store can take writes: a write transaction
// that commits (and so fsyncs) nothing but the check.
func (s *Store) Ping(ctx context.Context) error {
	leave, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	return s.write(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSchedCount).Delete([]byte("ping"))
	})
}

// Path returns the file the store was opened on.
func (s *Store) Path() string { return s.path }

// Close waits for calls in flight (pending batches commit; walks stop at
// their next entry with relay.ErrClosed), then closes the file. Calls after
// Close fail with relay.ErrClosed. It ignores ctx, as store.Store requires,
// and is safe to call more than once.
func (s *Store) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.once.Do(func() {
		s.wg.Wait()
		s.commits.loops.Wait() // the committer ends once the queue is empty
		if err := s.db.Update(markTokenIndex); err != nil {
			// The next open rebuilds the index.
			s.log.Warn("could not mark the device token index current", "error", err)
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store %s: %w", s.path, err)
			return
		}
		s.log.Debug("store closed", "path", s.path)
	})
	return s.closeErr
}

// enter registers a call in flight; the caller must call the returned func
// when done. It fails when ctx is done or the store is closed.
func (s *Store) enter(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, relay.ErrClosed
	}
	s.wg.Add(1)
	s.inflight.Add(1)
	return s.leaveFn, nil
}

func (s *Store) leave() {
	s.inflight.Add(-1)
	s.wg.Done()
}

// stopped reports why a walk must stop, or nil.
func (s *Store) stopped(ctx context.Context) error {
	select {
	case <-s.done:
		return relay.ErrClosed
	default:
		return ctx.Err()
	}
}
