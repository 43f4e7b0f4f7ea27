package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgerelay/edgerelay/relay/ingest"
	"github.com/edgerelay/edgerelay/relay/relaytest"
	"github.com/edgerelay/edgerelay/relay/relaytest/openapitest"
)

// relaydBin is the relayd binary built once by TestMain.
var relaydBin string

func buildRelayd() (string, func(), error) {
	dir, err := os.MkdirTemp("", "relayd-bin")
	if err != nil {
		return "", nil, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "relayd")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/edgerelay/edgerelay/cmd/relayd")
	// Static, as make build, dist and the Dockerfile build it: the tests
	// and benchmarks run the binary operators do.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build relayd: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

const (
	topic     = "com.example.e2e"
	keyID     = "KEY1234567"
	teamID    = "TEAM123456"
	projectID = "e2e-project"
)

// harness runs relayd as a subprocess against in-process APNs and FCM fakes.
type harness struct {
	t       testing.TB
	dir     string
	sock    string
	cfgPath string
	APNs    *relaytest.FakeAPNs
	FCM     *relaytest.FakeFCM
	hc      *http.Client

	metricsAddr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
}

// lockedBuffer collects relayd's output; the test reads it while the
// process still writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harnessOptions struct {
	extraConfig string // appended to config.hcl
	logLevel    string // default debug
	plugins     string // plugins block body (default: dir only)
	metrics     bool   // serve metrics on a free port (h.metricsAddr)
	retry       string // retry block body
	// store replaces the store "bolt" block (with any nats {} block).
	store string
	// peer, when set, makes this relay share peer's APNs/FCM fakes and
	// credentials (a second relay of a cluster).
	peer *harness
	// apnsConnections sets apns.connections (0: the default).
	apnsConnections int
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	dir := t.TempDir()
	// sun_path is limited to 108 bytes: keep the socket in a short dir.
	sockDir, err := os.MkdirTemp("", "rl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	h := &harness{t: t, dir: dir, sock: filepath.Join(sockDir, "relayd.sock")}
	if o.peer != nil {
		h.APNs, h.FCM = o.peer.APNs, o.peer.FCM
		for _, f := range []string{"AuthKey.p8", "sa.json"} {
			b, err := os.ReadFile(filepath.Join(o.peer.dir, f))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, f), b)
		}
	} else {
		h.newFakes(t, dir)
	}

	if o.logLevel == "" {
		o.logLevel = "debug"
	}
	retry := o.retry
	if retry == "" {
		retry = "initial = \"100ms\"\n  max = \"1s\"\n  jitter = 0.2"
	}
	metricsBlock := ""
	if o.metrics {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.metricsAddr = ln.Addr().String()
		ln.Close()
		metricsBlock = fmt.Sprintf("metrics {\n  address = %q\n}", h.metricsAddr)
	}
	storeBlock := o.store
	if storeBlock == "" {
		storeBlock = "store \"bolt\" {\n  path = \"./data/relay.db\"\n}"
	}
	connections := ""
	if o.apnsConnections > 0 {
		connections = fmt.Sprintf("connections = %d", o.apnsConnections)
	}
	cfg := fmt.Sprintf(`
log { level = %q }
data_dir = "./data"
shutdown_timeout = "5s"
socket {
  path = %q
  mode = "0600"
}
%s
app "demo" {
  apns {
    %s
    topic = %q
    key_file = "./AuthKey.p8"
    key_id = %q
    team_id = %q
    endpoint = %q
    ca_file = %q
  }
  fcm {
    project_id = %q
    credentials_file = "./sa.json"
    endpoint = %q
    ca_file = %q
  }
}
notification "identity_verification" { default = "enforced" }
plugins {
  dir = "./plugins"
  %s
}
%s
retry {
  %s
}
%s
`, o.logLevel, h.sock, storeBlock, connections, topic, keyID, teamID, h.APNs.URL, h.APNs.CAFile, projectID, h.FCM.URL, h.FCM.CAFile, o.plugins, metricsBlock, retry, o.extraConfig)
	h.cfgPath = filepath.Join(dir, "config.hcl")
	writeFile(t, h.cfgPath, []byte(cfg))
	if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Every answer of the socket must match its OpenAPI document.
	h.hc = &http.Client{Timeout: 30 * time.Second, Transport: openapitest.New(t, "socket", ingest.OpenAPI).Transport(t, &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", h.sock)
		},
	})}
	t.Cleanup(func() { h.kill() })
	return h
}

// newFakes starts the APNs and FCM fakes and writes matching credentials
// into dir.
func (h *harness) newFakes(t testing.TB, dir string) {
	apnsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(apnsKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "AuthKey.p8"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	h.APNs = relaytest.NewFakeAPNs(t, relaytest.APNsOptions{ServerOptions: relaytest.ServerOptions{MaxRecorded: 1 << 20}, Topic: topic, AuthKey: &apnsKey.PublicKey, KeyID: keyID, TeamID: teamID})
	h.FCM = relaytest.NewFakeFCM(t, relaytest.FCMOptions{ServerOptions: relaytest.ServerOptions{MaxRecorded: 1 << 20}, ProjectID: projectID, ServiceAccountKey: &saKey.PublicKey, ClientEmail: "relay@" + projectID + ".iam.gserviceaccount.com"})
	saDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     projectID,
		"private_key_id": "k1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER})),
		"client_email":   "relay@" + projectID + ".iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      h.FCM.TokenURL,
	})
	writeFile(t, filepath.Join(dir, "sa.json"), sa)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs relayd and waits until its socket is ready.
func (h *harness) start() {
	h.t.Helper()
	h.startWith(30 * time.Second)
}

// startWith runs relayd and waits up to timeout for its socket.
func (h *harness) startWith(timeout time.Duration) {
	h.t.Helper()
	if err := h.tryStart(timeout); err != nil {
		h.t.Fatal(err)
	}
}

// tryStart is startWith returning its failure instead of ending the test,
// for starts on goroutines other than the test's (t.Fatal there would
// leave the test waiting for them).
func (h *harness) tryStart(timeout time.Duration) error {
	h.mu.Lock()
	cmd := exec.Command(relaydBin, "-config", h.cfgPath)
	logs := &lockedBuffer{}
	h.logs = logs
	cmd.Stdout = logs
	cmd.Stderr = logs
	// A failed test shows what this relayd said (its last lines).
	h.t.Cleanup(func() {
		if h.t.Failed() {
			out := logs.String()
			h.t.Logf("relayd %s log (last 8 KiB):\n%s", h.dir, out[max(0, len(out)-8<<10):])
		}
	})
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		return err
	}
	h.cmd = cmd
	exited := make(chan struct{})
	h.exited = exited
	h.mu.Unlock()
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := h.hc.Get("http://relayd/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("relayd %s exited during start:\n%s", h.dir, h.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("relayd %s not ready after %v:\n%s", h.dir, timeout, h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends sig and waits for relayd to exit; it returns the exit code.
func (h *harness) stop(sig syscall.Signal) int {
	h.t.Helper()
	h.mu.Lock()
	cmd, exited := h.cmd, h.exited
	h.mu.Unlock()
	if cmd == nil {
		return 0
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		h.t.Fatalf("relayd did not exit within 30s of %v:\n%s", sig, h.logs.String())
	}
	h.mu.Lock()
	h.cmd = nil
	h.mu.Unlock()
	return cmd.ProcessState.ExitCode()
}

func (h *harness) kill() {
	h.mu.Lock()
	cmd, exited := h.cmd, h.exited
	h.cmd = nil
	h.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		<-exited
	}
}

// do sends a request to the socket and returns the status and body.
func (h *harness) do(method, path, contentType string, body []byte) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, "http://relayd"+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *harness) put(path string, v any) {
	h.t.Helper()
	b, _ := json.Marshal(v)
	if code, body := h.do("PUT", path, "application/json", b); code != 200 {
		h.t.Fatalf("PUT %s: %d %s", path, code, body)
	}
}

type result struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

// post sends events as NDJSON and returns the per-event results.
func (h *harness) post(events ...map[string]any) []result {
	h.t.Helper()
	var buf bytes.Buffer
	for _, e := range events {
		b, _ := json.Marshal(e)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	code, body := h.do("POST", "/v1/events", "application/x-ndjson", buf.Bytes())
	if code != 202 {
		h.t.Fatalf("POST /v1/events: %d %s", code, body)
	}
	var out struct{ Results []result }
	if err := json.Unmarshal(body, &out); err != nil {
		h.t.Fatalf("decode results: %v: %s", err, body)
	}
	return out.Results
}

type eventView struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	ExpiresAt time.Time `json:"expires_at"`
	Decision  *struct {
		Verdict string `json:"verdict"`
		Reason  string `json:"reason"`
		Plugins []struct {
			Name    string `json:"name"`
			Hash    string `json:"hash"`
			Verdict string `json:"verdict"`
		} `json:"plugins"`
	} `json:"decision"`
	Deliveries []struct {
		DeviceID  string `json:"device_id"`
		Platform  string `json:"platform"`
		State     string `json:"state"`
		Attempts  int    `json:"attempts"`
		LastError string `json:"last_error"`
	} `json:"deliveries"`
}

func (h *harness) event(ws, id string) (eventView, int) {
	h.t.Helper()
	code, body := h.do("GET", "/v1/events/"+ws+"/"+id, "", nil)
	var v eventView
	if code == 200 {
		if err := json.Unmarshal(body, &v); err != nil {
			h.t.Fatalf("decode event: %v: %s", err, body)
		}
	}
	return v, code
}

// events fetches the events ws/id(0)..id(n-1), four at a time (checking
// thousands one by one was most of the crash tests' time under -race). A
// missing event fails the test.
func (h *harness) events(ws string, n int, id func(int) string) []eventView {
	h.t.Helper()
	vs := make([]eventView, n)
	var g errgroup.Group
	g.SetLimit(4)
	for i := range n {
		g.Go(func() error {
			resp, err := h.hc.Get("http://relayd/v1/events/" + ws + "/" + id(i))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 {
				return fmt.Errorf("event %s/%s: %d %s %v", ws, id(i), resp.StatusCode, body, err)
			}
			return json.Unmarshal(body, &vs[i])
		})
	}
	if err := g.Wait(); err != nil {
		h.t.Fatal(err)
	}
	return vs
}

// waitFor polls f until it returns nil or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// settled reports an error while any of the event's deliveries is open.
func (h *harness) settled(ws, id string) error {
	v, code := h.event(ws, id)
	if code != 200 {
		return fmt.Errorf("event %s/%s: status %d", ws, id, code)
	}
	return v.open(ws)
}

// open reports an error while the event is undecided or any of its
// deliveries is open.
func (v *eventView) open(ws string) error {
	if v.Decision == nil {
		return fmt.Errorf("event %s/%s not decided", ws, v.ID)
	}
	for _, d := range v.Deliveries {
		if d.State == "pending" || d.State == "deferred" {
			return fmt.Errorf("event %s/%s device %s still %s", ws, v.ID, d.DeviceID, d.State)
		}
	}
	return nil
}

func hexToken(seed string) string {
	return strings.Repeat(fmt.Sprintf("%x", seed), 64)[:64]
}
