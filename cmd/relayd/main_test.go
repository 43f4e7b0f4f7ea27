package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// The test binary doubles as relayd: with RELAYD_TEST_MAIN=1 it runs main
// instead of the tests, so the tests can signal a real process.
func TestMain(m *testing.M) {
	if os.Getenv("RELAYD_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// writeConfig writes a minimal valid config (one app on dev credentials)
// and returns its path and the socket path.
func writeConfig(tb testing.TB, extra string) (cfgPath, sock string) {
	tb.Helper()
	dir := tb.TempDir()
	creds, err := relaytest.WriteDevCredentials(filepath.Join(dir, "dev"), relaytest.DevCredentialsOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "rl")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(sockDir) })
	if err := os.Chmod(sockDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	sock = filepath.Join(sockDir, "s")
	cfg := fmt.Sprintf(`
data_dir = "./data"
shutdown_timeout = "1s"
socket { path = %q }
plugins { dir = "./plugins" }
app "demo" {
  fcm {
    project_id       = "demo-project"
    credentials_file = %q
    endpoint         = "https://127.0.0.1:1"
    ca_file          = %q
  }
}
%s
`, sock, creds.FCMCredentialsFile, creds.CAFile, extra)
	cfgPath = filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	return cfgPath, sock
}

// relayd is a running relayd child process.
type relayd struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
}

func startRelayd(tb testing.TB, args ...string) *relayd {
	tb.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "RELAYD_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	r := &relayd{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.mu.Lock()
			r.logs.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
		}
	})
	go func() {
		wg.Wait()
		r.err = cmd.Wait()
		close(r.done)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
	})
	return r
}

func (r *relayd) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// waitFor polls until the log holds s.
func (r *relayd) waitFor(tb testing.TB, s string, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(r.output(), s) {
			return
		}
		select {
		case <-r.done:
			tb.Fatalf("relayd exited (%v) before logging %q:\n%s", r.err, s, r.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	tb.Fatalf("relayd did not log %q within %s:\n%s", s, d, r.output())
}

// A second SIGTERM stops relayd at once, and the store is still closed:
// with a request in flight the graceful drain would wait for it.
func TestSecondSignalStopsFastAndClosesStore(t *testing.T) {
	for i := range 5 { // the old code lost this race only some of the time
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			cfg, sock := writeConfig(t, "")
			r := startRelayd(t, "-config", cfg)
			r.waitFor(t, "relayd ready", 60*time.Second)

			// A request whose body never ends keeps the socket draining.
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Expect: 100-continue tells when the handler reads the body.
			fmt.Fprintf(c, "POST /v1/events HTTP/1.1\r\nHost: relayd\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.Contains(line, "100") {
				t.Fatalf("no 100 Continue: %q %v", line, err)
			}
			fmt.Fprintf(c, "{")

			start := time.Now()
			if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			r.waitFor(t, "shutting down", 10*time.Second)
			if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-r.done:
			case <-time.After(8 * time.Second):
				t.Fatalf("relayd still running 8s after the second SIGTERM:\n%s", r.output())
			}
			if !strings.Contains(r.output(), "store closed") {
				t.Fatalf("relayd exited without closing the store (%v):\n%s", r.err, r.output())
			}
			t.Logf("stopped %s after the first signal", time.Since(start).Round(time.Millisecond))
		})
	}
}

// socketClient is an HTTP client for relayd's socket.
func socketClient(sock string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func do(tb testing.TB, hc *http.Client, method, path, ct, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, "http://relayd"+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDamagedStoreNeverCrashes corrupts copies of a real store file at
// random offsets, 200 times. relayd must never panic or fault: each start
// either works (serves and stops cleanly) or exits 1 with the "damaged"
// message.
// corruptions is how many damaged copies TestDamagedStoreNeverCrashes
// starts relayd on: 200, or EDGERELAY_CORRUPTIONS (make test uses fewer to
// keep CI within its budget under the race detector).
func corruptions() int {
	if n, err := strconv.Atoi(os.Getenv("EDGERELAY_CORRUPTIONS")); err == nil && n > 0 {
		return n
	}
	return 200
}

func TestDamagedStoreNeverCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relayd 200 times")
	}
	cfg, sock := writeConfig(t, "")
	store := filepath.Join(filepath.Dir(cfg), "data", "relay.db")
	// Sends to the unreachable provider are retried by its SDK for seconds:
	// do not wait for them at each stop.
	src, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, bytes.Replace(src, []byte(`shutdown_timeout = "1s"`), []byte(`shutdown_timeout = "100ms"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}

	// A real store: devices (open jobs: the provider is unreachable) and
	// a few hundred events over many pages.
	r := startRelayd(t, "-config", cfg)
	r.waitFor(t, "relayd ready", 60*time.Second)
	hc := socketClient(sock)
	for u := range 20 {
		if st, b := do(t, hc, "PUT", fmt.Sprintf("/v1/workspaces/acme/users/u%d/devices/d1", u), "application/json",
			fmt.Sprintf(`{"platform":"android","token":"tok-%d-%s","app":"demo"}`, u, strings.Repeat("x", 100))); st != 200 && st != 201 {
			t.Fatalf("device: %d %s", st, b)
		}
	}
	var batch strings.Builder
	for i := range 400 {
		fmt.Fprintf(&batch, `{"id":"e%d","workspace":"acme","user":"u%d","type":"account_shared","title":"t","body":%q}`+"\n", i, i%20, strings.Repeat("b", 300+i))
	}
	if st, b := do(t, hc, "POST", "/v1/events", "application/x-ndjson", batch.String()); st != 202 {
		t.Fatalf("post: %d %s", st, b)
	}
	hc.CloseIdleConnections()
	r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done
	orig, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store file: %d bytes", len(orig))

	rng := rand.New(rand.NewPCG(11, uint64(time.Now().UnixNano())))
	var started, refused int
	for i := range corruptions() {
		b := bytes.Clone(orig)
		var how string
		switch rng.IntN(4) {
		case 0: // truncate
			n := rng.IntN(len(b))
			b = b[:n]
			how = fmt.Sprintf("truncated to %d", n)
		case 1: // zero a page
			p := rng.IntN(len(b) / 4096)
			clear(b[p*4096 : (p+1)*4096])
			how = fmt.Sprintf("page %d zeroed", p)
		default: // random bytes
			off, n := rng.IntN(len(b)), 1+rng.IntN(64)
			for j := off; j < min(off+n, len(b)); j++ {
				b[j] = byte(rng.Uint32())
			}
			how = fmt.Sprintf("%d random bytes at %d", n, off)
		}
		if err := os.WriteFile(store, b, 0o600); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		r := startRelayd(t, "-config", cfg)
		ready := false
		deadline := time.After(60 * time.Second)
	wait:
		for {
			select {
			case <-r.done:
				break wait
			case <-deadline:
				t.Fatalf("%s: relayd neither ready nor exited:\n%s", how, r.output())
			case <-time.After(10 * time.Millisecond):
				if strings.Contains(r.output(), "relayd ready") {
					ready = true
					break wait
				}
			}
		}
		out := r.output()
		if ready {
			started++
			hc := socketClient(sock)
			st, body := do(t, hc, "POST", "/v1/events", "application/json", fmt.Sprintf(`{"id":"n%d","workspace":"acme","user":"u1","type":"account_shared"}`, i))
			hc.CloseIdleConnections()
			r.cmd.Process.Signal(syscall.SIGTERM)
			<-r.done
			out = r.output()
			if r.err != nil {
				t.Fatalf("%s: relayd started, then exited with %v (post: %d %s):\n%s", how, r.err, st, body, out)
			}
			t.Logf("%d: %s: started, post %d, stopped in %s", i, how, st, time.Since(t0).Round(time.Millisecond))
			continue
		}
		refused++
		var ee *exec.ExitError
		if !errors.As(r.err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "store file damaged: restore from backup (docs/operations.md)") {
			t.Fatalf("%s: relayd exited with %v, not 1 with the damaged message:\n%s", how, r.err, out)
		}
		t.Logf("%d: %s: refused in %s", i, how, time.Since(t0).Round(time.Millisecond))
	}
	t.Logf("started %d times, refused %d times", started, refused)
}

// TestCollectorTarget: relayd sets its own GOGC only with the bolt store
// and when the environment sets none, and says which applies.
func TestCollectorTarget(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	unset := func(string) string { return "" }
	if got := collectorTarget(unset, true); got != "200" {
		t.Errorf("bolt, no GOGC: target %q, want 200", got)
	}
	if now := debug.SetGCPercent(100); now != defaultGOGC {
		t.Errorf("bolt, no GOGC: the runtime's target is %d, want %d", now, defaultGOGC)
	}
	if got := collectorTarget(unset, false); got != "100" {
		t.Errorf("JetStream, no GOGC: target %q, want Go's 100", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("JetStream, no GOGC: relayd changed the runtime's target to %d", now)
	}
	env := func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	}
	if got := collectorTarget(env, true); got != "50" {
		t.Errorf("GOGC=50: target %q", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("GOGC=50 set in the environment: relayd changed the runtime's target to %d", now)
	}
}
