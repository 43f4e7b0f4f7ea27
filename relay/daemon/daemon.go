package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/errgroup"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/api"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/ingest"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/policy"
	"github.com/edgerelay/edgerelay/relay/queue"
)

// Daemon is a running relayd.
type Daemon struct {
	cfg     *config.Config
	log     hclog.Logger
	metrics *metrics
	ready   chan struct{}
	reload  atomic.Pointer[policy.Watcher] // set while running
	health  *health                        // set before ready
	socket  atomic.Pointer[ingest.Server]  // set while running (route checks)
	abort   chan struct{}                  // closed by Abort
	aborted sync.Once

	live    atomic.Pointer[liveConfig] // the config in force (reloads)
	running atomic.Pointer[running]    // set while running (reloads)

	// Version is reported by GET /v1/status; main sets it before Run.
	Version string

	// Test hooks (export_test.go): zero values mean production behaviour.
	storeFault  func() error  // bolt.Options.WriteFault
	healthEvery time.Duration // store probe interval (default healthInterval)
	sweepEvery  time.Duration // pipeline SweepInterval and SweepAge
}

// New returns a daemon for cfg. It opens nothing; Run does.
func New(cfg *config.Config, log hclog.Logger) *Daemon {
	return &Daemon{cfg: cfg, log: log, metrics: newMetrics(), ready: make(chan struct{}), abort: make(chan struct{})}
}

// Abort makes a stopping Run return without waiting for requests and sends
// in flight (a second SIGTERM): the store, the plugins and the policy
// engine are still closed, in order, before Run returns. Work not finished
// stays on disk for the next start.
func (d *Daemon) Abort() { d.aborted.Do(func() { close(d.abort) }) }

// Ready is closed once the socket accepts events.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Run opens everything, serves until ctx is done, then shuts down in order
// and returns. A non-nil error means relayd could not start or a part
// failed.
func (d *Daemon) Run(ctx context.Context) (err error) {
	cfg := d.cfg
	st, closeStore, err := d.openStore(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if cerr := closeStore(cctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		d.log.Info("store closed")
	}()

	d.live.Store(newLiveConfig(cfg))
	lanes, swaps, err := d.openProviders(ctx, st)
	if err != nil {
		return err
	}
	d.metrics.knownType = func(t string) bool { return cfg.Notifications[t] != nil }
	timed := timedStore{Backend: st, m: d.metrics}
	if gc, ok := st.(groupCommitter); ok {
		d.metrics.reg.MustRegister(newCommitCollector(gc))
	}
	q := queue.New(queue.Options{
		Schedule:     timed,
		Devices:      st,
		Owner:        d.nodeName(),
		LeaseTTL:     cfg.Queue.Lease,
		Lanes:        lanes,
		Backoff:      queue.Backoff{Initial: cfg.Retry.Initial, Max: cfg.Retry.Max, Jitter: cfg.Retry.Jitter},
		Logger:       d.log.Named("queue"),
		DrainTimeout: cfg.ShutdownTimeout,
		OnOutcome:    d.metrics.outcome,
		OnOffered:    d.metrics.acceptLeases,
		OnFinal:      d.metrics.final,
		OnBreaker:    d.metrics.onBreaker,
		MaxOpenJobs:  cfg.Queue.MaxOpenJobs,
		// A prompt left on screen after it expired invites a late
		// approve: it is withdrawn (answerGate skips the withdraw of an
		// alert its answer or cancel withdrew already).
		WithdrawOnExpiry: true,
	})
	engine, err := policy.Open(ctx, policy.Options{
		CacheDir:    filepath.Join(cfg.DataDir, "wazero-cache"),
		MemoryLimit: cfg.Plugins.MemoryLimit,
		Timeout:     cfg.Plugins.Timeout,
		Logger:      d.log.Named("policy"),
	})
	if err != nil {
		return fmt.Errorf("open policy engine: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if cerr := engine.Close(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close policy engine: %w", cerr))
		}
	}()
	// A missing plugin directory means "no plugins yet": create it so it can
	// be watched and plugins dropped in later.
	if err := os.MkdirAll(cfg.Plugins.Dir, 0o755); err != nil {
		return fmt.Errorf("plugins dir: %w", err)
	}
	watcher := policy.NewWatcher(policy.WatcherOptions{
		Dir:    cfg.Plugins.Dir,
		Engine: engine,
		Set: policy.SetOptions{OnError: cfg.Plugins.OnError, Logger: d.log.Named("policy"),
			Observe: func(p string, took time.Duration) { d.metrics.pluginTime.WithLabelValues(p).Observe(took.Seconds()) }},
		Logger: d.log.Named("policy.watcher"),
		// Every plugin change is an operator's change (a file dropped in).
		OnChange: auditPluginChange(st, d.nodeName(), d.log.Named("audit")),
	})
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		watcher.Close(cctx)
	}()
	if err := watcher.Reload(); err != nil {
		// A broken plugin is logged and skipped; the others load.
		d.log.Error("some policy plugins did not load", relay.LogKeyError, err)
	}
	d.reload.Store(watcher)
	d.metrics.reg.MustRegister(newPluginCollector(watcher.List), newQueueCollector(q))

	notices := &noticer{st: st, cfg: cfg, q: q, now: time.Now, log: d.log.Named("notice")}
	wd := &withdrawer{st: st, q: q, now: time.Now, log: d.log.Named("withdraw")}
	pl := pipeline.New(pipeline.Options{
		Config: cfg,
		Store:  pipelineStore(timed),
		Queue:  q,
		Policy: policyAdapter{w: watcher},
		Logger: d.log.Named("pipeline"),
		// user.recent lives in the store: it survives a restart and every
		// relay of a cluster counts into it.
		Recent:    st,
		OnNotices: notices.send,
		OnDecided: d.metrics.decided,
		// Zero: the pipeline's defaults.
		SweepInterval: d.sweepEvery,
		SweepAge:      d.sweepEvery,
		// bolt stores an event with its decision in one commit.
		DecideOnAccept: cfg.Store.Kind == config.StoreBolt,
	})
	events, err := pl.Recover(ctx)
	if err != nil {
		// Not fatal: the pipeline's sweeps decide them once the store
		// answers (a cluster still catching up, a transient error).
		d.log.Warn("some events left undecided by a previous run are not decided yet; retrying in the background", relay.LogKeyError, err)
	}
	if events > 0 {
		d.log.Info("decided events left undecided by a previous run", "events", events)
	}

	hl := &health{ping: st.Ping, breakers: q.OpenBreakers, log: d.log.Named("health"), every: d.healthEvery}
	d.health = hl
	srv := ingest.New(ingest.Options{
		Readiness:        hl.err,
		Path:             cfg.Socket.Path,
		Mode:             cfg.Socket.Mode,
		MaxInflightBytes: cfg.Socket.MaxInflightBytes,
		Acceptor:         &countingAcceptor{next: pl, m: d.metrics},
		Store:            st,
		Audit:            st,
		// The config in force: a reload changes types and apps.
		KnownType: func(t string) bool { return d.live.Load().cfg.Notifications[t] != nil },
		Types:     func() map[string]relay.Setting { return d.live.Load().defaults },
		KnownApp:  func(a string) bool { return d.live.Load().cfg.AppByName(a) != nil },
		Logger:    d.log.Named("ingest"),
	})
	srv.Handle("GET /v1/queue", queueHandler(q, d.nodeName()))
	srv.Handle("GET /v1/deadletters", q.DeadLettersHandler())
	srv.Handle("POST /v1/deadletters/{id}/replay", auditOK(q.ReplayHandler(), st, d.log.Named("audit"), replayEntry))
	hub := api.NewHub()
	srv.Handle("GET /v1/actions/stream", api.StreamHandler(st, api.StreamOptions{Hub: hub, Logger: d.log.Named("actions"), Poll: d.streamPoll()}))
	var apiSrv *api.Server
	if appAPIEnabled(cfg) {
		apiSrv, err = api.New(api.Options{Config: cfg, Store: st, Hub: hub, Logger: d.log.Named("api"), OnAnswer: wd.onAnswer,
			SendTokenProof: wd.sendTokenProof, AnswerRetention: cfg.Retention.Answers, Audit: st, OnRequest: d.metrics.apiRequest})
		if err != nil {
			return fmt.Errorf("app api: %w", err)
		}
	} else {
		d.log.Warn("app API disabled: the config has no auth block to verify tokens with")
	}
	srv.Handle("DELETE /v1/events/{workspace}/{id}", auditOK(cancelHandler(st, wd, time.Now, d.log.Named("cancel")), st, d.log.Named("audit"), cancelEntry))
	srv.Handle("GET /v1/plugins", pluginsHandler(watcher))
	srv.Handle("POST /v1/plugins/reload", auditReload(reloadHandler(watcher), watcher.List, st, d.log.Named("audit")))
	srv.Handle("GET /v1/status", d.statusHandler(time.Now()))
	srv.Handle("POST /v1/config/reload", d.configReloadHandler())
	rn := &running{pipeline: pl, queue: q, api: apiSrv, lanes: swaps}
	d.running.Store(rn)
	defer rn.closeRetired()
	srv.Handle("GET /v1/backup", backupHandler(st, d.log.Named("backup")))
	srv.Handle("POST /v1/erase", eraseHandler(st, d.log.Named("erase"), auditErase(st, d.log.Named("audit"))))
	d.socket.Store(srv)

	// Three stages stop one after the other: the socket first (no new
	// events), then the deciders, then the queue drains in-flight sends.
	decideCtx, stopDeciders := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDeciders()
	sendCtx, stopSends := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSends()

	g, gctx := errgroup.WithContext(ctx)
	// Open action streams end with the socket, not after its drain timeout.
	stopHub := context.AfterFunc(gctx, hub.Close)
	defer stopHub()
	if apiSrv != nil {
		g.Go(func() error {
			if err := apiSrv.Run(gctx); err != nil {
				return fmt.Errorf("app api: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error { return q.Run(sendCtx) })
	g.Go(func() error { return hl.run(gctx) })
	g.Go(func() error { return watcher.Run(gctx) })
	g.Go(func() error {
		defer stopSends() // the queue drains once no decider can add jobs
		return pl.Run(decideCtx)
	})
	g.Go(func() error {
		err := srv.Run(gctx)
		stopDeciders()
		if err != nil {
			return fmt.Errorf("socket api: %w", err)
		}
		return nil
	})
	if cfg.Metrics.Address != "" {
		g.Go(func() error { return d.serveMetrics(gctx) })
	}
	g.Go(func() error { return runPruner(gctx, st, retentionsOf(cfg), d.log.Named("store")) })
	g.Go(func() error {
		select {
		case <-srv.Ready():
			d.log.Info("relayd ready", "socket", cfg.Socket.Path, "store", cfg.Store.Path, "apps", len(cfg.Apps))
			close(d.ready)
		case <-gctx.Done():
		}
		return nil
	})
	waited := make(chan error, 1)
	go func() { waited <- g.Wait() }() // outlives Run only after Abort
	select {
	case err = <-waited:
	case <-d.abort:
		err = errors.New("stopped without draining (second signal)")
	}
	d.log.Info("relayd stopped", "open_jobs", q.Open())
	return err
}

// streamPoll is how often an actions stream re-reads the answer log: on a
// shared store (jetstream) answers also arrive through other relays.
func (d *Daemon) streamPoll() time.Duration {
	if d.cfg.Store.Kind == config.StoreJetStream {
		return 250 * time.Millisecond
	}
	return 0
}

// nodeName names this relay in job leases and GET /v1/queue: the embedded
// NATS server's name, else the host name and process id.
func (d *Daemon) nodeName() string {
	if d.cfg.NATS != nil && d.cfg.NATS.Name != "" {
		return d.cfg.NATS.Name
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "relayd"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// openProviders builds one lane per app and platform, each behind a
// swapNotifier a reload can replace. Every lane sends through answerGate:
// a cancelled prompt's jobs and a needless expiry withdraw are dropped
// when leased.
func (d *Daemon) openProviders(ctx context.Context, st answeredReader) (map[string]queue.Lane, map[string]*swapNotifier, error) {
	lanes := map[string]queue.Lane{}
	swaps := map[string]*swapNotifier{}
	for k, l := range lanesOf(d.cfg) {
		p, err := d.newLaneProvider(ctx, l.app, l.p, d.cfg)
		if err != nil {
			return nil, nil, err
		}
		sw := &swapNotifier{}
		sw.cur.Store(p)
		swaps[k] = sw
		conc := 100
		if l.p == relay.PlatformIOS {
			conc = 256 * max(l.app.APNS.Connections, 1)
		}
		lanes[k] = queue.Lane{Notifier: answerGate{next: sw, st: st}, Concurrency: conc}
	}
	return lanes, swaps, nil
}

func (d *Daemon) serveMetrics(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(d.metrics.reg, d.log.Named("metrics")))
	// Probes over TCP, for orchestrators that cannot reach the socket.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-d.ready:
			if err := d.health.err(); err != nil {
				httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "not ready: "+err.Error())
				return
			}
			httpjson.Write(w, http.StatusOK, map[string]string{"status": "ready"})
		default:
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "relayd is starting")
		}
	})
	// Profiles for operators chasing CPU or memory; same listener as the
	// metrics, so the same exposure (loopback by default).
	if d.cfg.Metrics.Pprof { // metrics { pprof = false } turns them off
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", d.cfg.Metrics.Address)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	})
	defer stop()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// countingAcceptor counts socket results for metrics.
type countingAcceptor struct {
	next ingest.Acceptor
	m    *metrics
}

func (c *countingAcceptor) Accept(ctx context.Context, events []relay.Event) ([]error, error) {
	errs, err := c.next.Accept(ctx, events)
	if err != nil {
		return errs, err
	}
	for _, e := range errs {
		switch {
		case e == nil:
			c.m.events.WithLabelValues("accepted").Inc()
		case errors.Is(e, relay.ErrDuplicate):
			c.m.events.WithLabelValues("duplicate").Inc()
		default:
			c.m.events.WithLabelValues("rejected").Inc()
		}
	}
	return errs, nil
}

func queueHandler(q *queue.Queue, node string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stats, err := q.Stats(r.Context())
		if err != nil {
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "read the schedule: "+err.Error())
			return
		}
		depth := 0
		for _, s := range stats {
			depth += s.Depth
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"relay": node, "depth": depth, "open_jobs": q.Open(), "lanes": stats})
	})
}

// Reload is SIGHUP: it re-reads config.hcl (ReloadConfig; a file that
// cannot be applied is logged and the running config stays) and the
// policy plugin directory.
func (d *Daemon) Reload() {
	if changed, err := d.ReloadConfig(context.Background()); err != nil {
		d.log.Error("config reload failed: the running config stays", relay.LogKeyError, err)
	} else {
		d.log.Info("config reloaded", "file", d.cfg.File, "changed", changed)
	}
	w := d.reload.Load()
	if w == nil {
		return
	}
	if err := w.Reload(); err != nil {
		d.log.Error("policy reload: some plugins kept their previous version", relay.LogKeyError, err)
		return
	}
	d.log.Info("policy plugins reloaded", "plugins", len(w.List()))
}
