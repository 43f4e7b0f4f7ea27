package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/storetest"
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

// BenchmarkStoreGrowth stores EDGERELAY_BENCH_STORE_EVENTS (default
// 200,000) events the way relayd does at saturation (decided on accept in
// batches of 1,000, one iOS job each, leased and settled delivered), then
// reports the file's bytes per delivered event, how long a restart takes
// (relayd's start-up check, which reads the whole file, and Open) and how
// much of the file Open maps in.
//
//	EDGERELAY_BENCH_STORE_EVENTS=1000000 go test -run '^$' -bench StoreGrowth -benchtime 1x ./relay/store/bolt/
func BenchmarkStoreGrowth(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("EDGERELAY_BENCH_STORE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		path := filepath.Join(b.TempDir(), "relay.db")
		if p := os.Getenv("EDGERELAY_BENCH_STORE_PATH"); p != "" {
			path = p // kept for restart measurements (relayd on a big store)
		}
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		now := time.Now()
		storetest.FillDelivered(b, s, n, now, func(user string) string { return fmt.Sprintf("%064x", user) })
		if os.Getenv("EDGERELAY_BENCH_STORE_STATS") != "" {
			s.db.View(func(tx *bbolt.Tx) error {
				return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
					st := bk.Stats()
					b.Logf("%-13s keys %7d leaf pages %6d (%5.1f MiB, %3.0f%% used) overflow %d branch %d", name, st.KeyN, st.LeafPageN,
						float64(st.LeafAlloc)/(1<<20), 100*float64(st.LeafInuse)/float64(max(1, st.LeafAlloc)), st.LeafOverflowN, st.BranchPageN)
					return nil
				})
			})
			st := s.db.Stats()
			b.Logf("free pages %d, pending %d", st.FreePageN, st.PendingPageN)
		}
		if err := s.Close(ctx); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		// A restart: relayd's start-up check (in a child process there),
		// then Open and a first read.
		t0 := time.Now()
		if err := Check(path); err != nil {
			b.Fatal(err)
		}
		checked := time.Since(t0)
		rss0 := rssFileKiB(b)
		t1 := time.Now()
		s, err = Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Since(t1)
		if _, err := s.OpenJobs(ctx); err != nil {
			b.Fatal(err)
		}
		mapped := rssFileKiB(b) - rss0
		s.Close(ctx)
		b.ReportMetric(float64(fi.Size())/float64(n), "file-B/event")
		b.ReportMetric(float64(checked.Milliseconds()), "startcheck-ms")
		b.ReportMetric(float64(opened.Milliseconds()), "open-ms")
		b.ReportMetric(float64(mapped)/1024, "reopen-file-RSS-MiB")
	}
}

// rssFileKiB is this process's file-backed resident memory.
func rssFileKiB(tb testing.TB) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb
		}
	}
	return 0
}

// BenchmarkDeliveryCycle is the store's share of one delivery, the way
// relayd drives it: events decided on accept in batches of 50 (saturation)
// or one by one (one event per POST), one iOS job each, the lane leasing
// what is due, and each job settled delivered by its own caller,
// concurrently. One op is one event through AddDecided → Lease → Settle;
// allocs/op is the store's allocations per delivery (the benchmark's own
// event building included: ~6) and cpu-ns/op the process's CPU (rusage) per
// delivery, the figure that does not follow the disk's fsync time.
//
//	go test -run '^$' -bench DeliveryCycle -benchtime 20000x ./relay/store/bolt/
func BenchmarkDeliveryCycle(b *testing.B) {
	for _, batch := range []int{50, 1} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchDeliveryCycle(b, batch) })
	}
}

func benchDeliveryCycle(b *testing.B, batch int) {
	s := openTest(b)
	ctx := context.Background()
	now := time.Now()
	for u := range 1000 {
		user := fmt.Sprintf("u-%d", u)
		if _, err := s.RegisterDevice(ctx, relay.Device{Workspace: "bench", User: user, ID: "iphone",
			Platform: relay.PlatformIOS, App: "demo", Token: fmt.Sprintf("%064x", u)}); err != nil {
			b.Fatal(err)
		}
	}
	lane := relay.Lane("demo", relay.PlatformIOS)
	settle := make(chan store.Leased)
	var wg sync.WaitGroup
	for range batch {
		wg.Go(func() {
			for l := range settle {
				j := l.Job
				j.State, j.Attempts, j.UpdatedAt = relay.StateDelivered, 1, now
				if err := s.Settle(ctx, l, j); err != nil {
					b.Error(err)
				}
			}
		})
	}
	evs := make([]relay.Event, batch)
	ds := make([]*store.Decided, batch)
	next := 0
	round := func(n int) {
		evs, ds := evs[:n], ds[:n]
		for i := range evs {
			e := relay.Event{ID: fmt.Sprintf("e-%d", next), Workspace: "bench", User: fmt.Sprintf("u-%d", next%1000), Type: relay.TypeOTPReceived,
				Title: "Code for GitHub", Body: "Tap to copy", Data: map[string]string{"account": "github"}, Priority: relay.PriorityHigh,
				ExpiresAt: now.Add(5 * time.Minute)}
			next++
			evs[i] = e
			ds[i] = &store.Decided{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled},
				Alert: &relay.Alert{EventID: e.ID, Workspace: e.Workspace, Type: e.Type, Title: e.Title, Body: e.Body, Data: e.Data,
					Priority: e.Priority, CollapseID: e.ID, ExpiresAt: e.ExpiresAt},
				Jobs: []relay.Job{{DeviceID: "iphone", Platform: relay.PlatformIOS, App: "demo", State: relay.StatePending, ExpiresAt: e.ExpiresAt, UpdatedAt: now}}}
		}
		if _, err := s.AddDecided(ctx, evs, ds, now); err != nil {
			b.Fatal(err)
		}
		leased, _, err := s.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: "relay-1", Now: time.Now(), TTL: time.Minute, Max: n})
		if err != nil || len(leased) != n {
			b.Fatalf("leased %d of %d: %v", len(leased), n, err)
		}
		for _, l := range leased {
			settle <- l
		}
	}
	for range 1000 / batch {
		round(batch) // warm: buckets, the device cache (1,000 users)
	}
	cpu0 := cpuNanos(b)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		round(min(batch, b.N-done))
	}
	close(settle)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuNanos(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if n, err := s.OpenJobs(ctx); err != nil || n.High+n.Normal != 0 {
		b.Fatalf("open jobs left: %+v, %v", n, err)
	}
}

// cpuNanos is this process's user+system CPU time.
func cpuNanos(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
