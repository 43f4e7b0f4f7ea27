package jetstream_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/natsd/natsdtest"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/jetstream"
)

// benchSetups are the deployments compared: one node with JetStream's
// default fsync interval (2 minutes), one node fsyncing every write, and
// three replicas (default fsync interval: an ack means a quorum holds the
// write in memory).
var benchSetups = []struct {
	name     string
	nodes    int
	sync     bool
	replicas int
}{
	{"R1", 1, false, 1},
	{"R1sync", 1, true, 1},
	{"R3", 3, false, 3},
	{"R3sync", 3, true, 3},
}

// BenchmarkWrites measures the raw JetStream writes the store is built
// from, with 64 concurrent writers: a KV create of 64 bytes and a stream
// publish of 400 bytes (each waits for its ack).
//
//	go test -run XXX -bench Writes -benchtime 3s ./relay/store/jetstream/
func BenchmarkWrites(b *testing.B) {
	for _, setup := range benchSetups {
		b.Run(setup.name, func(b *testing.B) {
			servers := natsdtest.Start(b, setup.nodes, natsdtest.Config{SyncAlways: setup.sync})
			nc, err := servers[0].Conn()
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := njs.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			kv, err := js.CreateKeyValue(ctx, njs.KeyValueConfig{Bucket: "bench", Replicas: setup.replicas, Storage: njs.FileStorage})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.CreateStream(ctx, njs.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Replicas: setup.replicas}); err != nil {
				b.Fatal(err)
			}
			val, msg := make([]byte, 64), make([]byte, 400)
			var n atomic.Int64
			b.Run("kv-create", func(b *testing.B) {
				b.SetParallelism(32) // 64 writers on 2 CPUs
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := kv.Create(ctx, fmt.Sprintf("k%d", n.Add(1)), val); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			})
			b.Run("publish", func(b *testing.B) {
				b.SetParallelism(32)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := js.Publish(ctx, "bench.x", msg); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			})
		})
	}
}

// BenchmarkAddEvents measures accepted events per second through the
// store: 64 concurrent callers of one event each, and batches of 100
// (one index message and 100 creates per call).
//
//	go test -run XXX -bench AddEvents -benchtime 3s ./relay/store/jetstream/
func BenchmarkAddEvents(b *testing.B) {
	for _, setup := range benchSetups {
		b.Run(setup.name, func(b *testing.B) {
			servers := natsdtest.Start(b, setup.nodes, natsdtest.Config{SyncAlways: setup.sync})
			nc, err := servers[0].Conn()
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			ctx := context.Background()
			s, err := jetstream.Open(ctx, jetstream.Options{Conn: nc, Replicas: setup.replicas, Prefix: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(ctx)
			var n atomic.Int64
			ev := func() relay.Event {
				now := time.Now()
				return relay.Event{ID: fmt.Sprintf("evt-%d", n.Add(1)), Workspace: "acme", User: "u-42", Type: relay.TypeOTPReceived,
					Title: "Code for GitHub", Body: "Tap to copy", Priority: relay.PriorityHigh, OccurredAt: now, ExpiresAt: now.Add(5 * time.Minute)}
			}
			b.Run("single", func(b *testing.B) {
				b.SetParallelism(32)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.AddEvents(ctx, []relay.Event{ev()}, time.Now()); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
			b.Run("batch100", func(b *testing.B) {
				evs := make([]relay.Event, 100)
				for b.Loop() {
					for i := range evs {
						evs[i] = ev()
					}
					if _, err := s.AddEvents(ctx, evs, time.Now()); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
			})
		})
	}
}

// BenchmarkLeaseSettle measures jobs per second through the schedule:
// four workers lease up to 50 due jobs of one lane and settle them as
// delivered, concurrently (scheduling the jobs is not timed).
//
//	go test -run XXX -bench LeaseSettle -benchtime 2000x ./relay/store/jetstream/
func BenchmarkLeaseSettle(b *testing.B) {
	for _, setup := range benchSetups {
		b.Run(setup.name, func(b *testing.B) {
			s := storeWithOpenJobs(b, setup.nodes, setup.sync, setup.replicas, b.N)
			ctx := context.Background()
			lane := relay.Lane("demo", relay.PlatformAndroid)
			var wg sync.WaitGroup
			var done atomic.Int64
			b.ResetTimer()
			for w := range 4 {
				wg.Go(func() {
					for done.Load() < int64(b.N) {
						got, _, err := s.Lease(ctx, store.LeaseRequest{Lane: lane, Owner: fmt.Sprint("w", w), Now: time.Now(),
							TTL: time.Minute, Max: 50, Wait: 100 * time.Millisecond})
						if err != nil {
							b.Error(err)
							return
						}
						var sg sync.WaitGroup
						for _, l := range got {
							sg.Go(func() { // a queue sends and settles its leases concurrently
								j := l.Job
								j.State, j.Attempts, j.UpdatedAt = relay.StateDelivered, 1, time.Now()
								if err := s.Settle(ctx, l, j); err != nil {
									b.Error(err)
								}
								done.Add(1)
							})
						}
						sg.Wait()
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// BenchmarkLaneStats measures one LaneStats call (what /metrics and GET
// /v1/queue cost) over a lane with 2,000 open jobs.
//
//	go test -run XXX -bench LaneStats -benchtime 5x ./relay/store/jetstream/
func BenchmarkLaneStats(b *testing.B) {
	const open = 2000
	for _, setup := range benchSetups {
		if setup.sync {
			continue // reads: fsync does not matter
		}
		b.Run(setup.name, func(b *testing.B) {
			s := storeWithOpenJobs(b, setup.nodes, false, setup.replicas, open)
			ctx := context.Background()
			for b.Loop() {
				st, err := s.LaneStats(ctx, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				if len(st) != 1 || st[0].Normal != open || st[0].Due != open {
					b.Fatalf("lane stats %+v, want %d open and due", st, open)
				}
			}
		})
	}
}

// storeWithOpenJobs opens a store on a fresh cluster of nodes and gives it
// n accepted events, each decided with one pending Android job (lane
// demo/android), due now. The store and servers close with b.
func storeWithOpenJobs(b *testing.B, nodes int, syncAlways bool, replicas, n int) *jetstream.Store {
	servers := natsdtest.Start(b, nodes, natsdtest.Config{SyncAlways: syncAlways})
	nc, err := servers[0].Conn()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	ctx := context.Background()
	s, err := jetstream.Open(ctx, jetstream.Options{Conn: nc, Replicas: replicas, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(ctx) })
	now := time.Now()
	evs := make([]relay.Event, n)
	for i := range evs {
		evs[i] = relay.Event{ID: fmt.Sprintf("e%d", i), Workspace: "acme", User: "u-1", Type: relay.TypeAccountShared,
			OccurredAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	for start := 0; start < len(evs); start += 1000 {
		if _, err := s.AddEvents(ctx, evs[start:min(start+1000, len(evs))], now); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, ev := range evs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			j := relay.Job{Event: ev.Key(), DeviceID: "d-1", Platform: relay.PlatformAndroid, App: "demo",
				State: relay.StatePending, ExpiresAt: ev.ExpiresAt, UpdatedAt: now}
			if err := s.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver}, nil, []relay.Job{j}); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	return s
}
