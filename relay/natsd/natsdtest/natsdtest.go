// Package natsdtest starts embedded NATS servers for tests: one node or a
// cluster, on random loopback ports, with temporary store directories.
package natsdtest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay/natsd"
)

// Config tunes the servers Start runs.
type Config struct {
	SyncAlways bool
	Logger     hclog.Logger // nil: discarded
}

// Start starts n servers (n > 1: a cluster, each node routed to every
// other on free loopback ports), waits until JetStream answers on
// every node, and shuts them down when the test ends.
func Start(tb testing.TB, n int, cfg Config) []*natsd.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var servers []*natsd.Server
	var routes []string
	if n > 1 {
		// JetStream clustering wants explicit routes on every node, so the
		// route ports are chosen before the servers start.
		for _, p := range freePorts(tb, n) {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
		}
	}
	for i := range n {
		opts := natsd.Options{
			Name:       fmt.Sprintf("n%d", i+1),
			StoreDir:   tb.TempDir(),
			SyncAlways: cfg.SyncAlways,
			Logger:     cfg.Logger,
			// Generous: the machine running tests may be busy.
			ReadyTimeout: 30 * time.Second,
		}
		if cfg.Logger != nil {
			opts.Logger = cfg.Logger.Named(opts.Name)
		}
		if n > 1 {
			opts.Cluster = &natsd.ClusterOptions{Name: "test", Listen: strings.TrimPrefix(routes[i], "nats://"), Routes: routes}
		}
		s, err := natsd.New(opts)
		if err != nil {
			tb.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer scancel()
			if err := s.Shutdown(sctx); err != nil {
				tb.Error(err)
			}
		})
		servers = append(servers, s)
	}
	for _, s := range servers {
		if err := s.WaitJetStream(ctx); err != nil {
			tb.Fatalf("server %s: %v", s.Name(), err)
		}
	}
	return servers
}

// freePorts finds n free loopback TCP ports (free when checked: another
// process could take one before the server binds it, which fails the test
// loudly rather than wrongly).
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
