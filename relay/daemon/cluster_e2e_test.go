package daemon_test

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// Cluster and schedule tests end to end (issue 8), on each store backend.

// backend is a store configuration for the e2e tests: the store (and nats)
// blocks of relay i of n.
type backend struct {
	name  string
	nodes int // relays it runs (1: a single relay)
	// config returns relay i's store and nats blocks; ports are the
	// cluster route ports of every node.
	config func(i int, ports []int) string
}

var boltBackend = backend{name: "bolt", nodes: 1, config: func(int, []int) string {
	return "store \"bolt\" {\n  path = \"./data/relay.db\"\n}"
}}

// jetstreamBackend runs n relays, each with an embedded NATS server routed
// to the others, with replicas copies of every stream.
func jetstreamBackend(n, replicas int) backend {
	return backend{name: fmt.Sprintf("jetstream-%dnode-R%d", n, replicas), nodes: n, config: func(i int, ports []int) string {
		cluster := ""
		if n > 1 {
			routes := ""
			for j, p := range ports {
				if j != i {
					routes += fmt.Sprintf("%q, ", fmt.Sprintf("nats://127.0.0.1:%d", p))
				}
			}
			cluster = fmt.Sprintf("  cluster {\n    name = \"e2e\"\n    listen = \"127.0.0.1:%d\"\n    routes = [%s]\n  }\n", ports[i], routes)
		}
		return fmt.Sprintf("store \"jetstream\" {\n  replicas = %d\n}\nnats {\n  name = \"relay-%d\"\n  listen = \"\"\n%s}\nqueue {\n  lease = \"3s\"\n}\n", replicas, i+1, cluster)
	}}
}

// freePorts returns n free TCP ports on loopback.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
		defer ln.Close()
	}
	return out
}

// startCluster starts b.nodes relays sharing one set of fakes, each with
// extra config appended; relays of a cluster start concurrently (each waits
// for the others' NATS servers to form a quorum).
func startCluster(t *testing.T, b backend, o harnessOptions) []*harness {
	t.Helper()
	ports := freePorts(t, b.nodes)
	hs := make([]*harness, b.nodes)
	for i := range hs {
		oi := o
		oi.store = b.config(i, ports)
		if i > 0 {
			oi.peer = hs[0]
		}
		hs[i] = newHarness(t, oi)
	}
	done := make(chan struct{}, len(hs))
	for _, h := range hs {
		go func() { h.startWith(60 * time.Second); done <- struct{}{} }()
	}
	for range hs {
		<-done
	}
	return hs
}

// TestPriorityEndToEnd: an OTP posted behind a backlog of account_shared
// alerts at a slow provider reaches it ahead of at least half of the
// backlog still undelivered when it was posted.
func TestPriorityEndToEnd(t *testing.T) {
	for _, b := range []backend{boltBackend, jetstreamBackend(1, 1)} {
		t.Run(b.name, func(t *testing.T) { testPriority(t, b) })
	}
}

func testPriority(t *testing.T, b backend) {
	n := 20_000
	if testing.Short() {
		n = 3000
	}
	hs := startCluster(t, backend{name: b.name, nodes: 1, config: b.config}, harnessOptions{logLevel: "warn", apnsConnections: 1})
	h := hs[0]
	defer h.stop(syscall.SIGTERM)
	h.APNs.Script("", relaytest.Rule{Latency: 100 * time.Millisecond})
	h.put("/v1/workspaces/acme/users/sharer/devices/iphone", map[string]string{"platform": "ios", "token": hexToken("sharer"), "app": "demo", "environment": "production"})
	h.put("/v1/workspaces/acme/users/signer/devices/iphone", map[string]string{"platform": "ios", "token": hexToken("signer"), "app": "demo", "environment": "production"})
	expires := time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339Nano)
	for i := 0; i < n; i += 1000 {
		batch := make([]map[string]any, 0, 1000)
		for k := i; k < min(i+1000, n); k++ {
			batch = append(batch, map[string]any{"id": fmt.Sprintf("share-%d", k), "workspace": "acme", "user": "sharer",
				"type": relay.TypeAccountShared, "title": "shared", "expires_at": expires})
		}
		for _, r := range h.post(batch...) {
			if r.Status != "accepted" {
				t.Fatalf("share %s: %s %s", r.ID, r.Status, r.Error)
			}
		}
	}
	arrivedBefore := h.APNs.Requests()
	if res := h.post(map[string]any{"id": "otp-1", "workspace": "acme", "user": "signer", "type": relay.TypeOTPReceived,
		"title": "Code", "body": "Tap to copy"}); res[0].Status != "accepted" {
		t.Fatalf("otp: %+v", res)
	}
	backlog := n - arrivedBefore
	if backlog < n/4 {
		t.Fatalf("only %d of %d shares undelivered when the OTP was posted: no backlog to jump", backlog, n)
	}
	otpCID := pipeline.CollapseID(relay.EventKey{Workspace: "acme", ID: "otp-1"})
	var after, pos int
	waitFor(t, 5*time.Minute, func() error {
		pushes := h.APNs.Pushes()
		found := -1
		for i, p := range pushes {
			if p.CollapseID() == otpCID {
				found = i
				break
			}
		}
		if found < 0 {
			return fmt.Errorf("otp not at the fake yet (%d pushes)", len(pushes))
		}
		pos = found
		if len(pushes) < n+1 {
			return fmt.Errorf("%d of %d pushes", len(pushes), n+1)
		}
		after = len(pushes) - 1 - found
		return nil
	})
	t.Logf("%s: %d shares undelivered when the OTP was posted; the OTP arrived as push %d, ahead of %d shares", b.name, backlog, pos+1, after)
	if after < backlog/2 {
		t.Fatalf("OTP ahead of %d shares, want at least half of the %d undelivered when it was posted", after, backlog)
	}
}
