// Package natsd runs a NATS server (github.com/nats-io/nats-server/v2) with
// JetStream inside relayd, so that relays form a cluster with no other
// software: each relay's embedded server routes to the others', and the
// jetstream store connects to its own server in-process.
//
// Options mirror the nats {} block of config.hcl (DESIGN.md "Cluster").
//
// # No client port
//
// Listen "" means in-process connections only. On nats-server v2.15.3 the
// server's DontListen option also keeps it from starting its route
// listener and from soliciting routes (nats-server issue #5174: the routing
// goroutine waits for the client accept loop, which DontListen never
// starts). Checked here: such a server never reports ready, has no route
// address, and its Shutdown blocks forever (WaitForShutdown waits for that
// goroutine). So a clustered node with Listen "" listens for clients on a
// random loopback port instead (127.0.0.1, not reachable from other
// machines), and only a standalone node uses DontListen.
package natsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultReadyTimeout bounds how long Start waits for the server to accept
// connections.
const DefaultReadyTimeout = 10 * time.Second

// Options configure an embedded server.
type Options struct {
	// Name is the server's name, unique in the cluster (JetStream needs
	// it). Empty: the host name, with the cluster listen port when
	// clustered (several nodes on one machine stay distinct).
	Name string
	// Listen is the client address, "host:port" (port 0: a random one).
	// Empty: no client port (see the package doc for clustered nodes).
	Listen string
	// StoreDir is JetStream's directory. Required.
	StoreDir string
	// Cluster routes this server to the others; nil for a single node.
	Cluster *ClusterOptions
	// SyncAlways makes JetStream fsync every write before acknowledging
	// it. Without it, writes are fsync'd every SyncInterval (nats-server's
	// default: 2 minutes), and an acknowledged write on one unreplicated
	// node can be lost in an OS crash or a power cut.
	SyncAlways bool
	// SyncInterval overrides the periodic fsync interval (0: the server's
	// default). Ignored with SyncAlways.
	SyncInterval time.Duration
	// MaxStore and MaxMemory limit JetStream's file and memory storage in
	// bytes (0: the server's defaults, a share of the disk and memory).
	MaxStore, MaxMemory int64
	// Logger receives the server's log lines (nil: discarded).
	Logger hclog.Logger
	// ReadyTimeout bounds Start's wait (0: DefaultReadyTimeout).
	ReadyTimeout time.Duration
}

// ClusterOptions are the nats { cluster {} } block.
type ClusterOptions struct {
	Name   string   // cluster name, the same on every node
	Listen string   // route address, "host:port" (port 0: a random one)
	Routes []string // other nodes' route URLs, nats://host:port
}

// Server is an embedded NATS server.
type Server struct {
	opts Options
	log  hclog.Logger
	srv  *server.Server
}

// New checks opts and prepares a server. It does no I/O.
func New(opts Options) (*Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("nats: store_dir is required")
	}
	if opts.Cluster != nil && opts.Cluster.Name == "" {
		return nil, errors.New("nats: cluster.name is required")
	}
	if opts.Cluster != nil && opts.Cluster.Listen == "" {
		return nil, errors.New("nats: cluster.listen is required")
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Server{opts: opts, log: log}, nil
}

// serverOptions translates Options to nats-server's.
func (s *Server) serverOptions() (*server.Options, error) {
	o := s.opts
	so := &server.Options{
		ServerName:   o.Name,
		JetStream:    true,
		StoreDir:     o.StoreDir,
		SyncAlways:   o.SyncAlways,
		SyncInterval: o.SyncInterval,
		NoSigs:       true,
		NoLog:        o.Logger == nil,
		// relayd's own connections come in-process; a listening port is
		// for operators' tools and other clients.
		JetStreamMaxStore:  o.MaxStore,
		JetStreamMaxMemory: o.MaxMemory,
	}
	if o.SyncAlways && so.SyncInterval == 0 {
		so.SyncInterval = 2 * time.Minute // the server's default; SyncAlways fsyncs anyway
	}
	switch {
	case o.Listen != "":
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats: listen %q: %w", o.Listen, err)
		}
		so.Host, so.Port = host, port
	case o.Cluster != nil:
		// nats-server #5174: DontListen would keep routes down.
		so.Host, so.Port = "127.0.0.1", server.RANDOM_PORT
	default:
		so.DontListen = true
	}
	if c := o.Cluster; c != nil {
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats: cluster.listen %q: %w", c.Listen, err)
		}
		so.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("nats: cluster route %q: want nats://host:port", r)
			}
			so.Routes = append(so.Routes, u)
		}
	}
	if so.ServerName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "relayd"
		}
		so.ServerName = host
		if o.Cluster != nil && so.Cluster.Port > 0 {
			so.ServerName += "-" + strconv.Itoa(so.Cluster.Port)
		}
	}
	return so, nil
}

// splitHostPort parses "host:port"; port 0 (or -1) asks for a random one.
func splitHostPort(hp string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// Start starts the server and waits until it accepts connections (not
// until JetStream has a cluster quorum: see WaitJetStream). On error the
// server is shut down.
func (s *Server) Start(ctx context.Context) error {
	if s.srv != nil {
		return errors.New("nats: server already started")
	}
	so, err := s.serverOptions()
	if err != nil {
		return err
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("nats: new server: %w", err)
	}
	if s.opts.Logger != nil {
		srv.SetLoggerV2(logAdapter{s.log}, s.log.IsDebug(), s.log.IsTrace(), false)
	}
	s.srv = srv
	srv.Start()
	deadline := time.Now().Add(s.opts.ReadyTimeout)
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		if err := ctx.Err(); err != nil || time.Now().After(deadline) {
			srv.Shutdown()
			srv.WaitForShutdown()
			if err == nil {
				var missing []string
				if !so.DontListen && srv.Addr() == nil {
					missing = append(missing, fmt.Sprintf("client listener %s:%d", so.Host, so.Port))
				}
				if so.Cluster.Port != 0 && srv.ClusterAddr() == nil {
					missing = append(missing, fmt.Sprintf("route listener %s:%d", so.Cluster.Host, so.Cluster.Port))
				}
				err = fmt.Errorf("not ready after %v (waiting for: %s)", s.opts.ReadyTimeout, strings.Join(missing, ", "))
			}
			return fmt.Errorf("nats: start server %s: %w", so.ServerName, err)
		}
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("nats: start server %s: jetstream did not start (a cluster node needs routes to its peers; see the server's log)", so.ServerName)
	}
	s.log.Info("nats server started", "name", so.ServerName, "client", s.ClientURL(), "cluster", s.ClusterURL(),
		"sync_always", so.SyncAlways)
	return nil
}

// WaitJetStream waits until JetStream answers API requests (a clustered
// node needs a quorum of its peers for that), or ctx is done.
func (s *Server) WaitJetStream(ctx context.Context) error {
	nc, err := s.Conn(nats.Name("natsd-ready"))
	if err != nil {
		return err
	}
	defer nc.Close()
	var last error
	for {
		// $JS.API.INFO needs the meta leader when clustered.
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		msg, err := nc.RequestWithContext(rctx, "$JS.API.INFO", nil)
		cancel()
		if err == nil && !strings.Contains(string(msg.Data), `"error"`) {
			return nil
		}
		if err == nil {
			err = errors.New(string(msg.Data))
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats: jetstream not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Conn opens an in-process client connection (no TCP). The caller closes
// it.
func (s *Server) Conn(opts ...nats.Option) (*nats.Conn, error) {
	if s.srv == nil {
		return nil, errors.New("nats: server not started")
	}
	opts = append([]nats.Option{nats.InProcessServer(s.srv), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: in-process connection: %w", err)
	}
	return nc, nil
}

// Name is the server's name.
func (s *Server) Name() string {
	if s.srv == nil {
		return ""
	}
	return s.srv.Name()
}

// ClientURL is the client address (nats://host:port), "" without one.
func (s *Server) ClientURL() string {
	if s.srv == nil || s.srv.Addr() == nil {
		return ""
	}
	return "nats://" + s.srv.Addr().String()
}

// ClusterURL is the route address (nats://host:port), "" unclustered.
func (s *Server) ClusterURL() string {
	if s.srv == nil || s.srv.ClusterAddr() == nil {
		return ""
	}
	return "nats://" + s.srv.ClusterAddr().String()
}

// Server is the underlying nats-server (for tests and diagnostics).
func (s *Server) Server() *server.Server { return s.srv }

// Shutdown stops the server, handing off its raft leaderships first (lame
// duck would also move clients, which relayd does not need), and waits for
// it to stop or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	srv := s.srv
	done := make(chan struct{})
	go func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		s.log.Info("nats server stopped", "name", srv.Name())
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats: shutdown %s: %w", srv.Name(), ctx.Err())
	}
}

// logAdapter writes nats-server's log lines to hclog.
type logAdapter struct{ l hclog.Logger }

func (a logAdapter) Noticef(f string, v ...any) { a.l.Info(fmt.Sprintf(f, v...)) }
func (a logAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a logAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a logAdapter) Errorf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a logAdapter) Debugf(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a logAdapter) Tracef(f string, v ...any)  { a.l.Trace(fmt.Sprintf(f, v...)) }
