package policy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
)

// Circuit-breaker defaults.
const (
	DefaultBreakerThreshold = 5                // consecutive failures that open the breaker
	DefaultBreakerCooldown  = 30 * time.Second // how long it stays open
)

// Verdicts recorded in relay.PluginDecision besides abi's allow, suppress
// and defer.
const (
	// DecisionError records a failed plugin (the reason names the kind).
	DecisionError = "error"
)

// Request is what a Set judges: an accepted event the baseline would
// deliver, with the context plugins receive.
type Request struct {
	Now         time.Time                // the evaluation time; zero: time.Now()
	Event       *relay.Event             // the event, defaults filled
	Baseline    relay.Decision           // the baseline decision (plugins run only when it delivers)
	Settings    map[string]relay.Setting // the workspace's settings by type
	Preferences map[string]bool          // the user's preferences by type
	Devices     []relay.Device           // the user's devices
	// Recent is the user.recent counts, this event included; nil: ask
	// SetOptions.Recent.
	Recent map[string]abi.Recent
}

// Result is the decision of the chain.
type Result struct {
	Verdict    relay.Verdict // deliver, suppress or defer
	Reason     string        // the baseline's reason, or the deciding plugin's
	DeferUntil time.Time     // with VerdictDefer: never after the event's expires_at
	// Set holds the merged field changes of the plugins that allowed the
	// event (later plugins win; data entries merge). Nil: no changes.
	Set *abi.Set
	// Devices narrows delivery to these device IDs. Nil: all the user's
	// devices.
	Devices []string
	// Plugins lists each plugin that ran (or was skipped by its open
	// breaker), in order, with the hash of the version that judged.
	Plugins []relay.PluginDecision
	// Notices are the informational alerts plugins asked for (abi.Notice),
	// in chain order, with the plugin's name. Shadow plugins and failed
	// calls ask for none.
	Notices []Notice
}

// Notice is a plugin's request for an informational alert to the user.
type Notice struct {
	Plugin string
	abi.Notice
}

// Decision returns the result as the decision the store records.
func (r *Result) Decision(enforced bool) relay.Decision {
	return relay.Decision{Verdict: r.Verdict, Reason: r.Reason, Enforced: enforced,
		DeferUntil: r.DeferUntil, Plugins: r.Plugins}
}

// SetOptions configure how a Set runs its chain.
type SetOptions struct {
	Logger hclog.Logger
	// Recent supplies user.recent; nil: no counts. *Recent counts in
	// memory; a cluster store supplies counts every relay shares.
	Recent RecentSource
	// OnError is the default for manifests without on_error (plugins.on_error);
	// "": OnErrorSkip.
	OnError string
	// BreakerThreshold and BreakerCooldown configure each plugin's circuit
	// breaker; zero: the defaults.
	BreakerThreshold int
	BreakerCooldown  time.Duration
	// Observe, when set, is told how long each plugin evaluation took
	// (not those skipped by an open breaker), failed or not (metrics).
	Observe func(plugin string, took time.Duration)
}

// Entry is one plugin of a Set with its manifest.
type Entry struct {
	Plugin   *Plugin
	Manifest Manifest

	hash string // DecisionHash
}

// DecisionHash is the hash decisions record for the entry: the module's
// sha256 when the manifest has no config, otherwise the sha256 of the
// module's hash and the config, so a decision names the code and the
// config that judged it.
func (e *Entry) DecisionHash() string {
	if e.hash == "" {
		e.hash = decisionHash(e.Plugin.hash, e.Manifest.Config)
	}
	return e.hash
}

// DecisionHash returns the hash a decision records for a module (by its
// hex sha256) judging with a manifest config (JSON, nil when none).
func DecisionHash(module string, config []byte) string { return decisionHash(module, config) }

func decisionHash(module string, config []byte) string {
	if config == nil {
		return module
	}
	return sha256hex(append(append([]byte(module), '\n'), config...))
}

// Set is a fixed, ordered chain of loaded plugins.
//
// # Notes
//
//   - Set is safe for concurrent use. Its chain never changes (it only
//     remembers the types plugins said they ignore); hot reload builds a
//     new Set and swaps it in.
//   - Closing the plugins is the caller's business (the Watcher does it).
type Set struct {
	opts    SetOptions
	log     hclog.Logger
	entries []Entry
	// ignored[i] holds, by event type, the answer entries[i] said it gives
	// every event of that type (abi.Output.IgnoreType): its reason. A new
	// Set (any reload) starts empty.
	ignored []ignoredTypes
	// sections[i] is 1<<32 | the input sections entries[i] reads with its
	// config (Plugin.InputSections), once asked; 0 before.
	sections []atomic.Uint64
}

// NewSet sorts entries by manifest order, then name, and returns the chain.
func NewSet(opts SetOptions, entries []Entry) *Set {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.OnError == "" {
		opts.OnError = OnErrorSkip
	}
	if opts.BreakerThreshold <= 0 {
		opts.BreakerThreshold = DefaultBreakerThreshold
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = DefaultBreakerCooldown
	}
	es := slices.Clone(entries)
	for i := range es {
		es[i].hash = decisionHash(es[i].Plugin.hash, es[i].Manifest.Config)
	}
	slices.SortStableFunc(es, func(a, b Entry) int {
		if a.Manifest.Order != b.Manifest.Order {
			return a.Manifest.Order - b.Manifest.Order
		}
		switch {
		case a.Plugin.name < b.Plugin.name:
			return -1
		case a.Plugin.name > b.Plugin.name:
			return 1
		}
		return 0
	})
	return &Set{opts: opts, log: opts.Logger, entries: es, ignored: make([]ignoredTypes, len(es)),
		sections: make([]atomic.Uint64, len(es))}
}

// Entries returns the chain in order.
func (s *Set) Entries() []Entry { return slices.Clone(s.entries) }

// Applies reports whether any plugin of the chain would see an event of
// type typ in workspace ws (when its baseline says deliver). When none
// would, Evaluate returns the baseline without calling a plugin.
func (s *Set) Applies(ws, typ string) bool {
	for i := range s.entries {
		if s.entries[i].Manifest.applies(ws, typ) {
			return true
		}
	}
	return false
}

// Evaluate runs the chain for req and returns the decision. Plugin failures
// are handled per on_error and recorded, not returned. The error is non-nil
// only when ctx ends or a plugin of this Set has been closed (a hot reload
// replaced it: evaluate again on the current Set).
func (s *Set) Evaluate(ctx context.Context, req *Request) (Result, error) {
	ev := req.Event
	res := Result{Verdict: req.Baseline.Verdict, Reason: req.Baseline.Reason,
		DeferUntil: req.Baseline.DeferUntil}
	if req.Baseline.Verdict != relay.VerdictDeliver || len(s.entries) == 0 {
		return res, nil
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	enforced := req.Baseline.Enforced
	var in *abi.Input // built on the first plugin that applies
	for i := range s.entries {
		e := &s.entries[i]
		m := &e.Manifest
		if !m.applies(ev.Workspace, ev.Type) {
			continue
		}
		p := e.Plugin
		if in == nil {
			in = s.input(req, now)
		}
		in.Config = m.Config
		shadow := m.Mode == ModeShadow
		dec := relay.PluginDecision{Name: p.name, Hash: e.hash, Shadow: shadow}
		if reason, ok := s.ignored[i].load(ev.Type); ok {
			// The plugin said it allows every event of this type
			// unchanged: record its answer without the call.
			dec.Verdict, dec.Reason = abi.VerdictAllow, reason
			res.Plugins = append(res.Plugins, dec)
			if !shadow {
				in.Prior = append(in.Prior, abi.Prior{Plugin: p.name, Verdict: dec.Verdict, Reason: dec.Reason})
			}
			continue
		}
		secs, err := s.inputSections(ctx, i, ev.Workspace)
		if err != nil {
			return Result{}, err
		}
		if secs&abi.SectionSettings != 0 {
			withSettings(in, req)
		}
		out, err := s.call(ctx, p, in, secs, now)
		// The event's logger, only when there is something to log (most
		// calls log nothing, and it allocates).
		log := func() hclog.Logger {
			return s.log.With(relay.LogKeyPolicy, p.name, relay.LogKeyEventID, ev.ID, relay.LogKeyWorkspace, ev.Workspace)
		}
		if err == nil {
			err = checkDevices(out.Devices, in.User.Devices)
			if err != nil {
				p.failures.Add(1)
				p.breaker.fail(now, s.opts.BreakerThreshold, s.opts.BreakerCooldown)
			}
		}
		if err != nil {
			if errors.Is(err, relay.ErrClosed) || ctx.Err() != nil {
				return Result{}, err
			}
			dec.Verdict, dec.Reason = DecisionError, failureReason(err)
			if errors.Is(err, errBreakerOpen) {
				log().Debug("policy skipped: circuit breaker open")
			} else {
				log := log()
				log.Warn("policy failed", relay.LogKeyError, err)
				var pe *Error
				if errors.As(err, &pe) && pe.Stderr != "" && log.IsDebug() {
					log.Debug("policy guest output (digits masked)", "output", pe.GuestOutput())
				}
			}
			res.Plugins = append(res.Plugins, dec)
			if shadow {
				continue
			}
			onError := m.OnError
			if onError == "" {
				onError = s.opts.OnError
			}
			if onError == OnErrorSuppress {
				if enforced && !m.OverrideEnforced {
					log().Warn("policy failure would suppress an enforced type: refused")
					continue
				}
				res.Verdict, res.Reason = relay.VerdictSuppress, "policy "+p.name+" failed: "+dec.Reason
				return res, nil
			}
			continue
		}
		dec.Verdict, dec.Reason = out.Verdict, out.Reason
		if out.IgnoreType { // validated: an unchanged allow
			s.ignored[i].store(ev.Type, out.Reason)
		}
		if shadow {
			res.Plugins = append(res.Plugins, dec)
			continue
		}
		if out.Notice != nil {
			res.Notices = append(res.Notices, Notice{Plugin: p.name, Notice: *out.Notice})
		}
		in.Prior = append(in.Prior, abi.Prior{Plugin: p.name, Verdict: out.Verdict, Reason: out.Reason})
		switch out.Verdict {
		case abi.VerdictAllow:
			res.Plugins = append(res.Plugins, dec)
			if out.Set != nil {
				res.Set = mergeSet(res.Set, out.Set)
				applySet(&in.Event, out.Set)
			}
			if out.Devices != nil {
				res.Devices = slices.Clone(out.Devices)
				in.User.Devices = slices.DeleteFunc(slices.Clone(in.User.Devices), func(d abi.Device) bool {
					return !slices.Contains(out.Devices, d.ID)
				})
			}
		case abi.VerdictSuppress, abi.VerdictDefer:
			if enforced && !m.OverrideEnforced {
				dec.Reason = refused(dec.Reason)
				res.Plugins = append(res.Plugins, dec)
				log().Warn("policy tried to "+out.Verdict+" an enforced type: refused", relay.LogKeyType, ev.Type)
				continue
			}
			res.Plugins = append(res.Plugins, dec)
			res.Reason = out.Reason
			if res.Reason == "" {
				res.Reason = "policy " + p.name
			}
			if out.Verdict == abi.VerdictSuppress {
				res.Verdict = relay.VerdictSuppress
				return res, nil
			}
			until := out.DeferUntil
			if !ev.ExpiresAt.IsZero() && until.After(ev.ExpiresAt) {
				until = ev.ExpiresAt
			}
			res.Verdict, res.DeferUntil = relay.VerdictDefer, until
			return res, nil
		}
	}
	return res, nil
}

func refused(reason string) string {
	if reason == "" {
		return "refused: type is enforced"
	}
	return reason + " (refused: type is enforced)"
}

var errBreakerOpen = errors.New("circuit breaker open")

// call evaluates one plugin unless its breaker is open, and keeps the
// breaker's count.
func (s *Set) call(ctx context.Context, p *Plugin, in *abi.Input, secs abi.Sections, now time.Time) (abi.Output, error) {
	if !p.breaker.allow(now) {
		return abi.Output{}, errBreakerOpen
	}
	start := time.Now()
	out, err := p.evaluateInput(ctx, in, secs)
	if s.opts.Observe != nil {
		s.opts.Observe(p.name, time.Since(start))
	}
	switch {
	case err == nil:
		p.breaker.succeed()
	case errors.Is(err, relay.ErrClosed) || ctx.Err() != nil:
	default:
		if p.breaker.fail(now, s.opts.BreakerThreshold, s.opts.BreakerCooldown) {
			s.log.Error("policy circuit breaker opened", relay.LogKeyPolicy, p.name,
				"failures", s.opts.BreakerThreshold, "cooldown", s.opts.BreakerCooldown)
		}
	}
	return out, err
}

// ignoredTypes maps event types to the reason a plugin gives every event
// of the type (abi.Output.IgnoreType). It is read on every event and
// written once per type, so readers load an immutable map and a writer
// replaces it with a copy (a sync.Map's lookup cost a few times more).
type ignoredTypes struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]string]
}

func (t *ignoredTypes) load(typ string) (string, bool) {
	m := t.m.Load()
	if m == nil {
		return "", false
	}
	reason, ok := (*m)[typ]
	return reason, ok
}

func (t *ignoredTypes) store(typ, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var m map[string]string
	if old := t.m.Load(); old != nil {
		if r, ok := (*old)[typ]; ok && r == reason {
			return
		}
		m = maps.Clone(*old)
	} else {
		m = make(map[string]string, 1)
	}
	m[typ] = reason
	t.m.Store(&m)
}

// inputSections returns the input sections entries[i] reads with its
// config, asking the plugin on the first event that reaches it (an
// instance of that event's workspace answers: the call sees only the
// config). A plugin that fails to answer gets the whole input; the error is
// non-nil only when ctx ends or the plugin was closed.
func (s *Set) inputSections(ctx context.Context, i int, ws string) (abi.Sections, error) {
	if v := s.sections[i].Load(); v != 0 {
		return abi.Sections(uint32(v)), nil
	}
	e := &s.entries[i]
	secs, err := e.Plugin.InputSections(ctx, ws, e.Manifest.Config)
	if err != nil {
		if errors.Is(err, relay.ErrClosed) || ctx.Err() != nil {
			return abi.AllSections, err
		}
		s.log.Warn("policy did not say which input it reads: sending all of it",
			relay.LogKeyPolicy, e.Plugin.name, relay.LogKeyError, err)
		secs = abi.AllSections
	}
	s.sections[i].Store(1<<32 | uint64(secs))
	return secs, nil
}

// failureReason is the short reason recorded for a failed plugin.
func failureReason(err error) string {
	var pe *Error
	switch {
	case errors.As(err, &pe):
		return string(pe.Kind)
	case errors.Is(err, errBreakerOpen):
		return "circuit open"
	case errors.Is(err, errBadDevices):
		return string(KindBadOutput)
	}
	return "error"
}

var errBadDevices = errors.New("bad devices")

// checkDevices requires a narrowing to name only the user's devices and
// leave at least one.
func checkDevices(narrow []string, have []abi.Device) error {
	if narrow == nil {
		return nil
	}
	if len(narrow) == 0 {
		return fmt.Errorf("%w: devices narrows to no device (answer suppress instead)", errBadDevices)
	}
	for _, id := range narrow {
		if !slices.ContainsFunc(have, func(d abi.Device) bool { return d.ID == id }) {
			return fmt.Errorf("%w: devices: %q is not one of the user's devices", errBadDevices, id)
		}
	}
	return nil
}

// input builds the abi.Input for req, but for workspace.settings, which
// needs a copy and most plugins do not read (withSettings).
func (s *Set) input(req *Request, now time.Time) *abi.Input {
	ev := req.Event
	in := &abi.Input{
		ABI: abi.Version,
		Now: now.UTC(),
		Event: abi.Event{ID: ev.ID, Workspace: ev.Workspace, User: ev.User, Type: ev.Type,
			Title: ev.Title, Body: ev.Body, Data: ev.Data, Actions: ev.Actions,
			Priority: string(ev.Priority), OccurredAt: ev.OccurredAt, ExpiresAt: ev.ExpiresAt},
		Baseline: abi.Baseline{Verdict: string(req.Baseline.Verdict), Reason: req.Baseline.Reason,
			Enforced: req.Baseline.Enforced},
	}
	in.User.Preferences = req.Preferences
	in.User.Devices = make([]abi.Device, 0, len(req.Devices))
	for _, d := range req.Devices {
		in.User.Devices = append(in.User.Devices, abi.Device{ID: d.ID, Platform: string(d.Platform), App: d.App})
	}
	switch {
	case req.Recent != nil:
		in.User.Recent = req.Recent
	case s.opts.Recent != nil:
		in.User.Recent = s.opts.Recent.Lookup(ev.Workspace, ev.User, now)
	}
	return in
}

// withSettings fills in's workspace.settings from req, once.
func withSettings(in *abi.Input, req *Request) {
	if in.Workspace.Settings != nil || len(req.Settings) == 0 {
		return
	}
	in.Workspace.Settings = make(map[string]string, len(req.Settings))
	for k, v := range req.Settings {
		in.Workspace.Settings[k] = string(v)
	}
}

// mergeSet returns a copy of base with add's fields applied over it.
func mergeSet(base, add *abi.Set) *abi.Set {
	var out abi.Set
	if base != nil {
		out = *base
		out.Data = nil
	}
	applySetFields(&out, add)
	if base != nil || add.Data != nil {
		out.Data = make(map[string]string)
		if base != nil {
			for k, v := range base.Data {
				out.Data[k] = v
			}
		}
		for k, v := range add.Data {
			out.Data[k] = v
		}
		if len(out.Data) == 0 {
			out.Data = nil
		}
	}
	return &out
}

func applySetFields(dst, src *abi.Set) {
	for _, f := range []struct{ d, s **string }{
		{&dst.Title, &src.Title}, {&dst.Body, &src.Body}, {&dst.Priority, &src.Priority},
		{&dst.InterruptionLevel, &src.InterruptionLevel}, {&dst.Sound, &src.Sound},
		{&dst.Category, &src.Category}, {&dst.ThreadID, &src.ThreadID},
	} {
		if *f.s != nil {
			v := **f.s
			*f.d = &v
		}
	}
}

// applySet shows later plugins the event as changed by earlier ones.
func applySet(ev *abi.Event, s *abi.Set) {
	if s.Title != nil {
		ev.Title = *s.Title
	}
	if s.Body != nil {
		ev.Body = *s.Body
	}
	if s.Priority != nil {
		ev.Priority = *s.Priority
	}
	if len(s.Data) > 0 {
		d := make(map[string]string, len(ev.Data)+len(s.Data))
		for k, v := range ev.Data {
			d[k] = v
		}
		for k, v := range s.Data {
			d[k] = v
		}
		ev.Data = d
	}
}

// breaker is a plugin version's circuit breaker: it opens after threshold
// consecutive failures and lets one call through after the cool-down.
type breaker struct {
	mu        sync.Mutex
	failures  int
	openUntil time.Time
}

func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openUntil.IsZero() || !now.Before(b.openUntil)
}

func (b *breaker) succeed() {
	b.mu.Lock()
	b.failures, b.openUntil = 0, time.Time{}
	b.mu.Unlock()
}

// fail counts a failure and reports whether the breaker opened now.
func (b *breaker) fail(now time.Time, threshold int, cooldown time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	if b.failures >= threshold {
		wasOpen := !b.openUntil.IsZero()
		b.openUntil = now.Add(cooldown)
		return !wasOpen
	}
	return false
}

// BreakerOpen reports whether the plugin's circuit breaker is open at now.
func (p *Plugin) BreakerOpen(now time.Time) bool { return !p.breaker.allow(now) }
