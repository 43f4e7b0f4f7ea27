package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// BenchmarkRegisterDevice measures one registration (an app start: the
// device registers again with its token) in a workspace holding n
// devices. The registration runs on the committer, so its cost is also
// the wait of every accept, lease and settle behind it.
func BenchmarkRegisterDevice(b *testing.B) {
	for _, n := range []int{1_000, 50_000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			s := openTest(b)
			ctx := context.Background()
			dev := func(i int) relay.Device {
				return relay.Device{Workspace: "acme", User: fmt.Sprintf("u%06d", i), ID: "phone",
					Platform: relay.PlatformIOS, Token: fmt.Sprintf("%064x", i), App: "demo", UpdatedAt: t0}
			}
			fillDevices(b, s, n, dev)
			// CPU per registration: the wall time is mostly the commit's
			// fsync, which varies with the disk and the neighbours.
			cpu0 := cpuNanos(b)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.RegisterUserDevice(ctx, dev(i*7919%n)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuNanos(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// fillDevices stores n devices in large transactions, as n registrations
// would (without a commit each).
func fillDevices(tb testing.TB, s *Store, n int, dev func(int) relay.Device) {
	tb.Helper()
	for lo := 0; lo < n; lo += 10_000 {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i := lo; i < min(n, lo+10_000); i++ {
				d := dev(i)
				v, err := json.Marshal(d)
				if err != nil {
					return err
				}
				if err := putDeviceValue(tx, joinKey(d.Workspace, d.User, d.ID), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkTokenIndexRebuild measures the token index's rebuild at open
// (after a crash, an older relayd or a restored backup) with 100,000
// devices: time added to start-up.
func BenchmarkTokenIndexRebuild(b *testing.B) {
	s := openTest(b)
	fillDevices(b, s, 100_000, func(i int) relay.Device {
		return relay.Device{Workspace: "acme", User: fmt.Sprintf("u%06d", i), ID: "phone",
			Platform: relay.PlatformIOS, Token: fmt.Sprintf("%064x", i), App: "demo", UpdatedAt: t0}
	})
	b.ResetTimer()
	for range b.N {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			if err := tx.Bucket(bucketDeviceTokens).SetSequence(0); err != nil { // not closed cleanly
				return err
			}
			n, err := openTokenIndex(tx)
			if err == nil && n != 100_000 {
				err = fmt.Errorf("indexed %d devices, want 100000", n)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
