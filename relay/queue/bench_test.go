package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// startupJobs is the open-job count of BenchmarkStartup (override with
// EDGERELAY_STARTUP_JOBS).
func startupJobs() int {
	if n, err := strconv.Atoi(os.Getenv("EDGERELAY_STARTUP_JOBS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// buildBacklog writes a store with n open jobs: n/10 events, each for the
// ten devices of one user, due in event order.
func buildBacklog(b *testing.B, path string, n int) {
	b.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close(context.Background())
	ctx := context.Background()
	now := time.Now()
	const devices = 10
	for d := range devices {
		if _, err := st.RegisterDevice(ctx, relay.Device{Workspace: "ws", User: "u", ID: fmt.Sprintf("d%d", d), Platform: relay.PlatformIOS, App: "demo", Token: fmt.Sprintf("t%d", d)}); err != nil {
			b.Fatal(err)
		}
	}
	events := n / devices
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(500)) - 500
				if i >= events {
					return
				}
				batch := make([]relay.Event, 0, 500)
				for k := i; k < min(i+500, events); k++ {
					batch = append(batch, relay.Event{ID: fmt.Sprintf("e%08d", k), Workspace: "ws", User: "u", Type: relay.TypeAccountShared,
						Title: "Shared", Body: "An account was shared with you", ExpiresAt: now.Add(24 * time.Hour)})
				}
				if _, err := st.AddEvents(ctx, batch, now); err != nil {
					b.Error(err)
					return
				}
				for _, e := range batch {
					k, _ := strconv.Atoi(e.ID[1:])
					at := now.Add(time.Duration(k) * time.Microsecond)
					jobs := make([]relay.Job, devices)
					for d := range jobs {
						jobs[d] = relay.Job{DeviceID: fmt.Sprintf("d%d", d), Platform: relay.PlatformIOS, App: "demo", State: relay.StatePending, ExpiresAt: e.ExpiresAt, UpdatedAt: at}
					}
					a := &relay.Alert{EventID: e.ID, Workspace: "ws", Type: e.Type, Title: e.Title, Body: e.Body, ExpiresAt: e.ExpiresAt, CollapseID: e.ID}
					if err := st.Decide(ctx, e.Key(), relay.Decision{Verdict: relay.VerdictDeliver, Reason: "enabled"}, a, jobs); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// firstSend is a notifier that reports its first call and then holds every
// send until the context ends (so the store is not changed).
type firstSend struct {
	once  sync.Once
	first chan struct{}
}

func (f *firstSend) Notify(ctx context.Context, _ relay.Device, _ *relay.Alert) error {
	f.once.Do(func() { close(f.first) })
	<-ctx.Done()
	return ctx.Err()
}

// BenchmarkStartup measures a start on a store with 1,000,000 open jobs:
// from opening the store to the first send, and to the first lease of
// every lane slot. The store is built in a temporary directory first
// (about a minute for 1M jobs); run with -benchtime 1x.
func BenchmarkStartup(b *testing.B) {
	n := startupJobs()
	path := filepath.Join(b.TempDir(), "relay.db")
	t0 := time.Now()
	buildBacklog(b, path, n)
	b.Logf("built a store with %d open jobs in %v", n, time.Since(t0).Round(time.Millisecond))
	if fi, err := os.Stat(path); err == nil {
		b.Logf("store file: %.0f MiB", float64(fi.Size())/(1<<20))
	}
	b.ResetTimer()
	var toOpen, toFirst time.Duration
	for range b.N {
		start := time.Now()
		st, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		toOpen += time.Since(start)
		n1 := &firstSend{first: make(chan struct{})}
		q := New(Options{Schedule: st, Devices: st, Lanes: map[string]Lane{relay.Lane("demo", relay.PlatformIOS): {Notifier: n1, Concurrency: 64}},
			DrainTimeout: time.Millisecond})
		if open := q.Open(); open != 0 {
			b.Fatalf("open before Run: %d", open)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { q.Run(ctx); close(done) }()
		<-n1.first
		toFirst += time.Since(start)
		cancel()
		<-done
		if open := q.Open(); open != n {
			b.Fatalf("open jobs %d, want %d", open, n)
		}
		st.Close(context.Background())
	}
	b.StopTimer()
	b.ReportMetric(float64(toOpen.Milliseconds())/float64(b.N), "ms-to-open")
	b.ReportMetric(float64(toFirst.Milliseconds())/float64(b.N), "ms-to-first-send")
}
