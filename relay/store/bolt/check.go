package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
	"syscall"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/edgerelay/edgerelay/relay"
)

// ErrDamaged is wrapped by the errors of VerifyFile and Check when the store
// file is damaged. Its message tells the operator what to do.
var ErrDamaged = errors.New("store file damaged: restore from backup (docs/operations.md)")

// DamagedError is a damaged store file: which file and what is wrong. It
// matches ErrDamaged with errors.Is.
type DamagedError struct {
	Path   string
	Detail string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("store %s: %s (%s)", e.Path, ErrDamaged, e.Detail)
}

// Is makes a *DamagedError match ErrDamaged.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// bbolt's file layout (go.etcd.io/bbolt internal/common): every page starts
// with a 16-byte header; pages 0 and 1 hold a meta each.
const (
	pageHeaderSize = 16
	metaMagic      = 0xED0CDAED
	metaVersion    = 2
	metaSize       = 64 // magic, version, page size, flags, root (2×8), freelist, pgid, txid, checksum
	metaSumLen     = 56 // the checksum covers the fields before it
	noFreelist     = 0xffffffffffffffff
	minPageSize    = 512
	maxPageSize    = 1 << 24 // bbolt looks for the second meta up to 16 MiB
)

// meta is the part of a bbolt meta page VerifyFile checks.
type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high water mark: pages [0, pgid) are in use
	txid     uint64
}

// parseMeta decodes and validates the meta page at the start of p.
func parseMeta(p []byte) (meta, error) {
	if len(p) < pageHeaderSize+metaSize {
		return meta{}, errors.New("short meta page")
	}
	m := p[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.LittleEndian // bbolt writes native order; every platform we ship is little-endian
	if le.Uint32(m[0:]) != metaMagic {
		return meta{}, errors.New("bad magic")
	}
	if v := le.Uint32(m[4:]); v != metaVersion {
		return meta{}, fmt.Errorf("version %d, want %d", v, metaVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if h.Sum64() != le.Uint64(m[metaSumLen:]) {
		return meta{}, errors.New("bad checksum")
	}
	return meta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		pgid:     le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, nil
}

// VerifyFile checks what can be checked of a store file without mapping
// it, so it cannot crash the process: a valid meta page, a sane page size,
// a file as long as the pages the meta says are in use (a truncated file
// makes bbolt fault with SIGBUS), and root and freelist pages inside it. A
// missing or empty file is fine (Open creates the store). A damaged file
// gives a *DamagedError (errors.Is(err, ErrDamaged)).
//
// It does not look into the data pages: Check does, and a damaged page can
// crash the process doing it, so relayd runs Check in a child process
// (relayd -check-store).
func VerifyFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil // nothing to verify; Open creates the file or says why not
	}
	if err != nil {
		return fmt.Errorf("verify store %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("verify store %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("verify store %s: not a regular file", path)
	}
	damaged := func(format string, args ...any) error {
		return &DamagedError{Path: path, Detail: fmt.Sprintf(format, args...)}
	}
	read := func(off int64) []byte {
		buf := make([]byte, pageHeaderSize+metaSize)
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil
		}
		return buf[:n]
	}
	// The first meta gives the page size; if it is damaged, look for the
	// second one at each possible page size, as bbolt does.
	var metas []meta
	var problems []string
	m0, err0 := parseMeta(read(0))
	if err0 == nil {
		metas = append(metas, m0)
		if m1, err := parseMeta(read(int64(m0.pageSize))); err == nil {
			metas = append(metas, m1)
		} else {
			problems = append(problems, "meta page 1: "+err.Error())
		}
	} else {
		problems = append(problems, "meta page 0: "+err0.Error())
		for ps := int64(1024); ps <= maxPageSize && ps < size; ps <<= 1 {
			if m1, err := parseMeta(read(ps)); err == nil && int64(m1.pageSize) == ps {
				metas = append(metas, m1)
				break
			}
		}
	}
	if len(metas) == 0 {
		return damaged("no valid meta page: %v", problems)
	}
	// bbolt uses the valid meta with the higher txid.
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	ps := uint64(m.pageSize)
	switch {
	case ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0:
		return damaged("page size %d", ps)
	case m.pgid < 4:
		return damaged("meta says %d pages, fewer than a new store has", m.pgid)
	case m.pgid > uint64(size)/ps:
		return damaged("file is %d bytes but its pages end at %d: truncated", size, m.pgid*ps)
	case m.root < 2 || m.root >= m.pgid:
		return damaged("root page %d outside pages 2..%d", m.root, m.pgid-1)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
		return damaged("freelist page %d outside pages 2..%d", m.freelist, m.pgid-1)
	}
	return nil
}

// Check runs VerifyFile, then bbolt's consistency check over every page of
// the store file (read-only, with a shared lock, so not while a relayd has
// the store open). A damaged file gives a *DamagedError.
//
// A badly damaged file can crash the process running Check (bbolt panics
// in its own goroutines, and faults on pages past the end of the file):
// run it in a child process and treat a crash as damage.
func Check(path string) error {
	if err := VerifyFile(path); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil // missing or new: nothing to check
	}
	if err := prefetch(path); err != nil {
		return fmt.Errorf("check store %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: DefaultLockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("check store %s: locked by a running relayd (stop it first): %w", path, err)
	}
	if err != nil {
		return fmt.Errorf("check store %s: %w", path, err)
	}
	defer db.Close()
	var problems []error
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() { // drained: the checker goroutine must end
			if len(problems) < 10 {
				problems = append(problems, err)
			}
		}
		var scheduled []scheduledJob
		if len(problems) == 0 {
			problems, scheduled = checkValues(tx, 10)
		}
		if len(problems) == 0 {
			problems = checkSchedule(tx, scheduled, 10)
		}
		if len(problems) == 0 {
			problems = checkTokenIndexBucket(tx, 10)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check store %s: %w", path, err)
	}
	if len(problems) > 0 {
		return &DamagedError{Path: path, Detail: errors.Join(problems...).Error()}
	}
	return nil
}

// prefetch reads the file once from start to end, so the page cache holds
// it before the check walks its pages. The walk goes in tree order, which
// on a cold cache is one random read per page: 5.7 s for a 560 MB store
// whose sequential read takes 0.3 s.
func prefetch(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 4<<20))
	return err
}

// checkValues decodes every entry of the buckets relayd reads at start-up
// and when serving, as the store would, and returns up to max problems: a
// damaged value that bbolt's page check cannot see (random bytes inside a
// value) would otherwise stop the recovery walk at every start. It also
// returns the jobs that are open or record a place in the schedule, for
// checkSchedule (one pass over a million jobs, not two).
func checkValues(tx *bbolt.Tx, max int) ([]error, []scheduledJob) {
	var problems []error
	check := func(bucket []byte, fn func(k, v []byte) error) {
		b := tx.Bucket(bucket)
		if b == nil {
			return
		}
		_ = b.ForEach(func(k, v []byte) error {
			if err := fn(k, v); err != nil && len(problems) < max {
				problems = append(problems, fmt.Errorf("bucket %s, key %q: %w", bucket, k, err))
			}
			return nil
		})
	}
	jsonValue := func(_, v []byte) error {
		if !json.Valid(v) {
			return errors.New("value is not JSON")
		}
		return nil
	}
	// Events and decisions are parsed without building them
	// (checkEventValue): a million of each then cost no allocations.
	check(bucketEvents, func(k, v []byte) error {
		if bytes.IndexByte(k, sep) < 0 {
			return fmt.Errorf("event key %q: no separator", k)
		}
		return checkEventValue(v)
	})
	check(bucketDecisions, func(_, v []byte) error { return checkDecisionValue(v) })
	check(bucketUndecided, func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("key of %d bytes, want 8", len(k))
		}
		_, err := splitEventKey(v)
		return err
	})
	var scheduled []scheduledJob
	for _, b := range [][]byte{bucketJobs, bucketJobsOpen} { // jobs_open: a file open has not merged yet
		check(b, func(k, v []byte) error {
			if bytes.Count(k, []byte{sep}) < 2 {
				return fmt.Errorf("job key %q: want 3 parts", k)
			}
			var j relay.Job
			if err := decodeJobValue(&j, v); err != nil {
				return err
			}
			if place, _ := jobPlace(v); place != nil || !j.State.Final() {
				scheduled = append(scheduled, scheduledJob{bytes.Clone(k), bytes.Clone(place), j.State})
			}
			return nil
		})
	}
	for _, b := range [][]byte{bucketDevices, bucketSettings, bucketPrefs, bucketRecent} {
		check(b, jsonValue)
	}
	return problems, scheduled
}

// scheduledJob is a job that is open or records a place in the schedule.
type scheduledJob struct {
	key, place []byte
	state      relay.DeliveryState
}

// checkSchedule checks the schedule's buckets against the jobs they
// schedule (see sched.go), given the jobs checkValues found open or
// placed: every open job records a place and has exactly that entry in
// sched, no closed job records one, every entry belongs to the job whose
// place it is, and sched_count holds the entries' counts. They are written in the
// same transactions as the jobs, so a mismatch is damage that bbolt's page
// check cannot see, or a bug — and an open job without an entry would
// never be sent. It returns up to max problems.
func checkSchedule(tx *bbolt.Tx, scheduled []scheduledJob, max int) []error {
	jobs, sched, counts := tx.Bucket(bucketJobs), tx.Bucket(bucketSched), tx.Bucket(bucketSchedCount)
	if jobs == nil || sched == nil || counts == nil || tx.Bucket([]byte("jobs_due")) != nil || tx.Bucket(bucketSchedJobs) != nil || tx.Bucket(bucketJobsOpen) != nil {
		return nil // a file from before the schedule or its places: open builds them
	}
	var problems []error
	add := func(format string, args ...any) {
		if len(problems) < max {
			problems = append(problems, fmt.Errorf("schedule: "+format, args...))
		}
	}
	sc := sched.Cursor()
	for _, sj := range scheduled {
		jk, place := sj.key, sj.place
		switch {
		case sj.state.Final():
			add("job %q is %s, yet has a place in the schedule %q", jk, sj.state, place)
		case place == nil:
			add("open job %q has no place in the schedule: it would never be sent", jk)
		default:
			k := append(place, jk...)
			if got, _ := sc.Seek(k); !bytes.Equal(got, k) {
				add("open job %q: its entry %q is missing: it would never be sent", jk, k)
			}
		}
	}
	// Every sched key is its job's entry; count them by lane and rank.
	want := map[string]uint64{}
	_ = sched.ForEach(func(k, _ []byte) error {
		prefix, _, jk, err := parseSchedKey(k)
		if err != nil {
			add("%v", err)
			return nil
		}
		v := jobs.Get(jk)
		if place, _ := jobPlace(v); v == nil || place == nil {
			add("entry of job %q, which is not open", jk)
		} else if !bytes.Equal(place, k[:len(k)-len(jk)]) {
			add("entry %q is not its job's (the job's place is %q)", k, place)
		}
		want[string(prefix[:len(prefix)-1])+string(plainRank(prefix[len(prefix)-1]))]++
		return nil
	})
	_ = counts.ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			add("count %q: value of %d bytes, want 8", k, len(v))
			return nil
		}
		if n := binary.BigEndian.Uint64(v); n != want[string(k)] {
			add("count %q is %d, the schedule has %d", k, n, want[string(k)])
		}
		delete(want, string(k))
		return nil
	})
	for k, n := range want {
		add("count %q is missing, the schedule has %d", k, n)
	}
	return problems
}

// checkTokenIndexBucket checks the token index against the devices when
// open would trust it (the file's last write was a clean Close of a relayd
// that keeps it: see openTokenIndex); otherwise open rebuilds it and
// there is nothing to check. It returns up to max problems.
func checkTokenIndexBucket(tx *bbolt.Tx, max int) []error {
	idx := tx.Bucket(bucketDeviceTokens)
	if idx == nil || tx.Bucket(bucketDevices) == nil || idx.Sequence() != uint64(tx.ID()) {
		return nil
	}
	var problems []error
	for _, p := range tokenIndexProblems(tx) {
		if len(problems) == max {
			break
		}
		problems = append(problems, errors.New("token index: "+p))
	}
	return problems
}

// tokenIndexProblems compares the token index with one rebuilt from the
// devices bucket and describes every difference, sorted. (A device whose
// value does not decode is left out, as open leaves it out; checkValues
// reports it.)
func tokenIndexProblems(tx *bbolt.Tx) []string {
	want := map[string]bool{}
	_ = tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
		if token, err := deviceToken(v); err == nil {
			want[string(tokenIndexKey(k, token))] = true
		}
		return nil
	})
	idx := tx.Bucket(bucketDeviceTokens)
	if idx == nil {
		return []string{"no token index"}
	}
	var problems []string
	_ = idx.ForEach(func(k, _ []byte) error {
		if !want[string(k)] {
			problems = append(problems, fmt.Sprintf("extra entry %q", k))
		}
		delete(want, string(k))
		return nil
	})
	for k := range want {
		problems = append(problems, fmt.Sprintf("missing entry %q", k))
	}
	slices.Sort(problems)
	return problems
}
