package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// writeStore makes a closed store file holding a few events.
func writeStore(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "relay.db")
	s, err := Open(path, Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 50 {
		if _, err := s.AddEvents(context.Background(), []relay.Event{ev("acme", fmt.Sprintf("e%d", i))}, t0); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return path
}

// usedBytes is the end of the pages a store file's newer meta page says
// are in use (its high-water mark).
func usedBytes(b []byte) int {
	m0, err0 := parseMeta(b)
	if err0 != nil {
		panic(err0)
	}
	m1, err1 := parseMeta(b[m0.pageSize:])
	if err1 == nil && m1.txid > m0.txid {
		m0 = m1
	}
	return int(m0.pgid) * int(m0.pageSize)
}

func TestCheckSoundStore(t *testing.T) {
	path := writeStore(t)
	if err := VerifyFile(path); err != nil {
		t.Fatal(err)
	}
	if err := Check(path); err != nil {
		t.Fatal(err)
	}
	// Missing and empty files are new stores.
	missing := filepath.Join(t.TempDir(), "none.db")
	if err := Check(missing); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(missing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(missing); err != nil {
		t.Fatal(err)
	}
}

// A truncated file made bbolt fault (SIGBUS) at Open; damaged meta pages
// made it refuse with an unhelpful error. Open now refuses both with the
// "damaged" message, without mapping the file.
func TestOpenRefusesDamagedFile(t *testing.T) {
	tests := []struct {
		name   string
		damage func(b []byte) []byte
		detail string
	}{
		// Half of the pages in use (the file is longer: bbolt grows it
		// ahead of its data).
		{"truncated", func(b []byte) []byte { return b[:usedBytes(b)/2] }, "truncated"},
		{"truncated inside the meta pages", func(b []byte) []byte { return b[:5000] }, "truncated"},
		{"both metas broken", func(b []byte) []byte {
			b[16], b[4096+16] = 0, 0 // the magic of each
			return b
		}, "no valid meta page"},
		{"garbage", func(b []byte) []byte { return []byte(strings.Repeat("not a bolt file ", 1000)) }, "no valid meta page"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeStore(t)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, Options{})
			if err == nil {
				s.Close(context.Background())
				t.Fatal("opened a damaged file")
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "store file damaged: restore from backup (docs/operations.md)") || !strings.Contains(err.Error(), tc.detail) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err %v", err)
			}
			if err := Check(path); !errors.Is(err, ErrDamaged) {
				t.Fatalf("check: %v", err)
			}
		})
	}
}

// One valid meta is enough, as for bbolt.
func TestOneBrokenMetaIsFine(t *testing.T) {
	path := writeStore(t)
	b, _ := os.ReadFile(path)
	b[16+20] ^= 0xff // meta 0's checksum no longer matches
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(path); err != nil {
		t.Fatal(err)
	}
}

// A value bbolt's page check cannot see (an event whose title length was
// changed) is found by Check's decode pass.
func TestCheckFindsDamagedValue(t *testing.T) {
	path := writeStore(t)
	b, _ := os.ReadFile(path)
	// Damage every copy: a page rewritten by a later commit leaves an old
	// copy of the value in a free page, which no read ever visits.
	const value = "\x0fCode for GitHub" // length-prefixed
	n := 0
	for i := strings.Index(string(b), value); i >= 0; i = strings.Index(string(b), value) {
		b[i] = 0xff // a length running past the value
		n++
	}
	if n == 0 {
		t.Fatal("event not found in the file")
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(path); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "bucket events") {
		t.Fatalf("check: %v", err)
	}
}

// FuzzVerifyFile: VerifyFile never panics, whatever the file holds, and a
// file it accepts has a valid meta (bbolt opens it without faulting on the
// pages the meta claims).
func FuzzVerifyFile(f *testing.F) {
	good, err := os.ReadFile(writeStore(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good[:8192])
	f.Add(good[:100])
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "f.db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		err := VerifyFile(p)
		if err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("not a damage error: %v", err)
		}
	})
}

// writeScheduled makes a closed store file (closed cleanly, so its token
// index is trusted) holding open jobs of both priorities, some leased, one
// settled, and the devices they go to.
func writeScheduled(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.db")
	s, err := Open(path, Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, user := range []string{"u-1", "u-2", "u-3"} {
		d := relay.Device{Workspace: "acme", User: user, ID: "phone", Platform: relay.PlatformIOS, Token: fmt.Sprintf("tok-%d", i), App: "demo"}
		if _, err := s.RegisterDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	addLeaseable(t, s, relay.PriorityHigh, "h1", "h2")
	addLeaseable(t, s, relay.PriorityNormal, "n1", "n2", "n3")
	ls, _, err := s.Lease(ctx, store.LeaseRequest{Lane: relay.Lane("demo", relay.PlatformIOS), Owner: "r1", Now: t0.Add(time.Second), TTL: time.Minute, Max: 3})
	if err != nil || len(ls) != 3 {
		t.Fatalf("lease: %d, %v", len(ls), err)
	}
	j := ls[0].Job
	j.State, j.Attempts, j.UpdatedAt = relay.StateDelivered, 1, t0.Add(2*time.Second)
	if err := s.Settle(ctx, ls[0], j); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return path
}

// firstOpenJob returns the key and the job of the first open job in tx.
func firstOpenJob(t *testing.T, tx *bbolt.Tx) ([]byte, relay.Job) {
	t.Helper()
	c := tx.Bucket(bucketJobs).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if place, _ := jobPlace(v); place != nil {
			j, err := decodeJob(k, v)
			if err != nil {
				t.Fatal(err)
			}
			return bytes.Clone(k), j
		}
	}
	t.Fatal("no open job")
	return nil, relay.Job{}
}

// The check compares the schedule and the token index with what they
// index: a sound file passes; each kind of mismatch is reported as damage,
// naming what is wrong.
func TestCheckFindsScheduleAndIndexMismatches(t *testing.T) {
	if err := Check(writeScheduled(t)); err != nil {
		t.Fatalf("sound file: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(tx *bbolt.Tx) error
		want string // "" : no problem reported
	}{
		{"job without its place", func(tx *bbolt.Tx) error {
			k, j := firstOpenJob(t, tx)
			return tx.Bucket(bucketJobs).Put(k, appendJob(nil, &j, nil))
		}, "has no place in the schedule: it would never be sent"},
		{"job whose place is not its entry's", func(tx *bbolt.Tx) error {
			k, j := firstOpenJob(t, tx)
			return tx.Bucket(bucketJobs).Put(k, appendJob(nil, &j, schedPlace(j.Lane(), rankNormal, t0.Add(time.Hour))))
		}, "is not its job's"},
		{"closed job with a place", func(tx *bbolt.Tx) error {
			k, j := firstOpenJob(t, tx)
			j.State = relay.StateDelivered
			return tx.Bucket(bucketJobs).Put(k, appendJob(nil, &j, schedPlace(j.Lane(), rankHigh, t0)))
		}, "yet has a place in the schedule"},
		{"job without its sched key", func(tx *bbolt.Tx) error {
			k, _ := tx.Bucket(bucketSched).Cursor().Last()
			return tx.Bucket(bucketSched).Delete(bytes.Clone(k))
		}, "is missing: it would never be sent"},
		{"entry of a closed job", func(tx *bbolt.Tx) error {
			k, _ := firstOpenJob(t, tx)
			return tx.Bucket(bucketJobs).Delete(k)
		}, "which is not open"},
		{"wrong count", func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketSchedCount)
			k, _ := b.Cursor().First()
			return b.Put(bytes.Clone(k), binary.BigEndian.AppendUint64(nil, 42))
		}, "is 42, the schedule has"},
		{"trusted token index missing a device", func(tx *bbolt.Tx) error {
			idx := tx.Bucket(bucketDeviceTokens)
			k, _ := idx.Cursor().First()
			if err := idx.Delete(bytes.Clone(k)); err != nil {
				return err
			}
			return idx.SetSequence(uint64(tx.ID())) // as a clean Close leaves it
		}, "token index: missing entry"},
		{"untrusted token index (open rebuilds it)", func(tx *bbolt.Tx) error {
			idx := tx.Bucket(bucketDeviceTokens)
			k, _ := idx.Cursor().First()
			return idx.Delete(bytes.Clone(k))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeScheduled(t)
			db, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tc.edit); err != nil {
				t.Fatal(err)
			}
			db.Close()
			err = Check(path)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("check: %v, want no problem", err)
			case tc.want != "" && (!errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("check: %v, want damage naming %q", err, tc.want)
			}
		})
	}
}
