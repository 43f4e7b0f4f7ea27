package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

// TestNoStateAcrossWorkspaces: a plugin that keeps the last event in a
// global sees it again in the same workspace, but a workspace-B event
// never runs on an instance that served workspace A.
func TestNoStateAcrossWorkspaces(t *testing.T) {
	gb := needGo(t)
	// One evaluation slot and a pool of one: without isolation every event
	// would run on the same instance.
	e := openEngine(t, Options{MaxConcurrent: 1, PoolSize: 1, Timeout: time.Second})
	p := mustLoad(t, e, "stateful", gb)
	set := NewSet(SetOptions{}, []Entry{{Plugin: p, Manifest: Manifest{Mode: ModeEnforce, Config: []byte(`{"mode":"remember"}`)}}})
	eval := func(ws, title string) string {
		req := testRequest(relay.TypeOTPReceived, false)
		req.Event.Workspace, req.Event.Title = ws, title
		res, err := set.Evaluate(context.Background(), req)
		if err != nil || len(res.Plugins) != 1 {
			t.Fatalf("%+v %v", res, err)
		}
		return res.Plugins[0].Reason
	}
	if got := eval("acme", "acme code 111111"); got != "previous: " {
		t.Fatalf("first event: %q", got)
	}
	if got := eval("acme", "acme code 222222"); got != "previous: acme code 111111" {
		t.Fatalf("same workspace: %q (the instance should be reused)", got)
	}
	for _, ws := range []string{"globex", "initech", "globex"} {
		got := eval(ws, ws+" code 333333")
		if strings.Contains(got, "acme") || (ws == "initech" && strings.Contains(got, "globex")) {
			t.Fatalf("workspace %s saw another workspace's event: %q", ws, got)
		}
	}
	if got := eval("acme", "acme code 444444"); strings.Contains(got, "globex") || strings.Contains(got, "initech") {
		t.Fatalf("acme saw another workspace's event: %q", got)
	}
}

// TestTrimReleasesIdleInstances: idle instances are closed after the idle
// timeout, and the next call creates a new one.
func TestTrimReleasesIdleInstances(t *testing.T) {
	e := openEngine(t, Options{Prewarm: 2, PoolSize: 2})
	p := mustLoad(t, e, "echo", wasmtest.EchoPlugin())
	if n := p.Stats().Instances; n != 2 {
		t.Fatalf("%d instances after prewarm", n)
	}
	if n := p.Trim(time.Now(), time.Minute); n != 0 {
		t.Fatalf("trimmed %d fresh instances", n)
	}
	if n := p.Trim(time.Now().Add(time.Hour), time.Minute); n != 2 || p.Stats().Instances != 0 {
		t.Fatalf("trimmed %d, %d left", n, p.Stats().Instances)
	}
	if _, err := p.EvaluateRaw(context.Background(), []byte("{}")); err != nil || p.Stats().Instances != 1 {
		t.Fatalf("after trim: %v, %d instances", err, p.Stats().Instances)
	}
}

// Traffic from several workspaces keeps one warm instance per workspace:
// with a pool of MaxConcurrent idle instances in all, four workspaces in
// turn needed a new instance (~10 ms for a standard-Go module) for every
// call.
func TestPoolKeepsAnInstancePerBusyWorkspace(t *testing.T) {
	e := openEngine(t, Options{Timeout: time.Second, MaxConcurrent: 2})
	p := mustLoad(t, e, "const", wasmtest.ConstPlugin(`{"verdict":"allow"}`))
	ctx := context.Background()
	const workspaces, rounds = 4, 50
	for r := range rounds {
		for w := range workspaces {
			in := policyInput("const", &Manifest{})
			in.Event.Workspace = fmt.Sprint("ws-", w)
			if _, err := p.Evaluate(ctx, in); err != nil {
				t.Fatalf("round %d, workspace %d: %v", r, w, err)
			}
		}
	}
	// The prewarmed instance serves the first workspace; one new one for
	// each of the other three.
	if got := p.Stats().Created; got != workspaces {
		t.Fatalf("%d instances created for %d calls from %d workspaces; want %d", got, rounds*workspaces, workspaces, workspaces)
	}
	// The cap still holds: more workspaces than MaxIdle evict the least
	// recently used.
	for w := range DefaultMaxIdle + 3 {
		in := policyInput("const", &Manifest{})
		in.Event.Workspace = fmt.Sprint("burst-", w)
		if _, err := p.Evaluate(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	p.mod.mu.Lock()
	idle := len(p.mod.idle)
	p.mod.mu.Unlock()
	if idle != DefaultMaxIdle {
		t.Fatalf("%d idle instances, want the cap %d", idle, DefaultMaxIdle)
	}
}

// The shipped bundle installed under two names shares one instance per
// workspace, and each plugin still gets its own config's rule: the Go SDK
// keeps one parsed rule per config.
func TestBundlePluginsShareInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the shipped bundle")
	}
	bundle, err := buildGoPlugin(t.TempDir(), "../../policies/all/wasm")
	if err != nil {
		t.Fatal(err)
	}
	e := openEngine(t, Options{Timeout: time.Second, MaxConcurrent: 1})
	_, otpM := shipped(t, "otp_redaction")
	_, qhM := shipped(t, "quiet_hours")
	otp := mustLoad(t, e, "otp_redaction", bundle)
	qh := mustLoad(t, e, "quiet_hours", bundle)
	otpIn := policyInput("otp_redaction", otpM)
	qhIn := policyInput("quiet_hours", qhM)
	qhIn.Event.Type = relay.TypeAccountShared
	qhIn.Now = time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC) // 00:30 in Paris: quiet
	ctx := context.Background()
	for i := range 20 {
		out, err := otp.Evaluate(ctx, otpIn)
		if err != nil || out.Reason != "otp_redacted" {
			t.Fatalf("call %d, otp_redaction: %+v, %v", i, out, err)
		}
		out, err = qh.Evaluate(ctx, qhIn)
		if err != nil || out.Verdict != "defer" {
			t.Fatalf("call %d, quiet_hours: %+v, %v", i, out, err)
		}
	}
	if o, q := otp.Stats(), qh.Stats(); o.Created != 1 || q.Created != 1 || o.Instances != 1 {
		t.Fatalf("stats otp %+v, quiet_hours %+v: want one instance serving both", o, q)
	}
}
