package policy

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testRequest(typ string, enforced bool) *Request {
	bl := relay.Baseline(relay.SettingEnabled, nil)
	if enforced {
		bl = relay.Baseline(relay.SettingEnforced, nil)
	}
	return &Request{
		Now: t0,
		Event: &relay.Event{ID: "e1", Workspace: "ws1", User: "u1", Type: typ, Title: "Hello",
			Body: "body", Data: map[string]string{"k": "v"}, ExpiresAt: t0.Add(time.Hour)},
		Baseline: bl,
		Settings: map[string]relay.Setting{typ: relay.SettingEnabled},
		Devices: []relay.Device{{ID: "d1", Platform: relay.PlatformIOS, App: "demo"},
			{ID: "d2", Platform: relay.PlatformAndroid, App: "demo"}},
	}
}

type plug struct {
	name string
	out  string // constant output; "TRAP" for a trapping guest
	man  Manifest
}

func trapPlugin() []byte {
	m := wasmtest.ABIModule(1)
	m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, []byte{wasmtest.OpUnreachable})
	return m.Bytes()
}

func buildSet(tb testing.TB, e *Engine, opts SetOptions, ps ...plug) *Set {
	tb.Helper()
	var entries []Entry
	for _, p := range ps {
		wasm := wasmtest.ConstPlugin(p.out)
		if p.out == "TRAP" {
			wasm = trapPlugin()
		}
		if p.man.Mode == "" {
			p.man.Mode = ModeEnforce
		}
		entries = append(entries, Entry{Plugin: mustLoad(tb, e, p.name, wasm), Manifest: p.man})
	}
	return NewSet(opts, entries)
}

func TestChainSemantics(t *testing.T) {
	e := openEngine(t, Options{})
	tests := []struct {
		name     string
		typ      string
		enforced bool
		baseline *relay.Decision
		onError  string
		plugins  []plug
		verdict  relay.Verdict
		reason   string // substring
		until    time.Time
		set      string // title after merge, "" = no set
		devices  []string
		decided  []string // "name:verdict[:shadow]"
	}{
		{name: "no plugins", verdict: relay.VerdictDeliver, reason: "enabled"},
		{name: "baseline suppress skips plugins",
			baseline: &relay.Decision{Verdict: relay.VerdictSuppress, Reason: relay.ReasonUserOptOut},
			plugins:  []plug{{name: "a", out: `{"verdict":"suppress"}`}},
			verdict:  relay.VerdictSuppress, reason: "user_opt_out"},
		{name: "allow with set",
			plugins: []plug{{name: "a", out: `{"verdict":"allow","set":{"title":"T1"}}`}},
			verdict: relay.VerdictDeliver, set: "T1", decided: []string{"a:allow"}},
		{name: "later set wins",
			plugins: []plug{{name: "a", out: `{"verdict":"allow","set":{"title":"T1","data":{"x":"1"}}}`, man: Manifest{Order: 1}},
				{name: "b", out: `{"verdict":"allow","set":{"title":"T2","data":{"y":"2"}}}`, man: Manifest{Order: 2}}},
			verdict: relay.VerdictDeliver, set: "T2", decided: []string{"a:allow", "b:allow"}},
		{name: "order beats name",
			plugins: []plug{{name: "a", out: `{"verdict":"suppress","reason":"by a"}`, man: Manifest{Order: 2}},
				{name: "b", out: `{"verdict":"allow","set":{"title":"B"}}`, man: Manifest{Order: 1}}},
			verdict: relay.VerdictSuppress, reason: "by a", set: "B", decided: []string{"b:allow", "a:suppress"}},
		{name: "first suppress ends the chain",
			plugins: []plug{{name: "a", out: `{"verdict":"suppress","reason":"quiet"}`},
				{name: "b", out: `{"verdict":"allow"}`}},
			verdict: relay.VerdictSuppress, reason: "quiet", decided: []string{"a:suppress"}},
		{name: "enforced refuses suppress", enforced: true,
			plugins: []plug{{name: "a", out: `{"verdict":"suppress","reason":"quiet"}`},
				{name: "b", out: `{"verdict":"allow"}`}},
			verdict: relay.VerdictDeliver, reason: "enforced", decided: []string{"a:suppress", "b:allow"}},
		{name: "override_enforced suppresses", enforced: true,
			plugins: []plug{{name: "a", out: `{"verdict":"suppress","reason":"bomb"}`, man: Manifest{OverrideEnforced: true}}},
			verdict: relay.VerdictSuppress, reason: "bomb", decided: []string{"a:suppress"}},
		{name: "enforced refuses defer", enforced: true,
			plugins: []plug{{name: "a", out: `{"verdict":"defer","defer_until":"2026-03-01T12:30:00Z"}`}},
			verdict: relay.VerdictDeliver, decided: []string{"a:defer"}},
		{name: "defer",
			plugins: []plug{{name: "a", out: `{"verdict":"defer","reason":"night","defer_until":"2026-03-01T12:30:00Z"}`},
				{name: "b", out: `{"verdict":"suppress"}`}},
			verdict: relay.VerdictDefer, reason: "night", until: t0.Add(30 * time.Minute), decided: []string{"a:defer"}},
		{name: "defer clamped to expires_at",
			plugins: []plug{{name: "a", out: `{"verdict":"defer","defer_until":"2026-03-02T00:00:00Z"}`}},
			verdict: relay.VerdictDefer, reason: "policy a", until: t0.Add(time.Hour), decided: []string{"a:defer"}},
		{name: "shadow never acts",
			plugins: []plug{{name: "a", out: `{"verdict":"suppress","reason":"would"}`, man: Manifest{Mode: ModeShadow}},
				{name: "b", out: `{"verdict":"allow","set":{"title":"B"}}`}},
			verdict: relay.VerdictDeliver, set: "B", decided: []string{"a:suppress:shadow", "b:allow"}},
		{name: "shadow set ignored",
			plugins: []plug{{name: "a", out: `{"verdict":"allow","set":{"title":"S"},"devices":["d1"]}`, man: Manifest{Mode: ModeShadow}}},
			verdict: relay.VerdictDeliver, decided: []string{"a:allow:shadow"}},
		{name: "failure skip",
			plugins: []plug{{name: "a", out: "TRAP", man: Manifest{OnError: OnErrorSkip}},
				{name: "b", out: `{"verdict":"allow"}`}},
			verdict: relay.VerdictDeliver, decided: []string{"a:error", "b:allow"}},
		{name: "failure suppress",
			plugins: []plug{{name: "a", out: "TRAP", man: Manifest{OnError: OnErrorSuppress}},
				{name: "b", out: `{"verdict":"allow"}`}},
			verdict: relay.VerdictSuppress, reason: "policy a failed: trap", decided: []string{"a:error"}},
		{name: "failure suppress default from options", onError: OnErrorSuppress,
			plugins: []plug{{name: "a", out: "TRAP"}},
			verdict: relay.VerdictSuppress, decided: []string{"a:error"}},
		{name: "failure suppress refused for enforced", enforced: true,
			plugins: []plug{{name: "a", out: "TRAP", man: Manifest{OnError: OnErrorSuppress}}},
			verdict: relay.VerdictDeliver, decided: []string{"a:error"}},
		{name: "types filter",
			plugins: []plug{{name: "a", out: `{"verdict":"suppress"}`, man: Manifest{Types: []string{"other"}}},
				{name: "b", out: `{"verdict":"allow"}`, man: Manifest{Types: []string{"otp_received"}}}},
			verdict: relay.VerdictDeliver, decided: []string{"b:allow"}},
		{name: "workspaces filter",
			plugins: []plug{{name: "a", out: `{"verdict":"suppress"}`, man: Manifest{Workspaces: []string{"ws2"}}},
				{name: "b", out: `{"verdict":"suppress"}`, man: Manifest{Workspaces: []string{"ws1"}}}},
			verdict: relay.VerdictSuppress, decided: []string{"b:suppress"}},
		{name: "devices narrowing",
			plugins: []plug{{name: "a", out: `{"verdict":"allow","devices":["d2","d1"]}`},
				{name: "b", out: `{"verdict":"allow","devices":["d2"]}`}},
			verdict: relay.VerdictDeliver, devices: []string{"d2"}, decided: []string{"a:allow", "b:allow"}},
		{name: "devices widening is a failure",
			plugins: []plug{{name: "a", out: `{"verdict":"allow","devices":["d2"]}`},
				{name: "b", out: `{"verdict":"allow","devices":["d1"]}`, man: Manifest{OnError: OnErrorSuppress}}},
			verdict: relay.VerdictSuppress, devices: []string{"d2"}, decided: []string{"a:allow", "b:error"}},
		{name: "unknown device is a failure",
			plugins: []plug{{name: "a", out: `{"verdict":"allow","devices":["phone9"]}`}},
			verdict: relay.VerdictDeliver, decided: []string{"a:error"}},
		{name: "forbidden set field is a failure",
			plugins: []plug{{name: "a", out: `{"verdict":"allow","set":{"token":"x"}}`, man: Manifest{OnError: OnErrorSuppress}}},
			verdict: relay.VerdictSuppress, reason: "bad_output", decided: []string{"a:error"}},
		{name: "too long title is a failure",
			plugins: []plug{{name: "a", out: `{"verdict":"allow","set":{"title":"` + strings.Repeat("x", 300) + `"}}`}},
			verdict: relay.VerdictDeliver, decided: []string{"a:error"}},
		{name: "unknown verdict is a failure",
			plugins: []plug{{name: "a", out: `{"verdict":"maybe"}`}},
			verdict: relay.VerdictDeliver, decided: []string{"a:error"}},
		{name: "invalid json is a failure",
			plugins: []plug{{name: "a", out: `{"verdict":`}},
			verdict: relay.VerdictDeliver, decided: []string{"a:error"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := buildSet(t, e, SetOptions{OnError: tc.onError}, tc.plugins...)
			defer func() {
				for _, en := range s.Entries() {
					en.Plugin.Close(context.Background())
				}
			}()
			typ := tc.typ
			if typ == "" {
				typ = relay.TypeOTPReceived
			}
			req := testRequest(typ, tc.enforced)
			if tc.baseline != nil {
				req.Baseline = *tc.baseline
			}
			res, err := s.Evaluate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range res.Plugins {
				g := d.Name + ":" + d.Verdict
				if d.Shadow {
					g += ":shadow"
				}
				got = append(got, g)
				if len(d.Hash) != 64 {
					t.Errorf("decision %+v has no hash", d)
				}
			}
			if res.Verdict != tc.verdict || !strings.Contains(res.Reason, tc.reason) ||
				!res.DeferUntil.Equal(tc.until) || !slices.Equal(got, tc.decided) ||
				!slices.Equal(res.Devices, tc.devices) {
				t.Fatalf("got %s %q until %v devices %v plugins %v\nwant %s %q until %v devices %v plugins %v",
					res.Verdict, res.Reason, res.DeferUntil, res.Devices, got,
					tc.verdict, tc.reason, tc.until, tc.devices, tc.decided)
			}
			title := ""
			if res.Set != nil && res.Set.Title != nil {
				title = *res.Set.Title
			}
			if title != tc.set {
				t.Fatalf("set title %q, want %q", title, tc.set)
			}
			if tc.name == "later set wins" && (res.Set.Data["x"] != "1" || res.Set.Data["y"] != "2") {
				t.Fatalf("data not merged: %v", res.Set.Data)
			}
		})
	}
}

func TestCircuitBreaker(t *testing.T) {
	e := openEngine(t, Options{})
	s := buildSet(t, e, SetOptions{BreakerThreshold: 2, BreakerCooldown: time.Minute},
		plug{name: "bad", out: "TRAP"})
	p := s.Entries()[0].Plugin
	defer p.Close(context.Background())
	req := testRequest(relay.TypeOTPReceived, false)
	reasons := func() string {
		res, err := s.Evaluate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res.Plugins[0].Reason
	}
	for i := 0; i < 2; i++ {
		if r := reasons(); r != "trap" {
			t.Fatalf("call %d: %s", i, r)
		}
	}
	if r := reasons(); r != "circuit open" {
		t.Fatalf("third call: %s", r)
	}
	if c := p.Stats().Calls; c != 2 {
		t.Fatalf("plugin called %d times while open", c)
	}
	req.Now = t0.Add(2 * time.Minute) // cool-down over: one call goes through
	if r := reasons(); r != "trap" {
		t.Fatalf("after cool-down: %s", r)
	}
	if r := reasons(); r != "circuit open" {
		t.Fatalf("half-open failure did not reopen: %s", r)
	}
	if f := p.Stats().Failures; f != 3 {
		t.Fatalf("failures %d", f)
	}
}

func TestChainInput(t *testing.T) {
	rec := NewRecent()
	for i := 0; i < 3; i++ {
		rec.Record("ws1", "u1", relay.TypeIdentityVerification, t0.Add(-time.Duration(i)*20*time.Second))
	}
	rec.Record("ws1", "u1", relay.TypeIdentityVerification, t0.Add(-5*time.Minute))
	rec.Record("ws1", "u1", relay.TypeIdentityVerification, t0.Add(-30*time.Minute))
	rec.Record("ws1", "u1", relay.TypeIdentityVerification, t0.Add(-2*time.Hour))
	rec.Record("ws1", "u2", relay.TypeIdentityVerification, t0)
	s := NewSet(SetOptions{Recent: rec}, nil)
	req := testRequest(relay.TypeIdentityVerification, true)
	in := s.input(req, t0)
	withSettings(in, req)
	b := abi.AppendInput(nil, in)
	var back abi.Input
	if err := abi.DecodeInput(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ABI != 1 || !back.Now.Equal(t0) || back.Event.ID != "e1" || back.Event.ExpiresAt.IsZero() ||
		!back.Baseline.Enforced || back.Baseline.Verdict != "deliver" || len(back.User.Devices) != 2 ||
		back.Workspace.Settings[relay.TypeIdentityVerification] != "enabled" {
		t.Fatalf("input %s", b)
	}
	got := back.User.Recent[relay.TypeIdentityVerification]
	if got != (abi.Recent{M1: 3, M10: 4, H1: 5}) {
		t.Fatalf("recent %+v", got)
	}
}

func TestRecent(t *testing.T) {
	r := NewRecent()
	if r.Lookup("w", "u", t0) != nil {
		t.Fatal("empty lookup")
	}
	r.Record("w", "u", "a", t0)
	r.Record("w", "u", "b", t0)
	if got := r.Lookup("w", "u", t0.Add(61*time.Second))["a"]; got != (abi.Recent{M1: 0, M10: 1, H1: 1}) {
		t.Fatalf("%+v", got)
	}
	if got := r.Lookup("w", "u", t0.Add(61*time.Minute)); got != nil {
		t.Fatalf("after an hour: %+v", got)
	}
	r.Record("w", "x", "a", t0.Add(2*time.Hour)) // sweeps idle entries
	r.mu.Lock()
	n := len(r.users)
	r.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d users after sweep", n)
	}
}

func BenchmarkRecentRecordLookup(b *testing.B) {
	r := NewRecent()
	for i := 0; b.Loop(); i++ {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		r.Record("ws", "u", relay.TypeIdentityVerification, now)
		_ = r.Lookup("ws", "u", now)
	}
}

// TestDecisionHashCoversConfig: the hash a decision records identifies the
// module and the manifest config that judged, so two configs of one module
// record different hashes.
func TestDecisionHashCoversConfig(t *testing.T) {
	e := openEngine(t, Options{})
	p := mustLoad(t, e, "p", wasmtest.ConstPlugin(`{"verdict":"allow"}`))
	hash := func(cfg string) string {
		m := Manifest{Mode: ModeEnforce}
		if cfg != "" {
			m.Config = []byte(cfg)
		}
		res, err := NewSet(SetOptions{}, []Entry{{Plugin: p, Manifest: m}}).Evaluate(context.Background(), testRequest(relay.TypeOTPReceived, false))
		if err != nil || len(res.Plugins) != 1 {
			t.Fatalf("%+v %v", res, err)
		}
		return res.Plugins[0].Hash
	}
	a, b, none := hash(`{"max":5}`), hash(`{"max":50}`), hash("")
	if a == b || a == none || len(a) != 64 {
		t.Fatalf("hashes: config a %s, config b %s, none %s", a, b, none)
	}
	if none != p.Hash() {
		t.Fatalf("without config the hash %s should be the module's %s", none, p.Hash())
	}
	if hash(`{"max":5}`) != a {
		t.Fatal("hash not stable")
	}
}

// TestGuestOutputKeptOutOfLogs: what a failing guest printed (a panic
// message can hold event data, such as an OTP) is not logged at the default
// levels, and at debug it is capped and its digit runs masked.
func TestGuestOutputKeptOutOfLogs(t *testing.T) {
	msg := "panic: bad code 482913 for user"
	m := wasmtest.NewModule()
	fdWrite := m.ImportFunc("wasi_snapshot_preview1", "fd_write", []byte{wasmtest.TI32, wasmtest.TI32, wasmtest.TI32, wasmtest.TI32}, wasmtest.I32T)
	m.Memory(1, -1)
	m.DataAt(16, []byte{64, 0, 0, 0, byte(len(msg)), 0, 0, 0}).DataAt(64, []byte(msg))
	m.Func("relay_abi_version", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
	m.Func("relay_alloc", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.I32Const(1024))
	m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I32Const(2), wasmtest.I32Const(16), wasmtest.I32Const(1), wasmtest.I32Const(32), wasmtest.Call(fdWrite),
		[]byte{wasmtest.OpDrop, wasmtest.OpUnreachable})
	e := openEngine(t, Options{})
	p := mustLoad(t, e, "leaky", m.Bytes())
	for _, level := range []hclog.Level{hclog.Info, hclog.Debug} {
		var buf bytes.Buffer
		log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: level})
		set := NewSet(SetOptions{Logger: log}, []Entry{{Plugin: p, Manifest: Manifest{Mode: ModeEnforce}}})
		if _, err := set.Evaluate(context.Background(), testRequest(relay.TypeOTPReceived, false)); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if strings.Contains(out, "482913") {
			t.Fatalf("%s log holds the guest's code: %s", level, out)
		}
		if !strings.Contains(out, "policy failed") {
			t.Fatalf("%s log lacks the failure: %s", level, out)
		}
		if got := strings.Contains(out, "bad code ••••"); got != (level == hclog.Debug) {
			t.Fatalf("%s log: redacted guest output shown = %v: %s", level, got, out)
		}
	}
}

// TestChainNotices: an enforce plugin's notice is collected with its name,
// whatever its verdict (also a suppress refused for an enforced type); a
// shadow plugin's and a failed plugin's are not; the request's own counts
// win over the Set's RecentSource.
func TestChainNotices(t *testing.T) {
	e := openEngine(t, Options{})
	notice := `"notice":{"title":"Heads up","data":{"warning":"x"}}`
	s := buildSet(t, e, SetOptions{},
		plug{name: "a-warn", out: `{"verdict":"allow",` + notice + `}`, man: Manifest{Order: 1}},
		plug{name: "b-shadow", out: `{"verdict":"suppress",` + notice + `}`, man: Manifest{Order: 2, Mode: ModeShadow}},
		plug{name: "c-bad", out: `{"verdict":"allow","notice":{"body":"no title"}}`, man: Manifest{Order: 3}},
		plug{name: "d-suppress", out: `{"verdict":"suppress","reason":"guard",` + notice + `}`, man: Manifest{Order: 4}},
	)
	res, err := s.Evaluate(t.Context(), testRequest(relay.TypeIdentityVerification, true))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range res.Notices {
		got = append(got, n.Plugin+":"+n.Title+":"+n.Data["warning"])
	}
	if want := []string{"a-warn:Heads up:x", "d-suppress:Heads up:x"}; !slices.Equal(got, want) {
		t.Fatalf("notices %v, want %v", got, want)
	}
	if res.Verdict != relay.VerdictDeliver {
		t.Fatalf("an enforced type suppressed without override_enforced: %+v", res)
	}

	req := testRequest(relay.TypeIdentityVerification, false)
	req.Recent = map[string]abi.Recent{relay.TypeIdentityVerification: {M1: 7, M10: 8, H1: 9}}
	rec := NewRecent()
	rec.Record("ws1", "u1", relay.TypeIdentityVerification, t0)
	in := NewSet(SetOptions{Recent: rec}, nil).input(req, t0)
	if got := in.User.Recent[relay.TypeIdentityVerification]; got != (abi.Recent{M1: 7, M10: 8, H1: 9}) {
		t.Fatalf("recent %+v, want the request's", got)
	}
}

// A plugin that answers ignore_type is called once per event type; later
// events of the type record the same answer, and the next plugin still
// sees it among its priors.
func TestIgnoreTypeSkipsLaterCalls(t *testing.T) {
	e := openEngine(t, Options{})
	set := buildSet(t, e, SetOptions{},
		plug{name: "exempt", out: `{"verdict":"allow","reason":"exempt","ignore_type":true}`, man: Manifest{Order: 1}},
		plug{name: "echo", out: `{"verdict":"allow"}`, man: Manifest{Order: 2}})
	exempt := set.Entries()[0].Plugin
	ctx := context.Background()
	for i, typ := range []string{relay.TypeOTPReceived, relay.TypeOTPReceived, relay.TypeOTPReceived, relay.TypeAccountShared} {
		res, err := set.Evaluate(ctx, testRequest(typ, false))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Plugins) != 2 || res.Plugins[0].Verdict != abi.VerdictAllow || res.Plugins[0].Reason != "exempt" ||
			res.Plugins[0].Hash != set.Entries()[0].hash {
			t.Fatalf("event %d (%s): recorded %+v", i, typ, res.Plugins)
		}
		if res.Verdict != relay.VerdictDeliver {
			t.Fatalf("event %d: verdict %s", i, res.Verdict)
		}
	}
	if calls := exempt.Stats().Calls; calls != 2 {
		t.Fatalf("the ignoring plugin was called %d times for two types, want 2", calls)
	}
	if calls := set.Entries()[1].Plugin.Stats().Calls; calls != 4 {
		t.Fatalf("the next plugin was called %d times, want every event", calls)
	}
	// A reload builds a new Set: it asks again.
	again := NewSet(SetOptions{}, set.Entries())
	if _, err := again.Evaluate(ctx, testRequest(relay.TypeOTPReceived, false)); err != nil {
		t.Fatal(err)
	}
	if calls := exempt.Stats().Calls; calls != 3 {
		t.Fatalf("after a reload: %d calls, want 3", calls)
	}
}

// ignore_type with anything but an unchanged allow is bad output: a plugin
// cannot make the relay skip it while it changes the event.
func TestIgnoreTypeNeedsAnUnchangedAllow(t *testing.T) {
	e := openEngine(t, Options{})
	set := buildSet(t, e, SetOptions{},
		plug{name: "liar", out: `{"verdict":"suppress","ignore_type":true}`, man: Manifest{Order: 1}})
	res, err := set.Evaluate(context.Background(), testRequest(relay.TypeOTPReceived, false))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plugins) != 1 || res.Plugins[0].Verdict != DecisionError || res.Plugins[0].Reason != string(KindBadOutput) ||
		res.Verdict != relay.VerdictDeliver {
		t.Fatalf("got %+v (verdict %s), want a bad_output failure, skipped", res.Plugins, res.Verdict)
	}
}
