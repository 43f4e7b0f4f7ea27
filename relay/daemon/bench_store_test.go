package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
	"github.com/edgerelay/edgerelay/relay/store/storetest"
)

// BenchmarkRestartBigStore restarts relayd on a store holding
// EDGERELAY_BENCH_STORE_EVENTS delivered single-device events (default
// 1,000,000; built once through the store API, as relayd writes them:
// decided on accept in batches of 1,000, leased and settled delivered) with
// the file dropped from the page cache, and reports start-to-ready (exec to
// the first 200 of /readyz, start-up damage check included), relayd's RSS
// split anonymous / file-backed once ready and after 1,000 more
// deliveries, and the file's bytes per event.
//
//	go test -run '^$' -bench RestartBigStore -benchtime 1x ./relay/daemon/
func BenchmarkRestartBigStore(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("EDGERELAY_BENCH_STORE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		b.StopTimer()
		h := newHarness(b, harnessOptions{logLevel: "warn"})
		path := filepath.Join(h.dir, "data", "relay.db")
		t0 := time.Now()
		buildBigStore(b, path, n)
		b.Logf("built a store of %d events in %s", n, time.Since(t0).Round(time.Second))
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		cold := dropFromPageCache(b, path)

		b.StartTimer()
		t0 = time.Now()
		h.startWith(2 * time.Minute)
		ready := time.Since(t0)
		b.StopTimer()
		anon0, file0 := rssSplit(b, h.pid())

		// Some work after the restart: what a running relay keeps mapped.
		var batch []map[string]any
		for i := range 1000 {
			batch = append(batch, map[string]any{"id": fmt.Sprintf("after-%d", i), "workspace": "bench", "user": fmt.Sprintf("u-%d", i%1000),
				"type": relay.TypeIdentityVerification, "title": "Sign-in", "body": "Approve sign-in from 203.0.113.9?"})
		}
		for _, r := range h.post(batch...) {
			if r.Status != "accepted" {
				b.Fatalf("post after restart: %+v", r)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err = h.APNs.WaitForPushes(ctx, 1000)
		cancel()
		if err != nil {
			b.Fatalf("pushes after restart: %v", err)
		}
		anon1, file1 := rssSplit(b, h.pid())
		h.stop(syscall.SIGTERM)

		b.ReportMetric(float64(ready.Milliseconds()), "start-to-ready-ms")
		b.ReportMetric(anon0+file0, "ready-RSS-MiB")
		b.ReportMetric(anon1+file1, "after-1k-RSS-MiB")
		b.ReportMetric(float64(fi.Size())/float64(n), "file-B/event")
		b.Logf("%d events, %d MB file, page cache %s: ready in %s; RSS at ready %.1f MiB (anon %.1f + file %.1f), after 1,000 deliveries %.1f MiB (anon %.1f + file %.1f)",
			n, fi.Size()/1e6, cold, ready.Round(time.Millisecond), anon0+file0, anon0, file0, anon1+file1, anon1, file1)
	}
}

// buildBigStore writes n delivered events for 1,000 users (an iPhone each,
// the harness's app) into a new store at path.
func buildBigStore(b *testing.B, path string, n int) {
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	storetest.FillDelivered(b, s, n, time.Now(), hexToken)
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// dropFromPageCache evicts the file's pages from the page cache
// (posix_fadvise DONTNEED after fsync: the file's pages only, so other
// processes keep theirs) and says how much of it stayed cached.
func dropFromPageCache(b *testing.B, path string) string {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Sprintf("not dropped (%v)", err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return "dropped"
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return "dropped"
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return "dropped"
	}
	cached := 0
	for _, v := range vec {
		cached += int(v & 1)
	}
	return fmt.Sprintf("dropped (%.1f%% still cached)", 100*float64(cached)/float64(len(vec)))
}

// rssSplit returns a process's anonymous and file-backed resident memory
// in MiB (RssAnon, RssFile of /proc/PID/status).
func rssSplit(tb testing.TB, pid int) (anon, file float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		for key, dst := range map[string]*float64{"RssAnon:": &anon, "RssFile:": &file} {
			if v, ok := strings.CutPrefix(line, key); ok {
				kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
				*dst = kb / 1024
			}
		}
	}
	return anon, file
}
