package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/ingest"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

// BenchmarkAcceptBatch is the durable accept path below the socket: an
// NDJSON batch of 1,000 events decoded and validated (ingest.BatchReader),
// filled, decided on accept and stored in a real bolt file (one fsync'd
// commit per batch). 50 users with a phone each;
// the four notification types in turn, as in BenchmarkEndToEnd.
//
//	go test -run '^$' -bench AcceptBatch -benchtime 20x ./relay/pipeline/
func BenchmarkAcceptBatch(b *testing.B) {
	st := bolttest.Open(b)
	ctx := context.Background()
	const users = 50
	for u := range users {
		if _, err := st.RegisterDevice(ctx, relay.Device{Workspace: "bench", User: fmt.Sprintf("u-%d", u), ID: "pixel", Platform: relay.PlatformAndroid, Token: fmt.Sprintf("tok-%d", u), App: "demo"}); err != nil {
			b.Fatal(err)
		}
	}
	p := New(Options{Config: testConfig(b), Store: st, Queue: &captureQueue{}, DecideOnAccept: true})
	types := []string{relay.TypeOTPReceived, relay.TypeAccountShared, relay.TypeNewTrustedDevice, relay.TypeIdentityVerification}
	known := func(t string) bool { return p.cfg.Load().Notifications[t] != nil }
	var body bytes.Buffer
	const batch = 1000
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		body.Reset()
		for i := range batch {
			fmt.Fprintf(&body, `{"id":"e-%d-%d","workspace":"bench","user":"u-%d","type":%q,"title":"Sign-in","body":"Approve sign-in from 203.0.113.9?"}`+"\n", n, i, i%users, types[i%len(types)])
		}
		b.StartTimer()
		br := ingest.NewBatchReader(&body, known)
		events := make([]relay.Event, 0, batch)
		for {
			l, ok := br.Next()
			if !ok {
				break
			}
			if l.Err != nil {
				b.Fatal(l.Err)
			}
			events = append(events, l.Event)
		}
		errs, err := p.Accept(ctx, events)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range errs {
			if e != nil {
				b.Fatal(e)
			}
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
	// CPU per event (the process's, batch generation included) is steadier
	// than the rate on a shared machine.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N*batch), "cpu-µs/event")
}

// cpuTime is the process's user+system CPU time.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
