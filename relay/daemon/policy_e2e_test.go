package daemon_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildPlugin compiles a wasip1 reactor module from a package directory.
func buildPlugin(tb testing.TB, pkgDir, out string) {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build plugin %s: %v\n%s", pkgDir, err, b)
	}
}

// TestPoliciesEndToEnd drives the plugin chain through the socket: one
// scripted plugin per workspace (manifest workspaces), covering
// override_enforced, types, defer and devices narrowing.
func TestPoliciesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm plugin")
	}
	h := newHarness(t, harnessOptions{})
	wasm := filepath.Join(t.TempDir(), "scripted.wasm")
	buildPlugin(t, "testdata/scripted", wasm)
	data, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	plugins := map[string]string{
		// Suppresses everything in ws-refuse, but may not suppress an
		// enforced type.
		"refuse": `order = 1
workspaces = ["ws-refuse"]
config {
  verdict = "suppress"
  reason = "no_thanks"
}`,
		"override": `order = 1
workspaces = ["ws-override"]
override_enforced = true
config {
  verdict = "suppress"
  reason = "overridden"
}`,
		"typed": `order = 1
workspaces = ["ws-types"]
types = ["account_shared"]
config {
  verdict = "suppress"
  reason = "not_this_type"
}`,
		"deferrer": `order = 1
workspaces = ["ws-defer"]
config {
  verdict = "defer"
  reason = "later"
  defer_seconds = 2
}`,
		"narrower": `order = 1
workspaces = ["ws-devices"]
config {
  verdict = "allow"
  devices = ["pixel"]
  title = "Narrowed"
}`,
	}
	dir := filepath.Join(h.dir, "plugins")
	for name, manifest := range plugins {
		writeFile(t, filepath.Join(dir, name+".wasm"), data)
		writeFile(t, filepath.Join(dir, name+".hcl"), []byte(manifest))
	}
	h.start()
	defer h.stop(syscall.SIGTERM)

	for _, ws := range []string{"ws-refuse", "ws-override", "ws-types", "ws-defer", "ws-devices"} {
		h.registerPhones(ws, "u")
	}
	ev := func(ws, id, typ string) map[string]any {
		return map[string]any{"id": id, "workspace": ws, "user": "u", "type": typ, "title": "T"}
	}
	start := time.Now()
	for _, r := range h.post(
		ev("ws-refuse", "enforced", "identity_verification"),
		ev("ws-refuse", "plain", "otp_received"),
		ev("ws-override", "enforced", "identity_verification"),
		ev("ws-types", "shared", "account_shared"),
		ev("ws-types", "otp", "otp_received"),
		ev("ws-defer", "d", "account_shared"),
		ev("ws-devices", "n", "account_shared"),
	) {
		if r.Status != "accepted" {
			t.Fatalf("%+v", r)
		}
	}
	type want struct {
		ws, id, verdict, reason string
		states                  map[string]string // device -> state
		plugin                  string
	}
	wants := []want{
		{"ws-refuse", "enforced", "deliver", "enforced", map[string]string{"iphone": "delivered", "pixel": "delivered"}, "refuse"},
		{"ws-refuse", "plain", "suppress", "no_thanks", map[string]string{"iphone": "suppressed", "pixel": "suppressed"}, "refuse"},
		{"ws-override", "enforced", "suppress", "overridden", map[string]string{"iphone": "suppressed", "pixel": "suppressed"}, "override"},
		{"ws-types", "shared", "suppress", "not_this_type", map[string]string{"iphone": "suppressed", "pixel": "suppressed"}, "typed"},
		{"ws-types", "otp", "deliver", "enabled", map[string]string{"iphone": "delivered", "pixel": "delivered"}, ""},
		{"ws-defer", "d", "defer", "later", map[string]string{"iphone": "delivered", "pixel": "delivered"}, "deferrer"},
		{"ws-devices", "n", "deliver", "enabled", map[string]string{"pixel": "delivered"}, "narrower"},
	}
	for _, w := range wants {
		waitFor(t, 20*time.Second, func() error { return h.settled(w.ws, w.id) })
		code, body := h.do("GET", "/v1/events/"+w.ws+"/"+w.id, "", nil)
		v, _ := h.event(w.ws, w.id)
		if code != 200 || v.Decision.Verdict != w.verdict || v.Decision.Reason != w.reason {
			t.Errorf("%s/%s: decision %s/%s, want %s/%s: %s", w.ws, w.id, v.Decision.Verdict, v.Decision.Reason, w.verdict, w.reason, body)
		}
		got := map[string]string{}
		for _, d := range v.Deliveries {
			got[d.DeviceID] = d.State
		}
		if fmt.Sprint(got) != fmt.Sprint(w.states) {
			t.Errorf("%s/%s: deliveries %v, want %v", w.ws, w.id, got, w.states)
		}
		if w.plugin != "" && !strings.Contains(string(body), `"name":"`+w.plugin+`"`) {
			t.Errorf("%s/%s: decision does not name plugin %s: %s", w.ws, w.id, w.plugin, body)
		}
		if w.plugin != "" && !strings.Contains(string(body), `"hash":"`) {
			t.Errorf("%s/%s: decision lacks the plugin hash: %s", w.ws, w.id, body)
		}
	}
	// The deferred event was not sent before its defer time.
	cid := collapse("ws-defer", "d")
	for _, p := range accepted(append(h.APNs.Pushes(), h.FCM.Pushes()...)) {
		if p.CollapseID() == cid && p.Time.Sub(start) < 1900*time.Millisecond {
			t.Errorf("deferred event pushed after %v, before its 2s defer", p.Time.Sub(start))
		}
		if p.CollapseID() == collapse("ws-devices", "n") && p.Provider == "apns" {
			t.Errorf("narrowed event reached the iPhone")
		}
		if p.CollapseID() == collapse("ws-devices", "n") && p.Title() != "Narrowed" {
			t.Errorf("narrowed event title %q, want the plugin's", p.Title())
		}
	}
	// GET /v1/plugins lists all five with hashes.
	code, body := h.do("GET", "/v1/plugins", "", nil)
	if code != 200 || strings.Count(string(body), `"hash"`) != 5 {
		t.Errorf("GET /v1/plugins: %d %s", code, body)
	}
}
