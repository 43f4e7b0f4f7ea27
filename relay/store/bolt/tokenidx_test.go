package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

func checkTokenIndex(tb testing.TB, s *Store, after string) {
	tb.Helper()
	var problems []string
	if err := s.db.View(func(tx *bbolt.Tx) error {
		problems = tokenIndexProblems(tx)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	if len(problems) > 0 {
		tb.Fatalf("after %s, the token index disagrees with the devices: %v", after, problems)
	}
}

func tokDev(ws, user, id, token string) relay.Device {
	return relay.Device{Workspace: ws, User: user, ID: id, Platform: relay.PlatformIOS, Token: token, App: "demo", UpdatedAt: t0}
}

// TestTokenIndexKeptByEveryWrite runs every write of the devices and
// checks after each that the token index is exactly the one the devices
// give.
func TestTokenIndexKeptByEveryWrite(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	long := strings.Repeat("x", 40_000) // longer than a bbolt key may be
	step := func(name string, fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkTokenIndex(t, s, name)
	}
	reg := func(d relay.Device, wantTaken ...string) func() error {
		return func() error {
			taken, err := s.RegisterDevice(ctx, d)
			var got []string
			for _, o := range taken {
				got = append(got, o.User+"/"+o.ID)
			}
			if err == nil && !slices.Equal(got, wantTaken) {
				return fmt.Errorf("took %v, want %v", got, wantTaken)
			}
			return err
		}
	}
	step("put", func() error { return s.PutDevice(ctx, tokDev("acme", "ann", "a1", "t1")) })
	step("put, same token, other id", func() error { return s.PutDevice(ctx, tokDev("acme", "ann", "a2", "t1")) })
	step("put, other workspace", func() error {
		d := tokDev("other", "ann", "a1", "t1")
		d.UpdatedAt = t0.Add(time.Hour) // kept by the prune below
		return s.PutDevice(ctx, d)
	})
	step("register taking two", reg(tokDev("acme", "bob", "b1", "t1"), "ann/a1", "ann/a2"))
	step("register again, same token", reg(tokDev("acme", "bob", "b1", "t1")))
	step("register, new token", reg(tokDev("acme", "bob", "b1", "t2")))
	step("register, the old token", reg(tokDev("acme", "ann", "a1", "t1")))
	for i := range 5 { // one token moving between users
		step(fmt.Sprintf("move %d", i), reg(tokDev("acme", fmt.Sprintf("u%d", i), "p", "t2"), map[bool]string{true: "bob/b1", false: fmt.Sprintf("u%d/p", i-1)}[i == 0]))
	}
	step("token with NUL", reg(tokDev("acme", "ann", "a3", "t\x00x")))
	step("token t (prefix of the one with NUL)", reg(tokDev("acme", "cy", "c1", "t")))
	step("long token", reg(tokDev("acme", "cy", "c2", long)))
	step("long token moves", reg(tokDev("acme", "dee", "d1", long), "cy/c2"))

	step("held", func() error {
		_, err := s.RegisterUserDevice(ctx, tokDev("acme", "eve", "e1", "t2"))
		if !errors.Is(err, relay.ErrTokenHeld) {
			return fmt.Errorf("got %v, want ErrTokenHeld", err)
		}
		return nil
	})
	step("user device, own token", func() error {
		_, err := s.RegisterUserDevice(ctx, tokDev("acme", "u4", "p2", "t2"))
		return err
	})
	step("limit refused", func() error {
		_, err := s.RegisterDeviceLimit(ctx, tokDev("acme", "u4", "p3", "t9"), 1)
		if !errors.Is(err, store.ErrTooManyDevices) {
			return fmt.Errorf("got %v, want ErrTooManyDevices", err)
		}
		return nil
	})
	step("limit, replacing", func() error {
		_, err := s.RegisterUserDeviceLimit(ctx, tokDev("acme", "u4", "p2", "t3"), 1)
		return err
	})
	step("limit, taking", func() error {
		_, err := s.RegisterDeviceLimit(ctx, tokDev("acme", "fay", "f1", "t3"), 1)
		return err
	})

	step("delete", func() error { return s.DeleteDevice(ctx, "acme", "ann", "a3") })
	step("remove token, stale", func() error {
		if ok, err := s.RemoveDeviceToken(ctx, "acme", "fay", "f1", "t-old"); err != nil || ok {
			return fmt.Errorf("removed %v, %v", ok, err)
		}
		return nil
	})
	step("remove token", func() error {
		if ok, err := s.RemoveDeviceToken(ctx, "acme", "fay", "f1", "t3"); err != nil || !ok {
			return fmt.Errorf("removed %v, %v", ok, err)
		}
		return nil
	})
	step("put, later", func() error {
		d := tokDev("acme", "gus", "g1", "t5")
		d.UpdatedAt = t0.Add(time.Hour)
		return s.PutDevice(ctx, d)
	})
	step("prune", func() error {
		n, err := s.PruneDevices(ctx, t0.Add(time.Minute))
		if err == nil && n == 0 {
			err = errors.New("pruned nothing")
		}
		return err
	})
	if ds, _ := s.Devices(ctx, "acme", "gus"); len(ds) != 1 {
		t.Fatalf("prune removed the newer device: %v", ds)
	}
	step("register after prune", reg(tokDev("acme", "hal", "h1", "t1")))
	step("register more", reg(tokDev("acme", "hal", "h2", "t6")))
	step("erase user", func() error {
		e, err := s.Erase(ctx, "acme", "hal")
		if err == nil && e.Devices != 2 {
			err = fmt.Errorf("erased %d devices, want 2", e.Devices)
		}
		return err
	})
	step("erase workspace", func() error {
		e, err := s.Erase(ctx, "acme", "")
		if err == nil && e.Devices != 1 {
			err = fmt.Errorf("erased %d devices, want 1", e.Devices)
		}
		return err
	})
	// The other workspace's device, and its index entry, are still there.
	step("other workspace untouched", reg(tokDev("other", "zed", "z1", "t1"), "ann/a1"))
}

// openLogged opens the store at path with its log lines in the returned
// buffer.
func openLogged(t *testing.T, path string) (*Store, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	s, err := Open(path, Options{Logger: hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})})
	if err != nil {
		t.Fatal(err)
	}
	return s, &buf
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// rawUpdate writes the file as a relayd without the index (older, or from
// before it) would.
func rawUpdate(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Update(fn), db.Close()); err != nil {
		t.Fatal(err)
	}
}

const rebuiltLog = "device token index rebuilt"

// TestTokenIndexBuiltAtOpen: a file from before the index (devices, no
// device_tokens bucket) gets it at open, and a registration then finds
// the token's holder.
func TestTokenIndexBuiltAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s, _ := openLogged(t, path)
	fillDevices(t, s, 300, func(i int) relay.Device {
		return tokDev("acme", fmt.Sprintf("u%03d", i), "p", fmt.Sprintf("tok-%d", i))
	})
	closeStore(t, s)
	rawUpdate(t, path, func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketDeviceTokens) })

	s, log := openLogged(t, path)
	defer closeStore(t, s)
	if !strings.Contains(log.String(), rebuiltLog) || !strings.Contains(log.String(), "devices=300") {
		t.Errorf("open logged %q, want the index built for 300 devices", log)
	}
	checkTokenIndex(t, s, "open")
	taken, err := s.RegisterDevice(context.Background(), tokDev("acme", "new", "p", "tok-123"))
	if err != nil || len(taken) != 1 || taken[0].User != "u123" {
		t.Fatalf("registration after open took %+v, %v; want u123's device", taken, err)
	}
	if _, err := s.RegisterUserDevice(context.Background(), tokDev("acme", "new", "p2", "tok-7")); !errors.Is(err, relay.ErrTokenHeld) {
		t.Fatalf("registering u007's token: %v, want ErrTokenHeld", err)
	}
	checkTokenIndex(t, s, "registrations")
}

// TestTokenIndexAfterOlderRelayd: the index is kept over a clean restart,
// and rebuilt when a relayd without it (going back, then forward again)
// wrote the devices meanwhile, or when the file was not closed cleanly
// (a backup's copy).
func TestTokenIndexAfterOlderRelayd(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s, _ := openLogged(t, path)
	for _, d := range []relay.Device{tokDev("acme", "ann", "a1", "t1"), tokDev("acme", "bob", "b1", "t2"), tokDev("acme", "cy", "c1", "t3")} {
		if _, err := s.RegisterDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	closeStore(t, s)

	s, log := openLogged(t, path)
	if strings.Contains(log.String(), rebuiltLog) {
		t.Errorf("a clean restart rebuilt the index: %q", log)
	}
	checkTokenIndex(t, s, "a clean restart")
	closeStore(t, s)

	// An older relayd: a new device holding t9, bob's device gone, cy's
	// token changed, none of it in the index.
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		put := func(d relay.Device) error {
			v, err := json.Marshal(d)
			if err != nil {
				return err
			}
			return b.Put(joinKey(d.Workspace, d.User, d.ID), v)
		}
		return errors.Join(put(tokDev("acme", "dee", "d1", "t9")), b.Delete(joinKey("acme", "bob", "b1")), put(tokDev("acme", "cy", "c1", "t4")))
	})
	s, log = openLogged(t, path)
	if !strings.Contains(log.String(), rebuiltLog) {
		t.Errorf("open after an older relayd logged %q, want the index rebuilt", log)
	}
	checkTokenIndex(t, s, "an older relayd's writes")
	if _, err := s.RegisterUserDevice(ctx, tokDev("acme", "eve", "e1", "t9")); !errors.Is(err, relay.ErrTokenHeld) {
		t.Fatalf("registering the token the older relayd stored: %v, want ErrTokenHeld", err)
	}

	// A backup is a snapshot of an open store: its copy rebuilds.
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(ctx, f, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	c, log := openLogged(t, copyPath)
	defer closeStore(t, c)
	if !strings.Contains(log.String(), rebuiltLog) {
		t.Errorf("opening a backup logged %q, want the index rebuilt", log)
	}
	checkTokenIndex(t, c, "a backup's copy")
}

// TestTokenIndexStaleEntries: index entries no write of this store leaves
// (a device gone, or holding another token) do not refuse the token; the
// registration drops them.
func TestTokenIndexStaleEntries(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.PutDevice(ctx, tokDev("acme", "ann", "a1", "other")); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		idx := tx.Bucket(bucketDeviceTokens)
		return errors.Join(
			idx.Put(tokenIndexKey(joinKey("acme", "gone", "g1"), "t1"), []byte{}),
			idx.Put(tokenIndexKey(joinKey("acme", "ann", "a1"), "t1"), []byte{}))
	})
	if err != nil {
		t.Fatal(err)
	}
	taken, err := s.RegisterUserDevice(ctx, tokDev("acme", "bob", "b1", "t1"))
	if err != nil || len(taken) != 0 {
		t.Fatalf("took %+v, %v; want nothing", taken, err)
	}
	if d, err := s.Device(ctx, "acme", "ann", "a1"); err != nil || d.Token != "other" {
		t.Fatalf("ann's device: %+v, %v", d, err)
	}
	checkTokenIndex(t, s, "registration over stale entries")
}

// TestEraseUserUnreadableDevice: a device whose value cannot be decoded
// leaves no index entry naming the erased user.
func TestEraseUserUnreadableDevice(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.PutDevice(ctx, tokDev("acme", "ann", "a1", "t1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDevice(ctx, tokDev("acme", "annie", "a1", "t2")); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDevices).Put(joinKey("acme", "ann", "a1"), []byte("{damaged"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := s.Erase(ctx, "acme", "ann"); err != nil || e.Devices != 1 {
		t.Fatalf("erase: %+v, %v", e, err)
	}
	checkTokenIndex(t, s, "erase") // annie's entry stays, ann's is gone
	var n int
	_ = s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketDeviceTokens).Stats().KeyN
		return nil
	})
	if n != 1 {
		t.Fatalf("%d index entries, want annie's only", n)
	}
}
