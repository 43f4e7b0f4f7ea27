package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
shutdown_timeout = "30s"
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
