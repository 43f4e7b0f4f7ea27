package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/edgerelay/edgerelay/relay"
)

// maxBatch is a maximum NDJSON batch, generated as it is read: n events
// of about 15 KiB each.
type maxBatch struct {
	tag  string
	n, i int
	buf  bytes.Buffer
}

const benchEventFill = 14 // data entries of 1,000 characters: events of about 15 KiB

func (m *maxBatch) line(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":"%s-%05d","workspace":"w","user":"u","type":"account_shared","body":"%s","data":{`, m.tag, i, strings.Repeat("b", 500))
	for k := range benchEventFill {
		if k > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%02d":"%s"`, k, strings.Repeat("v", 1000))
	}
	b.WriteString("}}\n")
	return b.String()
}

func (m *maxBatch) size() int64 { return int64(m.n) * int64(len(m.line(0))) }

func (m *maxBatch) Read(p []byte) (int, error) {
	for m.buf.Len() < len(p) && m.i < m.n {
		m.buf.WriteString(m.line(m.i))
		m.i++
	}
	if m.buf.Len() == 0 {
		return 0, io.EOF
	}
	return m.buf.Read(p)
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes, and
// resetPeakRSS starts a new peak (Linux only).
func peakRSS(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	tb.Skip("no VmHWM")
	return 0
}

func resetPeakRSS(tb testing.TB) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		tb.Skipf("cannot reset the peak RSS: %v", err)
	}
}

// BenchmarkConcurrentMaxBatches posts three maximum batches (10,000 events
// of about 15 KiB, about 150 MiB each) at once and reports the peak RSS
// of the process (client included) and the batches answered 503. The
// acceptor keeps nothing (a store writes to disk), so what is measured is
// what the socket server holds. With the default budget (256 MiB) one
// batch fits and the others are refused; with 512 MiB all three are
// streamed at once.
//
//	go test -run '^$' -bench ConcurrentMaxBatches -benchtime 1x ./relay/ingest/
func BenchmarkConcurrentMaxBatches(b *testing.B) {
	for _, limit := range []int64{DefaultMaxInflightBytes, 512 << 20} {
		b.Run(fmt.Sprintf("budget=%dMiB", limit>>20), func(b *testing.B) {
			var stored sync.Map
			ts := startServer(b, func(o *Options) {
				o.MaxInflightBytes = limit
				o.Acceptor = AcceptorFunc(func(_ context.Context, events []relay.Event) ([]error, error) {
					stored.Store(events[0].ID, len(events))
					return make([]error, len(events)), nil
				})
			})
			for b.Loop() {
				resetPeakRSS(b)
				var wg sync.WaitGroup
				statuses := make([]int, 3)
				for k := range statuses {
					wg.Go(func() {
						body := &maxBatch{tag: fmt.Sprintf("b%d", k), n: relay.MaxBatchEvents}
						req, _ := http.NewRequest(http.MethodPost, "http://relayd/v1/events", body)
						req.ContentLength = body.size()
						req.Header.Set("Content-Type", MediaTypeNDJSON)
						resp, err := ts.client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						statuses[k] = resp.StatusCode
					})
				}
				wg.Wait()
				peak := peakRSS(b)
				refused := 0
				for _, s := range statuses {
					switch s {
					case http.StatusAccepted:
					case http.StatusServiceUnavailable:
						refused++
					default:
						b.Fatalf("statuses %v", statuses)
					}
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
				b.ReportMetric(float64(refused), "refused-503")
				if peak > limit+100<<20 {
					b.Fatalf("peak RSS %d MiB, over the budget (%d MiB) + 100 MiB", peak>>20, limit>>20)
				}
				if limit == DefaultMaxInflightBytes && refused != 2 {
					b.Fatalf("statuses %v: want the two batches beyond the budget refused", statuses)
				}
			}
		})
	}
}

// BenchmarkPostBatch posts an NDJSON batch of 50 small events (the end-to-end
// benchmark's shape) straight to the handler, with an acceptor that stores
// nothing: what the socket API itself costs per batch.
func BenchmarkPostBatch(b *testing.B) {
	var body bytes.Buffer
	for i := range 50 {
		fmt.Fprintf(&body, `{"id":"e-%d","workspace":"bench","user":"u-%d","type":"account_shared","title":"Sign-in","body":"Approve sign-in from 203.0.113.9?"}`+"\n", i, i%10)
	}
	s := New(Options{
		Path: "unused",
		Acceptor: AcceptorFunc(func(_ context.Context, events []relay.Event) ([]error, error) {
			return make([]error, len(events)), nil
		}),
		Store:    newMemStore(),
		Types:    func() map[string]relay.Setting { return testTypes },
		KnownApp: func(a string) bool { return a == "demo" },
	})
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body.Bytes()))
		req.Header.Set("Content-Type", MediaTypeNDJSON)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
