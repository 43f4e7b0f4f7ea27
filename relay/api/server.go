package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Defaults for Options fields left zero.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultDrainTimeout      = 10 * time.Second
	// DefaultAnswerRetention is how long answers stay on the actions
	// stream's log (a reader reconnecting later than this misses them).
	DefaultAnswerRetention = 24 * time.Hour
	// DefaultPruneInterval is how often Run prunes the answer log.
	DefaultPruneInterval = 10 * time.Minute
	// DefaultMaxDevicesPerUser bounds one user's registered devices.
	DefaultMaxDevicesPerUser = 20
	// maxHeaderBytes bounds request headers.
	maxHeaderBytes = 32 << 10
)

// Options configure a Server. Config and Store are required.
// Store is what the app API needs of the store: the directory, the answer
// log and the events answered.
type Store interface {
	store.Directory
	store.TokenMoves
	store.AnswerLog
	Event(ctx context.Context, key relay.EventKey) (*store.Record, error)
}

type Options struct {
	// Config supplies api (address, tls), auth (issuer, audience, key
	// file), notifications (types, defaults, offered actions) and apps.
	Config *config.Config
	// Store holds devices, settings, preferences, events and answers.
	Store Store
	// Logger receives the server's logs (the caller names it); nil: none.
	Logger hclog.Logger
	// Hub, when set, is notified after each stored answer, waking the
	// socket's actions streams.
	Hub *Hub
	// OnAnswer, when set, is called after an answer is stored and
	// published, with the event's record (the daemon queues the withdraw
	// pushes, see WithdrawAlert). It runs on the request's goroutine
	// before the answer is sent, with a context that outlives the
	// request; it must not block for long.
	OnAnswer func(ctx context.Context, a relay.Answer, rec *store.Record)
	// SendTokenProof, when set, sends the one-time code of a token move
	// (relay.TokenProof) by silent push to holder, the device that holds
	// the token now (the daemon queues it like any push). It runs on the
	// request's goroutine with a context that outlives the request. Nil:
	// tokens never move between users through the app API.
	SendTokenProof func(ctx context.Context, holder relay.Device, code string, p relay.TokenProof) error
	// Now is the clock (tokens, expiry, answer times); nil: time.Now.
	Now func() time.Time
	// Listener, when set, is served instead of listening on
	// Config.API.Address (tests). Run closes it.
	Listener net.Listener

	// UserRate/UserBurst limit requests per user, AddrRate/AddrBurst per
	// client address (Default* if zero).
	UserRate  rate.Limit
	UserBurst int
	AddrRate  rate.Limit
	AddrBurst int
	// MaxBodyBytes caps a request body (DefaultMaxBodyBytes if zero).
	MaxBodyBytes int64
	// MaxDevicesPerUser bounds one user's devices (default
	// DefaultMaxDevicesPerUser).
	MaxDevicesPerUser int
	// The http.Server's timeouts and Run's drain bound (Default* if zero).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	DrainTimeout      time.Duration
	// OnRequest, when set, is told of every request once answered: its
	// route pattern ("PUT /v1/devices/{device_id}"; "unmatched" for no
	// route), status and duration (metrics; never ids or paths).
	OnRequest func(route string, status int, took time.Duration)
	// Audit, when set, records the admin changes made through this API
	// (workspace settings) with the caller's sub, ws and role.
	Audit store.AuditLog
	// AnswerRetention is how long answers stay on the stream's log;
	// PruneInterval how often Run prunes it (Default* if zero).
	AnswerRetention time.Duration
	PruneInterval   time.Duration
}

// Server serves the app API. Create it with New, then Run it once.
type Server struct {
	opts     Options
	cfg      atomic.Pointer[config.Config] // swapped by SetConfig
	st       Store
	log      hclog.Logger
	now      func() time.Time
	verifier atomic.Pointer[Verifier] // swapped by SetConfig
	tls      *tls.Config              // nil: plain HTTP
	mux      *httpjson.Mux
	users    *limiter
	addrs    *limiter

	ready   chan struct{}
	addr    atomic.Pointer[net.Addr]
	running atomic.Bool
}

// SetConfig makes cfg (auth, notification types, apps) the config of the
// requests that start from now on, with v, a verifier made from cfg.Auth
// by NewVerifier (a reload: the caller builds v first, so a bad key file
// changes nothing). The address and TLS files are not re-read.
func (s *Server) SetConfig(cfg *config.Config, v *Verifier) {
	s.verifier.Swap(v).Close() // the old key set stops refreshing
	s.cfg.Store(cfg)
}

// New checks opts and reads the key files (auth key, TLS certificate). It
// listens on nothing and starts nothing.
func New(opts Options) (*Server, error) {
	if opts.Config == nil {
		return nil, errors.New("new api server: no config")
	}
	if opts.Store == nil {
		return nil, errors.New("new api server: no store")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	setDefault(&opts.UserRate, DefaultUserRate)
	setDefault(&opts.UserBurst, DefaultUserBurst)
	setDefault(&opts.AddrRate, DefaultAddrRate)
	setDefault(&opts.AddrBurst, DefaultAddrBurst)
	setDefault(&opts.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&opts.MaxDevicesPerUser, DefaultMaxDevicesPerUser)
	setDefault(&opts.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&opts.ReadTimeout, DefaultReadTimeout)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.DrainTimeout, DefaultDrainTimeout)
	setDefault(&opts.AnswerRetention, DefaultAnswerRetention)
	setDefault(&opts.PruneInterval, DefaultPruneInterval)

	v, err := NewVerifier(opts.Config.Auth, opts.Now)
	if err != nil {
		return nil, fmt.Errorf("new api server: %w", err)
	}
	s := &Server{
		opts:  opts,
		st:    opts.Store,
		log:   opts.Logger,
		now:   opts.Now,
		mux:   httpjson.NewMux(),
		users: newLimiter(opts.UserRate, opts.UserBurst),
		addrs: newLimiter(opts.AddrRate, opts.AddrBurst),
		ready: make(chan struct{}),
	}
	s.cfg.Store(opts.Config)
	s.verifier.Store(v)
	if c := opts.Config.API; c.TLSCertFile != "" || c.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			v.Close()
			return nil, fmt.Errorf("new api server: api.tls: %w", err)
		}
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	s.routes()
	return s, nil
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

func (s *Server) routes() {
	s.mux.Handle("GET /v1/devices", s.authed(s.listDevices))
	s.mux.Handle("GET /v1/devices/{device_id}", s.authed(s.getDevice))
	s.mux.Handle("PUT /v1/devices/{device_id}", s.authed(s.putDevice))
	s.mux.Handle("DELETE /v1/devices/{device_id}", s.authed(s.deleteDevice))
	s.mux.Handle("GET /v1/preferences", s.authed(s.getPreferences))
	s.mux.Handle("PUT /v1/preferences", s.authed(s.putPreferences))
	s.mux.Handle("GET /v1/workspace/settings", s.authed(s.getSettings))
	s.mux.Handle("PUT /v1/workspace/settings", s.authed(s.putSettings))
	s.mux.Handle("GET /v1/events/{id}", s.authed(s.getEvent))
	s.mux.Handle("POST /v1/events/{id}/actions", s.authed(s.postAction))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /openapi.json", serveOpenAPI)
}

// Ready returns a channel closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address the server listens on, or nil before Ready.
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.tls != nil }

// Run listens (Config.API.Address, or Options.Listener) and serves until
// ctx is done, pruning the answer log every PruneInterval. Then it stops
// accepting, lets requests in flight finish for up to DrainTimeout, closes
// what remains and returns once every goroutine it started has exited.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("run api server: already run")
	}
	defer func() { s.verifier.Load().Close() }() // a key set stops refreshing
	l := s.opts.Listener
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", s.cfg.Load().API.Address); err != nil {
			return fmt.Errorf("run api server: listen: %w", err)
		}
	}
	addr := l.Addr()
	s.addr.Store(&addr)

	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	if s.tls != nil {
		srv.TLSConfig = s.tls.Clone()
		srv.Protocols.SetHTTP2(true)
	}

	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() {
		if s.tls != nil {
			serveErr <- srv.ServeTLS(l, "", "")
		} else {
			serveErr <- srv.Serve(l)
		}
	})
	pruneCtx, stopPrune := context.WithCancel(ctx)
	defer stopPrune()
	wg.Go(func() { s.pruneLoop(pruneCtx) })
	s.log.Info("listening", "address", addr.String(), "tls", s.tls != nil, "auth", s.verifier.Load().Algorithm())
	close(s.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		serveErr <- err
		runErr = fmt.Errorf("serve app api %s: %w", addr, err)
	}
	stopPrune()
	drainCtx, cancelDrain := context.WithTimeout(context.WithoutCancel(ctx), s.opts.DrainTimeout)
	if err := srv.Shutdown(drainCtx); err != nil {
		s.log.Warn("drain deadline passed, closing connections", "timeout", s.opts.DrainTimeout)
		cancelBase()
		_ = srv.Close()
	}
	cancelDrain()
	wg.Wait()
	if err := <-serveErr; runErr == nil && err != nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = fmt.Errorf("serve app api %s: %w", addr, err)
	}
	s.log.Info("stopped")
	return runErr
}

// pruneLoop drops answers older than AnswerRetention from the log, at
// start and every PruneInterval.
func (s *Server) pruneLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.PruneInterval)
	defer t.Stop()
	for {
		n, err := s.st.PruneAnswers(ctx, s.now().Add(-s.opts.AnswerRetention))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("prune answers", relay.LogKeyError, err)
		case n > 0:
			s.log.Debug("pruned answers", "count", n, "retention", s.opts.AnswerRetention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ServeHTTP serves one request: the per-address rate limit, the routes,
// JSON 404 and 405 answers and panic recovery.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.OnRequest != nil {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		w = sw
		defer func() {
			route := "unmatched"
			if _, p := s.mux.Handler(r); p != "" {
				route = p
			}
			s.opts.OnRequest(route, sw.code(), time.Since(start))
		}()
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel value, compared as net/http does
				panic(v)
			}
			s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
		}
	}()
	if ok, wait := s.addrs.allow(addrKey(r.RemoteAddr), s.now()); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		s.deny(w, r, nil, http.StatusTooManyRequests, CodeRateLimited, "too many requests from this address", "address rate limit")
		return
	}
	switch status, allow := httpjson.Unmatched(s.mux, r); status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authed wraps a handler with token verification and the per-user rate
// limit.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *Claims)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := bearer(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgerelay"`)
			s.deny(w, r, nil, http.StatusUnauthorized, CodeUnauthorized, "missing bearer token", err.Error())
			return
		}
		c, err := s.verifier.Load().Verify(raw)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgerelay", error="invalid_token"`)
			s.deny(w, r, nil, http.StatusUnauthorized, CodeUnauthorized, "invalid token", "token refused: "+err.Error())
			return
		}
		if ok, wait := s.users.allow(c.Workspace+"\x00"+c.Subject, s.now()); !ok {
			w.Header().Set("Retry-After", retryAfter(wait))
			s.deny(w, r, c, http.StatusTooManyRequests, CodeRateLimited, "too many requests", "user rate limit")
			return
		}
		h(w, r, c)
	})
}

// deny answers an error and logs the denial with its reason. reason is for
// the log only; msg is what the client sees.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, c *Claims, status int, code, msg, reason string) {
	kv := []any{"status", status, "code", code, "reason", reason, "method", r.Method, "path", truncate(r.URL.Path), "remote", r.RemoteAddr}
	if c != nil {
		kv = append(kv, relay.LogKeyWorkspace, c.Workspace, relay.LogKeyUser, c.Subject, "role", c.Role)
	}
	s.log.Info("request denied", kv...)
	writeError(w, status, code, msg)
}

// readBody reads a capped body; on failure it answers the request.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, c *Claims) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		s.deny(w, r, c, http.StatusRequestEntityTooLarge, CodePayloadTooLarge,
			fmt.Sprintf("body larger than %d bytes", tooBig.Limit), "body too large")
		return nil, false
	}
	if err != nil {
		s.deny(w, r, c, http.StatusBadRequest, CodeBadRequest, "could not read body", "read body: "+err.Error())
		return nil, false
	}
	return body, true
}

// badRequest answers a decoding error (a *FieldError names the field).
func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, c *Claims, err error) {
	var fe *FieldError
	msg := "invalid request"
	if errors.As(err, &fe) {
		msg = fe.Error()
	}
	s.deny(w, r, c, http.StatusBadRequest, CodeBadRequest, msg, msg)
}

// storeError answers a store failure without its details.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away
	}
	s.log.Error(what, "path", truncate(r.URL.Path), relay.LogKeyError, err)
	writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "temporarily unavailable")
}

// statusWriter records the status a handler answered (OnRequest).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// code is the status answered; 200 when the handler wrote nothing.
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
