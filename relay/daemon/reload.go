package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/api"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/delivery/apns"
	"github.com/edgerelay/edgerelay/relay/delivery/fcm"
	"github.com/edgerelay/edgerelay/relay/httpjson"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/queue"
)

// Reload errors: the running config stays in force.
var (
	// ErrInvalidConfig: config.hcl does not load (syntax, values, files).
	ErrInvalidConfig = errors.New("invalid config")
	// ErrRestartRequired: the file changes settings only a restart applies.
	ErrRestartRequired = errors.New("restart required")
)

// liveConfig is the config in force, with what is derived from it.
type liveConfig struct {
	cfg      *config.Config
	defaults map[string]relay.Setting
}

func newLiveConfig(cfg *config.Config) *liveConfig {
	return &liveConfig{cfg: cfg, defaults: cfg.Defaults()}
}

// swapNotifier is a lane's provider, replaced whole by a reload: sends in
// flight finish on the client they started with.
type swapNotifier struct {
	cur atomic.Pointer[laneProvider]
}

func (s *swapNotifier) Notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	return s.cur.Load().notifier.Notify(ctx, d, a)
}

// laneProvider is one lane's client with the config block it was built
// from.
type laneProvider struct {
	notifier delivery.Notifier // raw, sealing by the config's notification blocks
	raw      delivery.Notifier // the client
	client   io.Closer
	block    any    // *config.APNS or *config.FCM
	print    string // fingerprint of block and the files it names (reload compares it)
}

// fingerprint identifies a provider block with the contents of the files
// it names: a key replaced in place (same path) is a change too.
func fingerprint(block any) string {
	h := sha256.New()
	fmt.Fprintf(h, "%#v\n", block)
	var files []string
	switch b := block.(type) {
	case *config.APNS:
		files = []string{b.KeyFile, b.CertFile, b.CAFile}
	case *config.FCM:
		files = []string{b.CredentialsFile, b.CAFile}
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "%s: %v\n", f, err)
			continue
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// running is what a reload changes in a running relayd.
type running struct {
	pipeline *pipeline.Pipeline
	queue    *queue.Queue
	api      *api.Server // nil: app API disabled
	lanes    map[string]*swapNotifier

	mu      sync.Mutex // serializes reloads; guards retired
	retired []io.Closer
}

// closeRetired closes the clients reloads replaced (relayd is stopping).
func (r *running) closeRetired() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.retired {
		c.Close()
	}
	r.retired = nil
}

// newLaneProvider builds the client of one lane (platform of app a).
func (d *Daemon) newLaneProvider(ctx context.Context, a *config.App, p relay.Platform, cfg *config.Config) (*laneProvider, error) {
	switch p {
	case relay.PlatformIOS:
		c, err := apns.New(a.APNS, apns.Options{Logger: d.log.Named("apns").With(relay.LogKeyApp, a.Name)})
		if err != nil {
			return nil, fmt.Errorf("app %q: apns: %w", a.Name, err)
		}
		return &laneProvider{notifier: sealingNotifier{next: c, cfg: cfg}, raw: c, client: c, block: a.APNS, print: fingerprint(a.APNS)}, nil
	default:
		c, err := fcm.New(ctx, a.FCM, fcm.Options{Logger: d.log.Named("fcm").With(relay.LogKeyApp, a.Name)})
		if err != nil {
			return nil, fmt.Errorf("app %q: fcm: %w", a.Name, err)
		}
		return &laneProvider{notifier: sealingNotifier{next: c, cfg: cfg}, raw: c, client: c, block: a.FCM, print: fingerprint(a.FCM)}, nil
	}
}

// laneSpec is one lane of a config: an app and a platform it has a block
// for.
type laneSpec struct {
	app *config.App
	p   relay.Platform
}

// lanesOf lists the lanes a config has, by relay.Lane.
func lanesOf(cfg *config.Config) map[string]laneSpec {
	out := map[string]laneSpec{}
	for _, a := range cfg.Apps {
		if a.APNS != nil {
			out[relay.Lane(a.Name, relay.PlatformIOS)] = laneSpec{a, relay.PlatformIOS}
		}
		if a.FCM != nil {
			out[relay.Lane(a.Name, relay.PlatformAndroid)] = laneSpec{a, relay.PlatformAndroid}
		}
	}
	return out
}

// restartOnly names the settings that differ between old and new and that
// only a restart applies (listeners, the store, the plugin engine, which
// lanes exist and their connection counts, retention).
func restartOnly(old, new *config.Config) []string {
	var out []string
	diff := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, name)
		}
	}
	diff("data_dir", old.DataDir, new.DataDir)
	diff("shutdown_timeout", old.ShutdownTimeout, new.ShutdownTimeout)
	diff("log", old.Log, new.Log)
	diff("socket", old.Socket, new.Socket)
	diff("api", old.API, new.API)
	diff("store", old.Store, new.Store)
	diff("nats", old.NATS, new.NATS)
	diff("metrics", old.Metrics, new.Metrics)
	diff("plugins", old.Plugins, new.Plugins)
	diff("queue.lease", old.Queue.Lease, new.Queue.Lease)
	diff("retention", old.Retention, new.Retention)
	if appAPIEnabled(old) != appAPIEnabled(new) {
		out = append(out, "auth (turning the app API on or off)")
	}
	ol, nl := lanesOf(old), lanesOf(new)
	for k, l := range nl {
		if _, ok := ol[k]; !ok {
			out = append(out, fmt.Sprintf("app %q: %s added", l.app.Name, l.p))
		} else if l.p == relay.PlatformIOS && l.app.APNS.Connections != ol[k].app.APNS.Connections {
			out = append(out, fmt.Sprintf("app %q: apns.connections", l.app.Name))
		}
	}
	for k, l := range ol {
		if _, ok := nl[k]; !ok {
			out = append(out, fmt.Sprintf("app %q: %s removed", l.app.Name, l.p))
		}
	}
	slices.Sort(out)
	return out
}

// ReloadConfig re-reads config.hcl and applies it to the running relayd:
// app credentials (each lane whose apns or fcm block, or a file it names,
// changed gets a new client; the next push uses it), auth keys, notification blocks, retry
// and queue.max_open_jobs. Nothing changes unless all of it can: a file
// that does not load fails with ErrInvalidConfig, one that changes what
// only a restart applies with ErrRestartRequired naming it, and a client
// or key that cannot be built with its reason. It returns the parts that
// changed.
func (d *Daemon) ReloadConfig(ctx context.Context) ([]string, error) {
	r := d.running.Load()
	if r == nil {
		return nil, errors.New("relayd is not running yet")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := d.live.Load().cfg
	l := config.NewLoader()
	cfg, diags := l.Load(d.cfg.File)
	if diags.HasErrors() {
		var b bytes.Buffer
		l.WriteDiagnostics(&b, diags)
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalidConfig, d.cfg.File, bytes.TrimSpace(b.Bytes()))
	}
	if names := restartOnly(old, cfg); len(names) > 0 {
		return nil, fmt.Errorf("%w: %s changes settings that cannot change while relayd runs: %s; the running config stays", ErrRestartRequired, d.cfg.File, joinNames(names))
	}
	var changed []string
	// Build everything first: a failure leaves the running config whole.
	fresh := map[string]*laneProvider{}
	fail := func(err error) ([]string, error) {
		for _, p := range fresh {
			p.client.Close()
		}
		return nil, err
	}
	for k, lane := range lanesOf(cfg) {
		var block any = lane.app.APNS
		if lane.p == relay.PlatformAndroid {
			block = lane.app.FCM
		}
		if fingerprint(block) == r.lanes[k].cur.Load().print {
			continue // same block, same files
		}
		p, err := d.newLaneProvider(ctx, lane.app, lane.p, cfg)
		if err != nil {
			return fail(err)
		}
		fresh[k] = p
		changed = append(changed, "app "+lane.app.Name+" "+string(lane.p))
	}
	var verifier *api.Verifier
	if r.api != nil {
		v, err := api.NewVerifier(cfg.Auth, time.Now)
		if err != nil {
			return fail(fmt.Errorf("auth: %w", err))
		}
		verifier = v
		if !reflect.DeepEqual(old.Auth, cfg.Auth) {
			changed = append(changed, "auth")
		}
	}
	if !reflect.DeepEqual(old.Notifications, cfg.Notifications) {
		changed = append(changed, "notifications")
	}
	if old.Retry != cfg.Retry {
		changed = append(changed, "retry")
	}
	if old.Queue.MaxOpenJobs != cfg.Queue.MaxOpenJobs {
		changed = append(changed, "queue.max_open_jobs")
	}

	// Apply. Every lane gets a provider sealing by the new notification
	// blocks; a changed lane also a new client.
	for k, sw := range r.lanes {
		cur := sw.cur.Load()
		next := fresh[k]
		if next == nil {
			next = &laneProvider{notifier: sealingNotifier{next: cur.raw, cfg: cfg}, raw: cur.raw, client: cur.client, block: cur.block, print: cur.print}
		} else {
			r.retired = append(r.retired, cur.client)
		}
		sw.cur.Store(next)
	}
	r.queue.SetLimits(cfg.Queue.MaxOpenJobs, queue.Backoff{Initial: cfg.Retry.Initial, Max: cfg.Retry.Max, Jitter: cfg.Retry.Jitter})
	r.pipeline.SetConfig(cfg)
	if r.api != nil {
		r.api.SetConfig(cfg, verifier)
	}
	d.live.Store(newLiveConfig(cfg))
	slices.Sort(changed)
	return changed, nil
}

func joinNames(names []string) string {
	var b bytes.Buffer
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n)
	}
	return b.String()
}

// configReloadHandler serves POST /v1/config/reload: 200 with what
// changed, 422 for a file that does not load, 409 for one that changes
// what only a restart applies (the message names it), 503 when a client or
// key cannot be built. In every error case the running config stays.
func (d *Daemon) configReloadHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		changed, err := d.ReloadConfig(r.Context())
		switch {
		case errors.Is(err, ErrInvalidConfig):
			httpjson.Error(w, http.StatusUnprocessableEntity, "invalid_config", err.Error())
		case errors.Is(err, ErrRestartRequired):
			httpjson.Error(w, http.StatusConflict, "restart_required", err.Error())
		case err != nil:
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "config not reloaded, the running config stays: "+err.Error())
		default:
			d.log.Info("config reloaded", "file", d.cfg.File, "changed", changed)
			httpjson.Write(w, http.StatusOK, map[string]any{"reloaded": true, "file": d.cfg.File, "changed": nonNil(changed)})
		}
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
