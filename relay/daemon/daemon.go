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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/api"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/delivery/apns"
	"github.com/edgerelay/edgerelay/relay/delivery/fcm"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/ingest"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/policy"
	"github.com/edgerelay/edgerelay/relay/queue"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// Daemon is a running relayd.
type Daemon struct {
	cfg     *config.Config
	log     hclog.Logger
	metrics *metrics
	ready   chan struct{}
	reload  atomic.Pointer[policy.Watcher] // set while running
	abort   chan struct{}                  // closed by Abort
	aborted sync.Once
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
	st, err := d.openStore()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if cerr := st.Close(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
		d.log.Info("store closed")
	}()

	lanes, err := d.openProviders(ctx)
	if err != nil {
		return err
	}
	q := queue.New(queue.Options{
		Store:        st,
		Lanes:        lanes,
		Backoff:      queue.Backoff{Initial: cfg.Retry.Initial, Max: cfg.Retry.Max, Jitter: cfg.Retry.Jitter},
		Logger:       d.log.Named("queue"),
		DrainTimeout: cfg.ShutdownTimeout,
		OnOutcome:    d.metrics.outcome,
		OnBreaker:    d.metrics.onBreaker,
		MaxOpenJobs:  cfg.Queue.MaxOpenJobs,
		MaxInMemory:  cfg.Queue.InMemory,
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
	recent := policy.NewRecent()
	watcher := policy.NewWatcher(policy.WatcherOptions{
		Dir:    cfg.Plugins.Dir,
		Engine: engine,
		Set:    policy.SetOptions{Recent: recent, OnError: cfg.Plugins.OnError, Logger: d.log.Named("policy")},
		Logger: d.log.Named("policy.watcher"),
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

	pl := pipeline.New(pipeline.Options{
		Config:     cfg,
		Store:      st,
		Queue:      q,
		Policy:     policyAdapter{w: watcher},
		Logger:     d.log.Named("pipeline"),
		OnAccepted: func(ev relay.Event) { recent.Record(ev.Workspace, ev.User, ev.Type, time.Now()) },
		Admit:      q.Admit, // 503 "queue full" beyond queue.DefaultMaxOpenJobs
	})
	jobs, events, err := pl.Recover(ctx)
	if err != nil {
		return err
	}
	if jobs > 0 || events > 0 {
		d.log.Info("recovered work from the previous run", "open_jobs", jobs, "undecided_events", events)
	}

	defaults := make(map[string]relay.Setting, len(cfg.Notifications))
	for t, n := range cfg.Notifications {
		defaults[t] = n.Default
	}
	srv := ingest.New(ingest.Options{
		Path:             cfg.Socket.Path,
		Mode:             cfg.Socket.Mode,
		MaxInflightBytes: cfg.Socket.MaxInflightBytes,
		Acceptor:         &countingAcceptor{next: pl, m: d.metrics},
		Store:            st,
		KnownType:        func(t string) bool { return cfg.Notifications[t] != nil },
		Types:            func() map[string]relay.Setting { return defaults },
		KnownApp:         func(a string) bool { return cfg.AppByName(a) != nil },
		Logger:           d.log.Named("ingest"),
	})
	srv.Handle("GET /v1/queue", queueHandler(q))
	srv.Handle("GET /v1/deadletters", q.DeadLettersHandler())
	srv.Handle("POST /v1/deadletters/{id}/replay", q.ReplayHandler())
	hub := api.NewHub()
	srv.Handle("GET /v1/actions/stream", api.StreamHandler(st, api.StreamOptions{Hub: hub, Logger: d.log.Named("actions")}))
	var apiSrv *api.Server
	if appAPIEnabled(cfg) {
		wd := &withdrawer{st: st, q: q, now: time.Now, log: d.log.Named("withdraw")}
		apiSrv, err = api.New(api.Options{Config: cfg, Store: st, Hub: hub, Logger: d.log.Named("api"), OnAnswer: wd.onAnswer})
		if err != nil {
			return fmt.Errorf("app api: %w", err)
		}
	} else {
		d.log.Warn("app API disabled: the config has no auth block to verify tokens with")
	}
	srv.Handle("GET /v1/plugins", pluginsHandler(watcher))
	srv.Handle("POST /v1/plugins/reload", reloadHandler(watcher))

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
	if p, ok := st.(eventPruner); ok && cfg.Store.Retention > 0 {
		g.Go(func() error { return runPruner(gctx, p, cfg.Store.Retention, d.log.Named("store")) })
	}
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
	d.log.Info("relayd stopped", "queued_jobs", q.Len())
	return err
}

func (d *Daemon) openStore() (store.Store, error) {
	// config.Load fills the bolt path (<data_dir>/relay.db by default).
	if d.cfg.Store.Kind == config.StoreBolt {
		st, err := bolt.Open(d.cfg.Store.Path, bolt.Options{Logger: d.log.Named("store")})
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	return nil, fmt.Errorf("open store: backend %q is not available in this build", d.cfg.Store.Kind)
}

// openProviders builds one lane per app and platform.
func (d *Daemon) openProviders(ctx context.Context) (map[string]queue.Lane, error) {
	lanes := map[string]queue.Lane{}
	for _, a := range d.cfg.Apps {
		if a.APNS != nil {
			c, err := apns.New(a.APNS, apns.Options{Logger: d.log.Named("apns").With(relay.LogKeyApp, a.Name)})
			if err != nil {
				return nil, fmt.Errorf("app %q: apns: %w", a.Name, err)
			}
			lanes[queue.LaneKey(a.Name, relay.PlatformIOS)] = queue.Lane{Notifier: sealingNotifier{next: c, cfg: d.cfg}, Concurrency: 256 * max(a.APNS.Connections, 1)}
		}
		if a.FCM != nil {
			c, err := fcm.New(ctx, a.FCM, fcm.Options{Logger: d.log.Named("fcm").With(relay.LogKeyApp, a.Name)})
			if err != nil {
				return nil, fmt.Errorf("app %q: fcm: %w", a.Name, err)
			}
			lanes[queue.LaneKey(a.Name, relay.PlatformAndroid)] = queue.Lane{Notifier: sealingNotifier{next: c, cfg: d.cfg}, Concurrency: 100}
		}
	}
	return lanes, nil
}

func (d *Daemon) serveMetrics(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	// Probes over TCP, for orchestrators that cannot reach the socket.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-d.ready:
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

func queueHandler(q *queue.Queue) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stats := q.Stats()
		total := 0
		for _, s := range stats {
			total += s.Depth
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"depth": total, "open_jobs": q.Open(), "lanes": stats})
	})
}

// Reload re-reads the policy plugin directory (SIGHUP). Settings that
// cannot change without a restart are not re-read.
func (d *Daemon) Reload() {
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
