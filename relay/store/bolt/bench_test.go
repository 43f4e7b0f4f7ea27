package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
)

// BenchmarkAddEventsParallel measures group commit: many callers adding
// events at once, each call durable on return.
func BenchmarkAddEventsParallel(b *testing.B) {
	for _, per := range []int{1, 100} {
		for _, callers := range []int{2, 16, 128} {
			// RunParallel starts parallelism*GOMAXPROCS goroutines.
			p := max(1, callers/runtime.GOMAXPROCS(0))
			b.Run(fmt.Sprintf("events=%d/callers=%d", per, p*runtime.GOMAXPROCS(0)), func(b *testing.B) {
				s := openTest(b)
				ctx := context.Background()
				var next atomic.Int64
				b.SetParallelism(p)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					batch := make([]relay.Event, per)
					for pb.Next() {
						for i := range batch {
							batch[i] = ev("acme", fmt.Sprintf("e%d", next.Add(1)))
						}
						res, err := s.AddEvents(ctx, batch, t0)
						if err != nil {
							b.Error(err)
							return
						}
						for _, r := range res {
							if r != nil {
								b.Error(r)
								return
							}
						}
					}
				})
				b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkDecide measures concurrent decisions with two jobs each.
func BenchmarkDecide(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	keys := make([]relay.EventKey, b.N)
	for i := 0; i < b.N; i += 1000 {
		var batch []relay.Event
		for j := i; j < min(i+1000, b.N); j++ {
			e := ev("acme", fmt.Sprintf("e%08d", j))
			keys[j] = e.Key()
			batch = append(batch, e)
		}
		if _, err := s.AddEvents(ctx, batch, t0); err != nil {
			b.Fatal(err)
		}
	}
	d := relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled,
		Plugins: []relay.PluginDecision{{Name: "quiet", Hash: "0123456789abcdef", Verdict: "allow"}}}
	alert := &relay.Alert{Title: "Code for GitHub", Body: "Tap to copy", Priority: relay.PriorityHigh, ExpiresAt: t0}
	var next atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := keys[next.Add(1)-1]
			jobs := []relay.Job{job(k, "phone-a", relay.StatePending), job(k, "phone-b", relay.StatePending)}
			if err := s.Decide(ctx, k, d, alert, jobs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkOpenJobs walks 1,000,000 open jobs, as recovery does after a
// restart. One op is one full walk.
func BenchmarkOpenJobs(b *testing.B) {
	const n = 1_000_000
	path := filepath.Join(b.TempDir(), "relay.db")
	s := openAt(b, path)
	fillOpenJobs(b, s.db, n)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		count := 0
		err := s.OpenJobs(context.Background(), func(relay.Job) error { count++; return nil })
		if err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("walked %d jobs, want %d", count, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// fillOpenJobs writes n open jobs directly (Decide would take minutes),
// with the keys and values Decide would write.
func fillOpenJobs(tb testing.TB, db *bbolt.DB, n int) {
	tb.Helper()
	const perTx = 50_000
	for i := 0; i < n; i += perTx {
		err := db.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket(bucketJobsOpen)
			bk.FillPercent = 0.9 // keys arrive in order
			for j := i; j < min(i+perTx, n); j++ {
				k := relay.EventKey{Workspace: "acme", ID: fmt.Sprintf("evt-%08d", j/2)}
				jb := job(k, fmt.Sprintf("device-%d", j%2), relay.StatePending)
				jb.NextAt = t0.Add(time.Duration(j) * time.Millisecond)
				if err := bk.Put(jobKey(k, jb.DeviceID), encodeJob(&jb)); err != nil {
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
