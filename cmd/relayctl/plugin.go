package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/ingest"
	"github.com/edgerelay/edgerelay/relay/policy"
)

// cmdPluginList runs `relayctl plugin list`.
func cmdPluginList(ctx context.Context, g *globals, args []string) error {
	if _, err := g.args(g.flags(), args, 0, 0); err != nil {
		return err
	}
	raw, err := g.get(ctx, "/v1/plugins")
	if err != nil {
		return err
	}
	return g.show(raw, g.printPlugins)
}

func (g *globals) printPlugins(raw json.RawMessage) error {
	var out struct {
		Plugins []pluginView `json:"plugins"`
		Errors  string       `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	tw := g.table()
	fmt.Fprintln(tw, "PLUGIN\tHASH\tMODE\tCALLS\tFAILURES\tTIMEOUTS\tBREAKER\tLAST ERROR")
	for _, p := range out.Plugins {
		brk := "closed"
		if p.BreakerOpen {
			brk = "OPEN"
		}
		fmt.Fprintf(tw, "%s\t%.12s\t%s\t%d\t%d\t%d\t%s\t%s\n", p.Name, p.Hash, p.Mode, p.Calls, p.Failures, p.Timeouts, brk, dash(p.LastError))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if out.Errors != "" {
		fmt.Fprintf(g.stdout, "kept their previous version: %s\n", out.Errors)
	}
	return nil
}

// cmdPluginReload runs `relayctl plugin reload`.
func cmdPluginReload(ctx context.Context, g *globals, args []string) error {
	if _, err := g.args(g.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(ctx, "POST", "/v1/plugins/reload", "", nil, &raw); err != nil {
		return err
	}
	return g.show(raw, g.printPlugins)
}

// cmdPluginTest runs a plugin the way relayd does — same engine, sandbox,
// limits and chain rules — on one event, and prints the decision and the
// time it took.
func cmdPluginTest(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	eventFile := fs.String("event", "", "event JSON file, as posted to the socket (required)")
	configFile := fs.String("config", "", "plugin config JSON file (default: the manifest's config block)")
	manifestFile := fs.String("manifest", "", "manifest file (default: NAME.hcl beside FILE.wasm, if present)")
	enforced := fs.Bool("enforced", false, "treat the event's type as enforced by the workspace")
	devices := fs.String("devices", "iphone:ios,pixel:android", "the user's devices, ID:PLATFORM comma-separated")
	timeout := fs.Duration("timeout", policy.DefaultTimeout, "per-call kill switch (plugins.timeout)")
	memory := fs.Int64("memory-limit", policy.DefaultMemoryLimit, "linear memory cap in bytes (plugins.memory_limit)")
	runs := fs.Int("n", 100, "warm evaluations to time after the first")
	pos, err := g.args(fs, args, 1, 1)
	if err != nil {
		return err
	}
	file := pos[0]
	if *eventFile == "" {
		return g.usageError(fs, "-event EV.json is required")
	}
	wasm, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	evJSON, err := os.ReadFile(*eventFile)
	if err != nil {
		return err
	}
	ev, err := ingest.DecodeEvent(evJSON, func(string) bool { return true })
	if err != nil {
		return fmt.Errorf("event %s: %w", *eventFile, err)
	}
	now := time.Now().UTC()
	if ev.Priority == "" {
		ev.Priority = relay.PriorityHigh
	}
	if ev.ExpiresAt.IsZero() {
		ev.ExpiresAt = now.Add(5 * time.Minute)
	}

	name := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	man := &policy.Manifest{}
	mpath := *manifestFile
	if mpath == "" {
		if p := strings.TrimSuffix(file, filepath.Ext(file)) + ".hcl"; fileExists(p) {
			mpath = p
		}
	}
	if mpath != "" {
		src, err := os.ReadFile(mpath)
		if err != nil {
			return err
		}
		if man, err = policy.ParseManifest(mpath, src); err != nil {
			return err
		}
	}
	if *configFile != "" {
		raw, err := os.ReadFile(*configFile)
		if err != nil {
			return err
		}
		if !json.Valid(raw) {
			return fmt.Errorf("config %s: not valid JSON", *configFile)
		}
		man.Config = raw
	}
	var devs []relay.Device
	for _, d := range strings.Split(*devices, ",") {
		id, platform, ok := strings.Cut(strings.TrimSpace(d), ":")
		if !ok || !relay.Platform(platform).Valid() {
			return fmt.Errorf("-devices %q: want ID:ios or ID:android", d)
		}
		devs = append(devs, relay.Device{Workspace: ev.Workspace, User: ev.User, ID: id, Platform: relay.Platform(platform), App: "app"})
	}

	engine, err := policy.Open(ctx, policy.Options{Timeout: *timeout, MemoryLimit: *memory})
	if err != nil {
		return err
	}
	defer engine.Close(context.WithoutCancel(ctx))
	loadStart := time.Now()
	p, err := engine.Load(name, wasm)
	if err != nil {
		return fmt.Errorf("load %s: %w", file, err)
	}
	loadTook := time.Since(loadStart)
	set := policy.NewSet(policy.SetOptions{Recent: policy.NewRecent()}, []policy.Entry{{Plugin: p, Manifest: *man}})
	setting := relay.SettingEnabled
	if *enforced {
		setting = relay.SettingEnforced
	}
	req := &policy.Request{Now: now, Event: &ev, Baseline: relay.Baseline(setting, nil),
		Settings: map[string]relay.Setting{ev.Type: setting}, Devices: devs}
	start := time.Now()
	res, err := set.Evaluate(ctx, req)
	first := time.Since(start)
	if err != nil {
		return err
	}
	var times []time.Duration
	for range *runs {
		t0 := time.Now()
		if _, err := set.Evaluate(ctx, req); err != nil {
			return err
		}
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	var setJSON json.RawMessage
	if res.Set != nil {
		// The set object as the wire format spells it.
		var wrapped struct {
			Set json.RawMessage `json:"set"`
		}
		json.Unmarshal(abi.AppendOutput(nil, &abi.Output{Verdict: abi.VerdictAllow, Set: res.Set}), &wrapped)
		setJSON = wrapped.Set
	}
	out := map[string]any{
		"plugin":   map[string]any{"name": name, "hash": p.Hash(), "load": loadTook.String()},
		"decision": decisionView(res, setJSON),
		"timing":   map[string]any{"first_call": first.String()},
	}
	if len(res.Notices) > 0 {
		// The informational alerts the plugin asked the relay to send.
		var ns []map[string]any
		for _, n := range res.Notices {
			ns = append(ns, map[string]any{"plugin": n.Plugin, "title": n.Title, "body": n.Body, "data": n.Data})
		}
		out["notices"] = ns
	}
	if len(times) > 0 {
		out["timing"] = map[string]any{"first_call": first.String(), "warm_p50": times[len(times)/2].String(),
			"warm_p99": times[min(len(times)-1, len(times)*99/100)].String(), "warm_runs": len(times)}
	}
	if err := g.writeJSON(out); err != nil {
		return err
	}
	for _, pd := range res.Plugins {
		if pd.Verdict == policy.DecisionError {
			return errors.New("the plugin failed: " + pd.Reason)
		}
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// decisionView renders a chain result the way GET /v1/events shows a
// decision, plus the plugins' changes.
func decisionView(res policy.Result, set json.RawMessage) map[string]any {
	v := map[string]any{"verdict": res.Verdict, "reason": res.Reason, "plugins": res.Plugins}
	if !res.DeferUntil.IsZero() {
		v["defer_until"] = res.DeferUntil
	}
	if set != nil {
		v["set"] = set
	}
	if res.Devices != nil {
		v["devices"] = res.Devices
	}
	return v
}
