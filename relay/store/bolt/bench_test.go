package bolt

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

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
