package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// TestCheckStoreCyclicPage: a branch page whose child is itself sent the
// check child round in circles for ever, and relayd never started nor
// exited (TestDamagedStoreNeverCrashes hit it once in 60 random
// corruptions). The check is now bounded and such a file is damaged.
func TestCheckStoreCyclicPage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cyclic.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("events"))
		if err != nil {
			return err
		}
		for i := range 5000 {
			if err := b.Put(fmt.Appendf(nil, "key-%06d", i), []byte(strings.Repeat("v", 100))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize, branch = 4096, 0x01
	patched := false
	for p := 0; p < len(data)/pageSize && !patched; p++ {
		pg := data[p*pageSize:]
		id, flags, count := binary.LittleEndian.Uint64(pg), binary.LittleEndian.Uint16(pg[8:]), binary.LittleEndian.Uint16(pg[10:])
		if flags == branch && count >= 2 && id == uint64(p) {
			binary.LittleEndian.PutUint64(pg[16+8:], id) // first child: the page itself
			patched = true
		}
	}
	if !patched {
		t.Fatal("no branch page to damage")
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAYD_TEST_MAIN", "1") // the child is this test binary: run as relayd
	saved := checkTimeout
	checkTimeout = func(int64) time.Duration { return 2 * time.Second }
	defer func() { checkTimeout = saved }()
	start := time.Now()
	err = checkStore(path)
	if !errors.Is(err, bolt.ErrDamaged) || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("check of a cyclic file: %v, want damaged (did not finish)", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the check took %s", took)
	}
}
