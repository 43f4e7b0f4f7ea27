package daemon_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// benchEvents is the number of events per end-to-end run (override with
// EDGERELAY_BENCH_EVENTS).
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("EDGERELAY_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 20_000
}

// benchBackends are the store backends BenchmarkEndToEnd compares
// (EDGERELAY_BENCH_BACKENDS, comma-separated; default all three).
func benchBackends() []backend {
	all := map[string]backend{"bolt": boltBackend, "jetstream-1": jetstreamBackend(1, 1), "jetstream-3": jetstreamBackend(3, 3)}
	names := []string{"bolt", "jetstream-1", "jetstream-3"}
	if v := os.Getenv("EDGERELAY_BENCH_BACKENDS"); v != "" {
		names = strings.Split(v, ",")
	}
	var out []backend
	for _, n := range names {
		if b, ok := all[strings.TrimSpace(n)]; ok {
			out = append(out, b)
		}
	}
	return out
}

// loadResult is one end-to-end run's numbers.
type loadResult struct {
	name          string
	events        int
	deliveries    int
	acceptPerSec  float64
	deliverPerSec float64
	p50, p99      time.Duration
	cpuPer1k      float64 // relayd CPU seconds per 1,000 deliveries
	// benchCPUPerDel: this process's CPU per delivery over the same
	// span: the load generator and the fakes, which share the machine
	// with relayd (in a deployment they are other machines).
	benchCPUPerDel time.Duration
	peakRSSMiB     float64
	idleRSSMiB     float64 // after start (plugins loaded), before any load
	// peakAnonMiB, peakFileMiB: the highest anonymous (heap, stacks) and
	// file-backed (binary, bbolt's mmap) RSS sampled during the run.
	peakAnonMiB, peakFileMiB float64
	// binMiB, storeMapMiB: the file-backed RSS of relayd's binary and of
	// the store file's mmap at the end of the run.
	binMiB, storeMapMiB float64
	// postP50, postP99: a POST's round trip (accept, durable).
	postP50, postP99 time.Duration
	storeBytes       float64 // store data on disk per event
	// acceptCPU is relayd's CPU from the first post to the last answer per
	// event posted (deliveries under way in that time included): steadier
	// than accepted/s on a shared machine.
	acceptCPU time.Duration
	// allocPerDel: bytes relayd's Go code allocated per delivery
	// (go_memstats_alloc_bytes_total over the run). Unlike CPU it hardly
	// depends on what else the machine runs, so it shows an allocation
	// change that the CPU columns' noise hides. The garbage collector's
	// work follows it.
	allocPerDel float64
	// writerBusy: the share of the run the store's writer spent
	// committing (bolt's edgerelay_store_commit_busy_seconds_total; 0 for
	// JetStream). Near 1, writes queue behind the disk.
	writerBusy float64
	// commitsPerEvent: the group commits the store ran per event
	// (bolt; 0 for JetStream). Each costs two fdatasyncs.
	commitsPerEvent float64
	// again: alert pushes after an event's first on the same provider
	// (at-least-once: a lease that ran out, a send cut in flight).
	// withdraws: expiry withdraws, the silent push that takes a delivered
	// prompt off the phone when it expires unanswered (by design, and
	// only in runs that outlast a prompt's TTL). Neither counts as a
	// delivery.
	again, withdraws int
}

// alertsOf sorts pushes into each event's first alert (by provider and
// event id, with when it arrived), the alerts pushed again, and the expiry
// withdraws.
func alertsOf(pushes []relaytest.Push) (first map[string]time.Time, again, withdraws int) {
	first = make(map[string]time.Time, len(pushes))
	for i := range pushes {
		p := &pushes[i]
		d := p.Data()
		if d["action"] == relay.WithdrawExpired && d[relay.WithdrawReasonKey] == relay.WithdrawExpired {
			withdraws++
			continue
		}
		k := p.Provider + "/" + d["event_id"]
		if _, ok := first[k]; ok { // the fakes record pushes as they arrive
			again++
			continue
		}
		first[k] = p.Time
	}
	return first, again, withdraws
}

// waitForAlerts waits until a fake has an alert of each of n events: a run
// that outlasts a prompt's TTL pushes its expiry withdraw too, and an alert
// may go out twice, so n pushes can come before the last alert.
func waitForAlerts(ctx context.Context, wait func(context.Context, int) ([]relaytest.Push, error), n int) ([]relaytest.Push, error) {
	for want := n; ; {
		ps, err := wait(ctx, want)
		if err != nil {
			return ps, err
		}
		first, _, _ := alertsOf(ps)
		if len(first) >= n {
			return ps, nil
		}
		want = len(ps) + n - len(first)
	}
}

// BenchmarkEndToEnd loads relayd (a subprocess) through its socket and
// measures what reaches the APNs and FCM fakes, then pushes the same number
// of notifications with a bare apns2 client to the same fake for comparison
// (benchRounds times, alternating with relayd's apns-only burst: the ratio
// is the median of the rounds').
// Run with: make bench (go test -run '^$' -bench BenchmarkEndToEnd -benchtime 1x ./relay/daemon/).
func BenchmarkEndToEnd(b *testing.B) {
	n := benchEvents()
	var results []loadResult
	type scenario struct {
		name     string
		latency  time.Duration
		android  bool
		rate     int  // events/s; 0: as fast as the socket takes them
		boltOnly bool // the cluster backends run the main scenarios only
		batch    int  // events per POST (default 50)
	}
	var runs []struct {
		scenario
		be backend
	}
	for _, be := range benchBackends() {
		for _, sc := range []scenario{
			{"apns+fcm/latency=0ms", 0, true, 0, false, 0},
			{"apns+fcm/latency=20ms", 20 * time.Millisecond, true, 0, true, 0},
			{"apns-only/latency=0ms", 0, false, 0, true, 0},
			{"apns+fcm/paced-1000/s", 0, true, 1000, false, 0},
			{"apns+fcm/paced-1000/s/20ms", 20 * time.Millisecond, true, 1000, true, 0},
			// The latency target: one event per POST at 2,000/s.
			{"apns-only/paced-2000/s/1-per-post", 0, false, 2000, true, 1},
			// The accept target: NDJSON batches of 1,000.
			{"apns-only/latency=0ms/batch=1000", 0, false, 0, true, 1000},
		} {
			if sc.boltOnly && be.name != "bolt" {
				continue
			}
			runs = append(runs, struct {
				scenario
				be backend
			}{sc, be})
		}
	}
	runOne := func(sc scenario, be backend) loadResult {
		name := be.name + "/" + sc.name
		var r loadResult
		b.Run(name, func(b *testing.B) {
			for range b.N {
				events := n
				if sc.rate > 0 {
					events = min(n, 5*sc.rate) // five seconds of paced load
				}
				r = runLoad(b, be, name, events, sc.latency, sc.android, sc.rate, cmp.Or(sc.batch, 50))
			}
			b.ReportMetric(r.acceptPerSec, "accepted/s")
			b.ReportMetric(r.deliverPerSec, "deliveries/s")
			b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(r.cpuPer1k, "cpu-s/1k-deliveries")
			b.ReportMetric(float64(r.benchCPUPerDel.Nanoseconds())/1000, "bench-cpu-µs/del")
			b.ReportMetric(r.peakRSSMiB, "peak-rss-MiB")
			b.ReportMetric(r.peakAnonMiB, "peak-anon-MiB")
			b.ReportMetric(r.peakFileMiB, "peak-file-MiB")
			b.ReportMetric(float64(r.postP50.Microseconds())/1000, "post-p50-ms")
			b.ReportMetric(float64(r.postP99.Microseconds())/1000, "post-p99-ms")
			b.ReportMetric(r.storeBytes, "store-B/event")
			b.ReportMetric(float64(r.acceptCPU.Nanoseconds())/1000, "accept-cpu-µs/event")
			b.ReportMetric(r.allocPerDel, "alloc-B/delivery")
			b.ReportMetric(float64(r.again), "pushed-again")
			b.ReportMetric(float64(r.withdraws), "expiry-withdraws")
			if r.writerBusy > 0 {
				b.ReportMetric(r.writerBusy, "writer-busy")
				b.ReportMetric(r.commitsPerEvent, "commits/event")
			}
		})
		return r
	}
	var ratioRelay []loadResult // bolt/apns-only/latency=0ms, by round
	for _, run := range runs {
		r := runOne(run.scenario, run.be)
		if r.name != "" {
			results = append(results, r)
		}
		if r.name == ratioScenario {
			ratioRelay = append(ratioRelay, r)
		}
	}
	// The relay/bare ratio: bare apns2 and relayd's apns-only burst at 0 ms
	// alternate, benchRounds times (the first relayd run is the table's),
	// and the ratio is the median of the rounds': one pair's ratio moved by
	// ±0.05 from run to run on this shared machine.
	var bares []loadResult
	for round := range benchRounds() {
		if round > 0 {
			for _, run := range runs {
				if run.be.name+"/"+run.name == ratioScenario {
					if r := runOne(run.scenario, run.be); r.name != "" {
						results = append(results, r)
						ratioRelay = append(ratioRelay, r)
					}
				}
			}
		}
		var bare loadResult
		b.Run("bare-apns2/latency=0ms", func(b *testing.B) {
			for range b.N {
				bare = runBareAPNs(b, n)
			}
			b.ReportMetric(bare.deliverPerSec, "deliveries/s")
			b.ReportMetric(float64(bare.benchCPUPerDel.Nanoseconds())/1000, "bench-cpu-µs/del")
			b.ReportMetric(float64(bare.p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(bare.p99.Microseconds())/1000, "p99-ms")
		})
		if bare.name == "" {
			break // -bench left it out
		}
		bares = append(bares, bare)
		if len(ratioRelay) == 0 {
			break // no relayd run to compare with: one bare run is enough
		}
	}
	if len(results) == 0 {
		return
	}
	var sb strings.Builder
	// The disk's sync latency bounds every durable accept (bolt: two
	// fdatasyncs per commit), so its tail is part of the POST's.
	if p50, p99, err := syncLatency(b.TempDir(), 500); err == nil {
		fmt.Fprintf(&sb, "\nthis disk: fdatasync of 4 KiB p50 %s, p99 %s (500 syncs, where the store lives)", p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	}
	fmt.Fprintf(&sb, "\n%-52s %7s %10s %13s %11s %13s %9s %9s %12s %10s %13s %12s %12s %16s %12s %11s %13s %14s\n", "scenario", "events", "deliveries", "again+wdraw", "accepted/s", "deliveries/s", "p50", "p99", "cpu-µs/del", "peak-RSS", "store-B/event", "anon+file", "bin+store", "POST p50/p99", "alloc-KB/del", "writer-busy", "commits/event", "bench-µs/del")
	for _, r := range append(results, bares...) {
		fmt.Fprintf(&sb, "%-52s %7d %10d %13s %11.0f %13.0f %9s %9s %12.0f %7.1fMiB %13.0f %5.1f+%5.1f %5.1f+%5.1f %16s %12.1f %10.0f%% %13.2f %14.0f\n", r.name, r.events, r.deliveries, fmt.Sprintf("%d+%d", r.again, r.withdraws), r.acceptPerSec, r.deliverPerSec,
			r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.cpuPer1k*1000, r.peakRSSMiB, r.storeBytes, r.peakAnonMiB, r.peakFileMiB,
			r.binMiB, r.storeMapMiB, r.postP50.Round(10*time.Microsecond).String()+"/"+r.postP99.Round(10*time.Microsecond).String(), r.allocPerDel/1024, r.writerBusy*100, r.commitsPerEvent, float64(r.benchCPUPerDel.Nanoseconds())/1000)
	}
	var ratios []float64
	for i := range min(len(ratioRelay), len(bares)) {
		if bares[i].deliverPerSec > 0 {
			ratios = append(ratios, ratioRelay[i].deliverPerSec/bares[i].deliverPerSec)
		}
	}
	if len(ratios) > 0 {
		fmt.Fprintf(&sb, "relay/bare ratio (APNs deliveries/s, same fake, 0ms): %.2f (median of %d interleaved rounds: %s)\n",
			median(ratios), len(ratios), formatRatios(ratios))
	}
	b.Log(sb.String())
	fmt.Fprint(os.Stderr, sb.String())
}

func runLoad(b *testing.B, be backend, name string, n int, latency time.Duration, android bool, rate, batch int) loadResult {
	b.StopTimer()
	if os.Getenv("EDGERELAY_BENCH_COLD_BINARY") != "" {
		b.Logf("binary: %s", dropFromPageCache(b, relaydBin))
	}
	hs := startCluster(b, be, harnessOptions{logLevel: "warn", metrics: true})
	for _, h := range hs[1:] {
		defer h.stop(syscall.SIGTERM)
	}
	h := hs[0]
	if path := os.Getenv("EDGERELAY_BENCH_CPUPROFILE"); path != "" {
		// Profile relayd while the load runs.
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			resp, err := http.Get("http://" + h.metricsAddr + "/debug/pprof/profile?seconds=" + profileSeconds())
			if err != nil {
				b.Logf("cpu profile: %v", err)
				return
			}
			defer resp.Body.Close()
			f, _ := os.Create(path + "." + strings.NewReplacer("/", "_", "=", "").Replace(name))
			io.Copy(f, resp.Body)
			f.Close()
		}()
	}
	defer h.stop(syscall.SIGTERM)
	const users = 50
	for u := range users {
		user := fmt.Sprintf("u-%d", u)
		ios := hexToken(user)
		h.put("/v1/workspaces/bench/users/"+user+"/devices/iphone", map[string]string{"platform": "ios", "token": ios, "app": "demo"})
		if android {
			h.put("/v1/workspaces/bench/users/"+user+"/devices/pixel", map[string]string{"platform": "android", "token": "fcm-" + user, "app": "demo"})
		}
	}
	if latency > 0 {
		h.APNs.Script("", relaytest.Rule{Latency: latency})
		h.FCM.Script("", relaytest.Rule{Latency: latency})
	}
	perEvent := 1
	if android {
		perEvent = 2
	}
	var cpu0 time.Duration
	var alloc0 float64
	var writer0 runCounters // the first relay's store writer
	for i, h := range hs {
		cpu0 += procCPU(b, h.pid())
		c := countersOf(b, h.metricsAddr)
		alloc0 += c.alloc
		if i == 0 {
			writer0 = c
		}
	}
	self0 := procCPU(b, os.Getpid())

	// Posters send NDJSON batches; each event's send time is kept to
	// measure socket-to-fake latency.
	posters := 8
	if rate > 0 {
		// Paced: batch k is posted at start + k×batch/rate, by whichever
		// poster is free (a steady rate below saturation, where latency
		// means something; enough posters that one slow answer does not
		// hold back the next).
		posters = max(1, min(256, rate/batch/8))
	}
	sent := make([]time.Time, n)
	var next atomic.Int64
	// A plain client per relay, keeping a connection per poster (the
	// harness's client validates every exchange against the OpenAPI
	// document and keeps two idle connections: at one event per POST that
	// measured the load generator, not relayd).
	clients := make([]*http.Client, len(hs))
	for i, h := range hs {
		sock := h.sock
		clients[i] = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: posters,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}}
		defer clients[i].CloseIdleConnections()
	}
	types := []string{relay.TypeOTPReceived, relay.TypeAccountShared, relay.TypeNewTrustedDevice, relay.TypeIdentityVerification}
	stopSampling := sampleRSS(h.pid())
	if path := os.Getenv("EDGERELAY_BENCH_HEAPPROFILE"); path != "" {
		// The heap in the middle of the load (a burst lasts a few
		// seconds): what is live then, and what was allocated.
		t := time.AfterFunc(time.Second, func() {
			suffix := "." + strings.NewReplacer("/", "_", "=", "").Replace(name)
			saveProfile(b, "http://"+h.metricsAddr+"/debug/pprof/heap?gc=1", path+suffix)
			// And its goroutines then (how many, and where they wait):
			// GC scans and shrinks every goroutine's stack.
			saveProfile(b, "http://"+h.metricsAddr+"/debug/pprof/goroutine?debug=1", path+suffix+".goroutines.txt")
		})
		defer t.Stop()
	}
	// Each POST's round trip (its events' accept, durable): with the
	// socket-to-fake latency it says whether an event waits before its
	// accept commit or after it.
	var rttMu sync.Mutex
	var rtts []time.Duration
	if rate > 0 {
		defer quietInstruments()()
	}
	start := time.Now()
	// Every event expires in an hour, not at its type's default TTL: the
	// bench measures delivering all of them. With the defaults, a run that
	// falls minutes behind (the JetStream cluster on two cores) let
	// identity_verification prompts (2 min) expire unsent and pushed the
	// expiry withdraws of the ones delivered in time.
	expires := start.Add(time.Hour).UTC().Format(time.RFC3339)
	b.StartTimer()
	var wg sync.WaitGroup
	for range posters {
		wg.Go(func() {
			var buf bytes.Buffer
			for {
				lo := int(next.Add(int64(batch))) - batch
				if lo >= n {
					return
				}
				hc := clients[(lo/batch)%len(hs)] // round-robin over the cluster's relays
				hi := min(lo+batch, n)
				if rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(lo) * time.Second / time.Duration(rate))))
				}
				buf.Reset()
				for i := lo; i < hi; i++ {
					fmt.Fprintf(&buf, `{"id":"e-%d","workspace":"bench","user":"u-%d","type":%q,"title":"Sign-in","body":"Approve sign-in from 203.0.113.9?","expires_at":%q}`+"\n", i, i%users, types[i%len(types)], expires)
				}
				now := time.Now()
				for i := lo; i < hi; i++ {
					sent[i] = now
				}
				code, body, err := post(hc, buf.Bytes())
				rttMu.Lock()
				rtts = append(rtts, time.Since(now))
				rttMu.Unlock()
				if err != nil || code != 202 || bytes.Contains(body, []byte(`"rejected"`)) {
					b.Errorf("post: %d %s %v", code, body, err)
					return
				}
			}
		})
	}
	wg.Wait()
	accepted := time.Since(start)
	acceptCPU := -cpu0
	for _, h := range hs {
		acceptCPU += procCPU(b, h.pid())
	}
	want := n * perEvent
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	apnsPushes, err := waitForAlerts(ctx, h.APNs.WaitForPushes, n)
	if err != nil {
		b.Fatalf("APNs: %v (got %d pushes for %d events)", err, len(h.APNs.Pushes()), n)
	}
	var fcmPushes []relaytest.Push
	if android {
		if fcmPushes, err = waitForAlerts(ctx, h.FCM.WaitForPushes, n); err != nil {
			b.Fatalf("FCM: %v", err)
		}
	}
	b.StopTimer()
	self := procCPU(b, os.Getpid()) - self0
	first, again, withdraws := alertsOf(append(apnsPushes, fcmPushes...))
	last := start
	for _, t := range first {
		if t.After(last) {
			last = t
		}
	}
	anon, file := stopSampling()
	// What of the file-backed RSS is relayd's binary and what the store's
	// mmap (at the end of the run, when both are at their largest).
	binMiB, storeMiB := mappedMiB(h.pid(), "/relayd", "/relay.db")
	cpu := -cpu0
	rss := 0.0
	alloc := -alloc0
	var busy, commits float64 // of the relay the writer columns are about
	for i, h := range hs {
		cpu += procCPU(b, h.pid())
		rss = max(rss, peakRSS(b, h.pid()))
		c := countersOf(b, h.metricsAddr)
		alloc += c.alloc
		if i == 0 {
			busy, commits = c.busy-writer0.busy, c.commits-writer0.commits
		}
	}

	// Latency: from each event's post to its first alert on each
	// provider.
	lat := make([]time.Duration, 0, len(first))
	for k, t := range first {
		var i int
		if _, err := fmt.Sscanf(k[strings.LastIndexByte(k, '/')+1:], "e-%d", &i); err == nil && i >= 0 && i < n {
			lat = append(lat, t.Sub(sent[i]))
		}
	}
	slices.Sort(lat)
	slices.Sort(rtts)
	return loadResult{
		name: name, events: n, deliveries: len(first),
		again: again, withdraws: withdraws,
		acceptPerSec:  float64(n) / accepted.Seconds(),
		deliverPerSec: float64(want) / last.Sub(start).Seconds(),
		p50:           pct(lat, 0.50), p99: pct(lat, 0.99),
		cpuPer1k:       cpu.Seconds() / float64(want) * 1000,
		benchCPUPerDel: self / time.Duration(want),
		peakRSSMiB:     rss, peakAnonMiB: anon, peakFileMiB: file,
		binMiB: binMiB, storeMapMiB: storeMiB,
		postP50: pct(rtts, 0.50), postP99: pct(rtts, 0.99),
		storeBytes:      float64(dirSize(b, filepath.Join(h.dir, "data"))) / float64(n),
		acceptCPU:       acceptCPU / time.Duration(n),
		allocPerDel:     alloc / float64(want),
		writerBusy:      busy / last.Sub(start).Seconds(),
		commitsPerEvent: commits / float64(n),
	}
}

// post sends one NDJSON batch to /v1/events.
func post(hc *http.Client, body []byte) (int, []byte, error) {
	resp, err := hc.Post("http://relayd/v1/events", "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// runBareAPNs pushes n notifications with a plain apns2 client (256 in
// flight) to a fresh fake, the same way relayd's APNs lane does.
func runBareAPNs(b *testing.B, n int) loadResult {
	b.StopTimer()
	h := newHarness(b, harnessOptions{})
	keyPEM, err := os.ReadFile(h.dir + "/AuthKey.p8")
	if err != nil {
		b.Fatal(err)
	}
	key, err := token.AuthKeyFromBytes(keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	client := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: keyID, TeamID: teamID})
	client.Host = h.APNs.URL
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(h.APNs.CAFile)
	pool.AppendCertsFromPEM(caPEM)
	client.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	var next atomic.Int64
	lat := make([]time.Duration, n)
	start := time.Now()
	self0 := procCPU(b, os.Getpid())
	b.StartTimer()
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				payload, _ := json.Marshal(map[string]any{"aps": map[string]any{"alert": map[string]string{"title": "Sign-in", "body": "Approve sign-in from 203.0.113.9?"}}})
				t0 := time.Now()
				res, err := client.PushWithContext(context.Background(), &apns2.Notification{
					DeviceToken: hexToken(strconv.Itoa(i % 50)), Topic: topic, Payload: payload,
					CollapseID: strconv.Itoa(i), Priority: apns2.PriorityHigh, Expiration: time.Now().Add(time.Hour),
				})
				if err != nil || !res.Sent() {
					b.Errorf("push: %v %+v", err, res)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	self := procCPU(b, os.Getpid()) - self0
	slices.Sort(lat)
	return loadResult{name: "bare-apns2/latency=0ms", events: n, deliveries: n,
		deliverPerSec: float64(n) / took.Seconds(), p50: pct(lat, 0.5), p99: pct(lat, 0.99),
		benchCPUPerDel: self / time.Duration(n)}
}

// ratioScenario is the relayd run the relay/bare ratio compares with bare
// apns2.
const ratioScenario = "bolt/apns-only/latency=0ms"

// benchRounds is how many times the benchmarks run the pairs whose ratio
// they report (EDGERELAY_BENCH_ROUNDS, default 3), alternating.
func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("EDGERELAY_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// median returns the median of xs (the mean of the middle two when even).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// formatRatios formats ratios as "0.81, 0.86, 0.90".
func formatRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(r, 'f', 2, 64)
	}
	return strings.Join(parts, ", ")
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func (h *harness) pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmd.Process.Pid
}

// runCounters are what a run reads from relayd's /metrics before and
// after it.
type runCounters struct {
	alloc   float64 // go_memstats_alloc_bytes_total
	busy    float64 // edgerelay_store_commit_busy_seconds_total (bolt; else 0)
	commits float64 // edgerelay_store_commits_total (bolt; else 0)
}

// countersOf scrapes relayd's metrics listener at addr once for the run's
// counters.
func countersOf(tb testing.TB, addr string) runCounters {
	tb.Helper()
	fams := scrape(tb, addr)
	value := func(name string) float64 {
		if f := fams[name]; f != nil && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
		return 0
	}
	c := runCounters{alloc: value("go_memstats_alloc_bytes_total"), busy: value("edgerelay_store_commit_busy_seconds_total"), commits: value("edgerelay_store_commits_total")}
	if c.alloc == 0 {
		tb.Fatal("relayd's /metrics has no go_memstats_alloc_bytes_total")
	}
	return c
}

// procCPU returns a process's user+system CPU time from /proc.
func procCPU(tb testing.TB, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// dirSize returns the bytes the files under dir (the store's data) take on
// disk, as du counts them. Not their length: bbolt extends its file 16 MiB
// ahead of the data (relay/store/bolt initialMmapSize), a sparse tail that
// takes no disk.
func dirSize(tb testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		tb.Logf("store size: %v", err)
	}
	return n
}

// peakRSS returns a process's peak resident set size (VmHWM) in MiB.
func peakRSS(tb testing.TB, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb / 1024
		}
	}
	return 0
}

// profileSeconds is how long EDGERELAY_BENCH_CPUPROFILE profiles relayd
// (EDGERELAY_BENCH_PROFILE_SECONDS, default 1).
func profileSeconds() string {
	if s := os.Getenv("EDGERELAY_BENCH_PROFILE_SECONDS"); s != "" {
		return s
	}
	return "1"
}

// quietInstruments stops this process's garbage collector for a latency
// measurement (the paced scenarios) and returns what restores it. The load
// generator and the fakes live in this process: their collections (a mark
// phase of 30–55 ms every ~0.5 s at 2,000 events/s, with assists slowing
// the posters and the fake's handlers) delayed the stamps of the events
// they caught, and made up much of the measured p99 (docs/benchmarks.md,
// "Session 14"). In a deployment they are other machines. relayd's own
// collector is untouched, and so is the saturation runs' (the bare apns2
// client of the ratio runs in this process too). A 1 GiB soft limit still
// collects if a long run would outgrow it. EDGERELAY_BENCH_TEST_GC=on
// keeps the collector on, as before session 14.
func quietInstruments() (restore func()) {
	if os.Getenv("EDGERELAY_BENCH_TEST_GC") == "on" {
		return func() {}
	}
	limit := debug.SetMemoryLimit(1 << 30)
	percent := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}

// sampleRSS samples a process's anonymous and file-backed RSS (RssAnon,
// RssFile in /proc/PID/status) every 10 ms until the returned function is
// called, which returns the highest of each in MiB. VmHWM alone does not
// say how much of the peak is heap and how much bbolt's mmap of the store
// (file pages the kernel can drop).
func sampleRSS(pid int) func() (anon, file float64) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var anon, file float64
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, line := range strings.Split(string(data), "\n") {
					if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
						kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
						anon = max(anon, kb/1024)
					} else if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
						kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
						file = max(file, kb/1024)
					}
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() (float64, float64) {
		close(stop)
		<-done
		return anon, file
	}
}

// saveProfile writes the pprof profile at url to path.
func saveProfile(tb testing.TB, url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		tb.Logf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		tb.Logf("profile: %v", err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

// mappedMiB returns the resident MiB of a process's mappings of files whose
// paths end in each suffix (from /proc/PID/smaps).
func mappedMiB(pid int, suffixes ...string) (float64, float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0
	}
	var got [2]float64
	cur := -1
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			cur = -1
			if len(f) >= 6 {
				for i, s := range suffixes[:2] {
					if strings.HasSuffix(f[5], s) {
						cur = i
					}
				}
			}
		case len(f) >= 2 && f[0] == "Rss:" && cur >= 0:
			kb, _ := strconv.ParseFloat(f[1], 64)
			got[cur] += kb / 1024
		}
	}
	return got[0], got[1]
}

// syncLatency writes and fdatasyncs a 4 KiB block n times in a file in dir
// and returns the syncs' median and 99th percentile.
func syncLatency(dir string, n int) (p50, p99 time.Duration, err error) {
	f, err := os.CreateTemp(dir, "sync-*")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	took := make([]time.Duration, 0, n)
	for i := range n {
		if _, err := f.WriteAt(buf, int64(i%64)*4096); err != nil {
			return 0, 0, err
		}
		start := time.Now()
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, err
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return pct(took, 0.5), pct(took, 0.99), nil
}
