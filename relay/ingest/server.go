package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/fsperm"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Acceptor takes validated events from the socket API. The daemon's
// pipeline implements it: it fills defaults, stores the events durably and
// schedules their decision.
//
// # Notes
//
//   - Accept is called concurrently, once per request, with the valid
//     events of the request in body order; events is the callee's to keep.
//   - The ctx is the request's: it is not cancelled when the server starts
//     draining, only when the client goes away or the drain deadline passes.
type Acceptor interface {
	// Accept returns one error per event, in order: nil when accepted
	// (durably stored), relay.ErrDuplicate (possibly wrapped) when an event
	// with the same (workspace, id) was accepted before, any other error
	// to reject that event with the error's message. The second result is
	// a failure of the whole call (the store is down): nothing was
	// accepted and the request is answered 503.
	Accept(ctx context.Context, events []relay.Event) ([]error, error)
}

// AcceptorFunc adapts a function to the Acceptor interface.
type AcceptorFunc func(ctx context.Context, events []relay.Event) ([]error, error)

// Accept calls f.
func (f AcceptorFunc) Accept(ctx context.Context, events []relay.Event) ([]error, error) {
	return f(ctx, events)
}

// Defaults for Options fields left zero.
const (
	DefaultMode              os.FileMode = 0o660
	DefaultReadHeaderTimeout             = 5 * time.Second
	DefaultReadTimeout                   = 60 * time.Second
	DefaultIdleTimeout                   = 2 * time.Minute
	DefaultDrainTimeout                  = 10 * time.Second
	// DefaultMaxBatchBytes fits the largest legal batch: relay.MaxBatchEvents
	// events of relay.MaxEventBytes each with "\r\n", plus 1 MiB of blank
	// lines and slack (about 161 MiB). The batch is streamed to the
	// Acceptor in chunks, so memory use follows the chunk, not this cap.
	DefaultMaxBatchBytes int64 = relay.MaxBatchEvents*(relay.MaxEventBytes+2) + 1<<20
	// DefaultMaxInflightBytes bounds the batch bytes of all requests in
	// flight together: one maximum batch and change.
	DefaultMaxInflightBytes int64 = 256 << 20
	// batchChunkEvents and batchChunkBytes bound a chunk of a batch handed
	// to the Acceptor at once.
	batchChunkEvents       = 500
	batchChunkBytes  int64 = 4 << 20
	// inflightStep is how much of the in-flight budget a batch without a
	// Content-Length takes at a time, as it is read.
	inflightStep int64 = 4 << 20
	// maxSocketPath is the longest Unix socket path (sun_path is 108 bytes
	// with the NUL).
	maxSocketPath = 107
	// maxAdminBodyBytes bounds admin request bodies.
	maxAdminBodyBytes = 64 << 10
)

// Options configure a Server. Path, Acceptor, Store and KnownType or Types
// are required; Run reports the first one missing.
// Store is what the socket API needs of the store: the directory and the
// events' records.
type Store interface {
	store.Directory
	Event(ctx context.Context, key relay.EventKey) (*store.Record, error)
}

type Options struct {
	// Path is the socket file. Its parent directory is created if missing.
	Path string
	// Mode is applied to the socket file after listening (DefaultMode if
	// zero): the file permissions are the API's only access control.
	Mode os.FileMode
	// Acceptor receives validated events.
	Acceptor Acceptor
	// Store serves GET /v1/events/... and the admin endpoints.
	Store Store
	// KnownType reports whether a notification type is declared in config.
	// nil: derived from Types.
	KnownType func(string) bool
	// Types returns every known notification type (config's notification
	// blocks) with the setting a workspace has when it never chose one. It
	// is called once per request, so it may follow config reloads; the map
	// is only read. With Types, the settings and preferences endpoints
	// answer the effective value of every type; without it, only the
	// values explicitly set.
	Types func() map[string]relay.Setting
	// Audit records the admin routes' changes (settings, preferences,
	// device removals), each with the socket peer's uid and pid, and serves
	// GET /v1/audit. nil: nothing is recorded and GET /v1/audit answers 404.
	Audit store.AuditLog
	// KnownApp reports whether an app name is declared in config (device
	// registration). nil accepts any app name that is a valid id.
	KnownApp func(string) bool
	// Readiness reports why the daemon is not ready (nil: ready); /readyz
	// answers 503 with its message. nil means ready while listening. The
	// server is never ready once draining.
	Readiness func() error
	// Logger receives the server's logs (the caller names it, e.g.
	// "ingest"). nil: no logs.
	Logger hclog.Logger

	// MaxBatchBytes caps an NDJSON body (DefaultMaxBatchBytes if zero).
	MaxBatchBytes int64
	// MaxInflightBytes bounds the NDJSON bytes of all batches in flight
	// together (DefaultMaxInflightBytes if zero): a batch takes its
	// Content-Length from this budget before it is read (or its size as it
	// is read, without one) and gives it back when answered. A batch that
	// does not fit is answered 503 with Retry-After. A batch larger than
	// the whole budget is taken when no other batch is in flight.
	MaxInflightBytes int64
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout are the http.Server's
	// (Default* if zero). ReadTimeout bounds reading a whole request,
	// including its body.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	// DrainTimeout bounds how long Run waits, once its ctx is done, for
	// requests in flight to finish before closing their connections
	// (DefaultDrainTimeout if zero).
	DrainTimeout time.Duration
}

// Server serves the socket API. Create it with New, add routes with Handle,
// then Run it once.
type Server struct {
	opts     Options
	log      hclog.Logger
	mux      *httpjson.Mux
	ready    chan struct{}
	draining atomic.Bool
	running  atomic.Bool

	inflight budget // batch bytes in flight, bounded by MaxInflightBytes

	// handlers is read-locked by every request; Run write-locks it to wait
	// for handlers still running after the connections are closed.
	handlers sync.RWMutex
	stopped  bool // under handlers
}

// New returns a server for opts. It does no I/O and starts nothing.
func New(opts Options) *Server {
	if opts.Mode == 0 {
		opts.Mode = DefaultMode
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.MaxInflightBytes <= 0 {
		opts.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Server{
		opts:     opts,
		log:      log,
		mux:      httpjson.NewMux(),
		ready:    make(chan struct{}),
		inflight: budget{max: opts.MaxInflightBytes},
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("POST /v1/events", s.postEvents)
	s.mux.HandleFunc("GET /v1/events/{workspace}/{id}", s.getEvent)
	s.mux.HandleFunc("GET /v1/workspaces/{ws}/settings", s.getSettings)
	s.mux.HandleFunc("PUT /v1/workspaces/{ws}/settings", s.putSettings)
	s.mux.HandleFunc("GET /v1/workspaces/{ws}/users/{user}/devices", s.listDevices)
	s.mux.HandleFunc("GET /v1/workspaces/{ws}/users/{user}/devices/{device_id}", s.getDevice)
	s.mux.HandleFunc("PUT /v1/workspaces/{ws}/users/{user}/devices/{device_id}", s.putDevice)
	s.mux.HandleFunc("DELETE /v1/workspaces/{ws}/users/{user}/devices/{device_id}", s.deleteDevice)
	s.mux.HandleFunc("GET /v1/workspaces/{ws}/users/{user}/preferences", s.getPreferences)
	s.mux.HandleFunc("PUT /v1/workspaces/{ws}/users/{user}/preferences", s.putPreferences)
	s.mux.HandleFunc("GET /v1/audit", s.getAudit)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /openapi.json", serveOpenAPI)
}

// Handle adds a route, with a Go 1.22 http.ServeMux pattern such as
// "GET /v1/queue". Call it before Run. It panics, as http.ServeMux does,
// when the pattern conflicts with another route.
//
// Handlers are wrapped like the built-in routes: a panic answers 500 and
// is logged. The http.ResponseWriter given to h implements http.Flusher and
// works with http.ResponseController. A long-lived response (a
// Server-Sent Events stream) must lift the server's read deadline, or its
// request context is cancelled after ReadTimeout:
//
//	http.NewResponseController(w).SetReadDeadline(time.Time{})
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// Ready returns a channel closed once the server listens on its socket.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Path returns the socket path.
func (s *Server) Path() string { return s.opts.Path }

// ServeHTTP serves one request of the socket API: the routes, JSON 404 and
// 405 answers, and panic recovery. Run uses it; tests may too.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handlers.RLock()
	defer s.handlers.RUnlock()
	if s.stopped {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "shutting down")
		return
	}
	rw := &responseWriter{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel value, compared as net/http does
				panic(v)
			}
			s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if !rw.wrote {
				writeError(rw, http.StatusInternalServerError, CodeInternal, "internal error")
			}
		}
	}()
	// No route: answer in JSON instead of the mux's text.
	switch status, allow := httpjson.Unmatched(s.mux, r); status {
	case http.StatusMethodNotAllowed:
		rw.Header().Set("Allow", allow)
		writeError(rw, http.StatusMethodNotAllowed, CodeMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
		return
	case http.StatusNotFound:
		writeError(rw, http.StatusNotFound, CodeNotFound, "no route for "+r.Method+" "+r.URL.Path)
		return
	}
	s.mux.ServeHTTP(rw, r) // sets the path values Handler does not
}

// Run listens on the socket and serves until ctx is done. Then it stops
// accepting connections, lets requests in flight finish (up to
// DrainTimeout; then it cancels their contexts, closes their connections
// and waits for their handlers to return), removes the socket file and
// returns nil. It fails if the options are incomplete, the socket path
// is in use by a live server, or exists and is not a socket. Run may be
// called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("run ingest server: already run")
	}
	if err := s.check(); err != nil {
		return fmt.Errorf("run ingest server: %w", err)
	}
	l, err := s.listen()
	if err != nil {
		return err
	}
	// Request contexts outlive ctx while draining; they end when Run
	// closes the remaining connections.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ConnContext:       connContext,
	}
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(l) })
	s.log.Info("listening", "path", s.opts.Path, "mode", fmt.Sprintf("%#o", s.opts.Mode))
	close(s.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		serveErr <- err
		runErr = fmt.Errorf("serve socket %s: %w", s.opts.Path, err)
	}
	s.draining.Store(true)
	// The socket file goes first, so new connections are refused while
	// requests in flight finish (the listener does not unlink it: it was
	// bound under another name).
	if err := os.Remove(s.opts.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove socket", "path", s.opts.Path, relay.LogKeyError, err)
	}
	drainCtx, cancelDrain := context.WithTimeout(context.WithoutCancel(ctx), s.opts.DrainTimeout)
	if err := srv.Shutdown(drainCtx); err != nil {
		s.log.Warn("drain deadline passed, closing connections", "timeout", s.opts.DrainTimeout)
		cancelBase()
		_ = srv.Close()
	}
	cancelDrain()
	wg.Wait()
	// Close does not wait for handlers: wait for those still running
	// (their request contexts are cancelled).
	s.handlers.Lock()
	s.stopped = true
	s.handlers.Unlock()
	if err := <-serveErr; runErr == nil && err != nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = fmt.Errorf("serve socket %s: %w", s.opts.Path, err)
	}
	if err := os.Remove(s.opts.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		runErr = errors.Join(runErr, fmt.Errorf("remove socket: %w", err))
	}
	s.log.Info("stopped")
	return runErr
}

func (s *Server) check() error {
	switch {
	case s.opts.Path == "":
		return errors.New("no socket path")
	case s.opts.Acceptor == nil:
		return errors.New("no acceptor")
	case s.opts.Store == nil:
		return errors.New("no store")
	case s.opts.KnownType == nil && s.opts.Types == nil:
		return errors.New("no notification types (KnownType or Types)")
	}
	return nil
}

// listen prepares the socket path (creating its directory, checking that
// no one else can write to it, replacing a stale socket left by a crash)
// and listens with the configured mode.
//
// The socket is bound inside a fresh private directory (mode 0700) next to
// its path, given its mode there, and renamed into place: it is never
// reachable with the process umask's mode, and the only path chmod'ed is
// one no other user can touch (no symlink can be swapped in).
func (s *Server) listen() (net.Listener, error) {
	path := s.opts.Path
	if s.opts.Mode&0o002 != 0 || s.opts.Mode&^os.ModePerm != 0 {
		return nil, fmt.Errorf("socket mode %04o: any local user could post events and change settings; use 0660 (owner and group) or 0600", uint32(s.opts.Mode))
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := CheckSocketDir(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket path %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("socket %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
		s.log.Info("removed stale socket", "path", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("check socket path: %w", err)
	}
	private, err := os.MkdirTemp(dir, ".relayd")
	if err != nil {
		return nil, fmt.Errorf("create socket: %w", err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	if len(tmp) > maxSocketPath {
		return nil, fmt.Errorf("create socket: the socket is bound in %s first, and that path is %d bytes, more than the %d a Unix socket allows; use a socket.path in a shorter directory", private, len(tmp), maxSocketPath)
	}
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen on socket: %w", err)
	}
	// The file is renamed away: Close must not unlink whatever has the
	// temporary name then; Run removes the socket at path.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, s.opts.Mode); err != nil {
		return nil, errors.Join(fmt.Errorf("chmod socket: %w", err), l.Close())
	}
	if fi, err := os.Lstat(tmp); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != s.opts.Mode {
		return nil, errors.Join(fmt.Errorf("create socket: %s is not the socket with mode %04o", tmp, uint32(s.opts.Mode)), l.Close())
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, errors.Join(fmt.Errorf("move socket into place: %w", err), l.Close())
	}
	return l, nil
}

// CheckSocketDir checks that only relayd's user (or root) can change what
// is in dir, the socket's directory (fsperm.CheckDir): otherwise another
// user could put their own socket or a symlink at the socket's path. The
// error names the directory and the fix.
func CheckSocketDir(dir string) error {
	if err := fsperm.CheckDir(dir); err != nil {
		return fmt.Errorf("socket directory %s: %w (another user could replace the socket; or choose a socket.path in a directory only relayd's user can write)", dir, err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "shutting down")
		return
	}
	if s.opts.Readiness != nil {
		if err := s.opts.Readiness(); err != nil {
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// responseWriter records whether the header was written, so a panic after
// it is only logged.
type responseWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *responseWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *responseWriter) Flush() {
	w.wrote = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// budget counts bytes in flight against a maximum.
type budget struct {
	mu   sync.Mutex
	max  int64
	used int64
}

// take reserves n bytes if they fit. More than max fits only when nothing
// else is reserved (it then takes max), so a lone large request still goes.
func (b *budget) take(n int64) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = min(n, b.max)
	if b.used+n > b.max {
		return 0, false
	}
	b.used += n
	return n, true
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// InflightBytes returns the batch bytes in flight now (tests, metrics).
func (s *Server) InflightBytes() int64 {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	return s.inflight.used
}
