package daemon_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay/policy"
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

// withCustomSection returns wasm with a custom section appended: the same
// module behaviour, a different content hash.
func withCustomSection(wasm []byte, name string, payload []byte) []byte {
	leb := func(n int) []byte {
		var b []byte
		for {
			c := byte(n & 0x7f)
			n >>= 7
			if n != 0 {
				c |= 0x80
			}
			b = append(b, c)
			if n == 0 {
				return b
			}
		}
	}
	body := append(leb(len(name)), name...)
	body = append(body, payload...)
	out := append([]byte{}, wasm...)
	out = append(out, 0)
	out = append(out, leb(len(body))...)
	return append(out, body...)
}

// TestHotReloadUnderLoad swaps a plugin 50 times (atomic rename) while
// events flow (10,000, then more until the last version judges): no event
// is lost, and every decision names exactly
// one complete version of the plugin by its hash.
func TestHotReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm plugin and sends 10,000 events")
	}
	h := newHarness(t, harnessOptions{logLevel: "info"})
	wasm := filepath.Join(t.TempDir(), "scripted.wasm")
	buildPlugin(t, "testdata/scripted", wasm)
	base, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	const swaps = 50
	events := envInt("EDGERELAY_RELOAD_EVENTS", 10_000)
	versions := make([][]byte, swaps+1)
	manifest := []byte("order = 1\nconfig {\n  verdict = \"allow\"\n  reason = \"ok\"\n}\n")
	man, err := policy.ParseManifest("swapper.hcl", manifest)
	if err != nil {
		t.Fatal(err)
	}
	hashes := map[string]int{} // decision hash (module and config) -> version
	for i := range versions {
		versions[i] = withCustomSection(base, "edgerelay.test.version", []byte(fmt.Sprint(i)))
		sum := sha256.Sum256(versions[i])
		hashes[policy.DecisionHash(hex.EncodeToString(sum[:]), man.Config)] = i
	}
	dir := filepath.Join(h.dir, "plugins")
	writeFile(t, filepath.Join(dir, "swapper.hcl"), manifest)
	install := func(i int) {
		tmp := filepath.Join(dir, ".swapper.wasm.tmp")
		writeFile(t, tmp, versions[i])
		if err := os.Rename(tmp, filepath.Join(dir, "swapper.wasm")); err != nil {
			t.Error(err)
		}
	}
	install(0)
	h.start()
	defer h.stop(syscall.SIGTERM)
	// One iPhone per user keeps the delivery load to one push per event.
	for u := range 10 {
		user := fmt.Sprintf("u-%d", u)
		h.put("/v1/workspaces/hot/users/"+user+"/devices/iphone", map[string]string{"platform": "ios", "token": hexToken(user), "app": "demo"})
	}

	done := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		for i := 1; i <= swaps; i++ {
			select {
			case <-done:
			case <-time.After(40 * time.Millisecond):
			}
			install(i)
			n++
		}
	}()
	// loaded returns the version the relay judges with now (-1: unknown).
	loaded := func() int {
		code, body := h.do("GET", "/v1/plugins", "", nil)
		var v struct {
			Plugins []struct {
				DecisionHash string `json:"decision_hash"`
			}
		}
		if code != 200 || json.Unmarshal(body, &v) != nil || len(v.Plugins) != 1 {
			return -1
		}
		if ver, ok := hashes[v.Plugins[0].DecisionHash]; ok {
			return ver
		}
		return -1
	}
	// Post at least events, spread over the swaps, and go on (slower)
	// until the last version judges: compiling a version takes 0.3-2 s
	// here, so a fixed count could end before the first swap took effect.
	const batch = 100
	deadline := time.Now().Add(2 * time.Minute)
	posted := 0
	for lastSeen := false; !lastSeen; posted += batch {
		// Sampled before the batch: if the last version judged already,
		// this batch (decided on accept) is judged by it.
		lastSeen = posted >= events && loaded() == swaps
		var evs []map[string]any
		for i := posted; i < posted+batch; i++ {
			evs = append(evs, map[string]any{"id": fmt.Sprintf("h-%d", i), "workspace": "hot", "user": fmt.Sprintf("u-%d", i%10), "type": "account_shared", "title": "x"})
		}
		for _, r := range h.post(evs...) {
			if r.Status != "accepted" {
				t.Fatalf("%+v", r)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("version %d not loaded after %d events (now judging with %d)", swaps, posted, loaded())
		}
		if posted < events {
			time.Sleep(10 * time.Millisecond) // spread the load over the swaps
		} else {
			time.Sleep(250 * time.Millisecond) // waiting for the last load
		}
	}
	close(done)
	if n := <-swapped; n != swaps {
		t.Fatalf("%d swaps, want %d", n, swaps)
	}
	events = posted

	seen := map[int]int{} // version -> events judged
	for _, v := range h.drained(time.Minute, "hot", events, func(i int) string { return fmt.Sprintf("h-%d", i) }) {
		if ps := v.Decision.Plugins; len(ps) != 1 || ps[0].Name != "swapper" || ps[0].Verdict != "allow" {
			t.Fatalf("%s: plugins %+v, want exactly one allow by swapper", v.ID, ps)
		}
		ver, ok := hashes[v.Decision.Plugins[0].Hash]
		if !ok {
			t.Fatalf("%s: judged by unknown hash %s (a half-written file?)", v.ID, v.Decision.Plugins[0].Hash)
		}
		seen[ver]++
		if len(v.Deliveries) != 1 || v.Deliveries[0].State != "delivered" {
			t.Fatalf("%s: deliveries %+v", v.ID, v.Deliveries)
		}
	}
	if len(seen) < 2 {
		t.Errorf("all events judged by one version (%v): the swaps did not take effect", seen)
	}
	t.Logf("events judged per plugin version: %v (%d versions seen)", seen, len(seen))
}

// TestMisbehavingPluginsEndToEnd: plugins that loop, panic, exhaust memory
// or recurse without end are each handled per on_error, named in the log and
// the metrics, and relayd keeps delivering everything else.
func TestMisbehavingPluginsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm plugin")
	}
	h := newHarness(t, harnessOptions{logLevel: "info", metrics: true, plugins: "timeout = \"200ms\"\n  memory_limit = \"64MiB\""})
	wasm := filepath.Join(t.TempDir(), "scripted.wasm")
	buildPlugin(t, "testdata/scripted", wasm)
	data, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.dir, "plugins")
	bad := map[string]string{
		// name: manifest. Each misbehaves on one workspace only.
		"looper":   "workspaces = [\"ws-loop\"]\non_error = \"suppress\"\nconfig {\n  misbehave = \"loop\"\n}\n",
		"panicker": "workspaces = [\"ws-panic\"]\non_error = \"skip\"\nconfig {\n  misbehave = \"panic\"\n}\n",
		"bomber":   "workspaces = [\"ws-bomb\"]\non_error = \"suppress\"\nconfig {\n  misbehave = \"bomb\"\n}\n",
		"recurser": "workspaces = [\"ws-recurse\"]\non_error = \"skip\"\nconfig {\n  misbehave = \"recurse\"\n}\n",
	}
	for name, m := range bad {
		writeFile(t, filepath.Join(dir, name+".wasm"), data)
		writeFile(t, filepath.Join(dir, name+".hcl"), []byte(m))
	}
	// Files that must be refused at load, leaving the rest running.
	writeFile(t, filepath.Join(dir, "garbage.wasm"), []byte("\x00asm\x01\x00\x00\x00garbage"))
	h.start()
	defer h.stop(syscall.SIGTERM)
	for _, ws := range []string{"ws-loop", "ws-panic", "ws-bomb", "ws-recurse", "ws-fine"} {
		h.registerPhones(ws, "u")
	}
	type want struct{ ws, verdict, state, plugin string }
	wants := []want{
		{"ws-loop", "suppress", "suppressed", "looper"},
		{"ws-panic", "deliver", "delivered", "panicker"},
		{"ws-bomb", "suppress", "suppressed", "bomber"},
		{"ws-recurse", "deliver", "delivered", "recurser"},
		{"ws-fine", "deliver", "delivered", ""},
	}
	for round := range 3 {
		for _, w := range wants {
			id := fmt.Sprintf("e-%d", round)
			if r := h.post(map[string]any{"id": id, "workspace": w.ws, "user": "u", "type": "account_shared", "title": "x"}); r[0].Status != "accepted" {
				t.Fatalf("%+v", r)
			}
		}
	}
	for round := range 3 {
		for _, w := range wants {
			id := fmt.Sprintf("e-%d", round)
			waitFor(t, 30*time.Second, func() error { return h.settled(w.ws, id) })
			_, body := h.do("GET", "/v1/events/"+w.ws+"/"+id, "", nil)
			v, _ := h.event(w.ws, id)
			if v.Decision.Verdict != w.verdict {
				t.Errorf("%s/%s: verdict %s, want %s: %s", w.ws, id, v.Decision.Verdict, w.verdict, body)
			}
			for _, d := range v.Deliveries {
				if d.State != w.state {
					t.Errorf("%s/%s: %s %s, want %s", w.ws, id, d.DeviceID, d.State, w.state)
				}
			}
			if w.plugin != "" && !strings.Contains(string(body), `"name":"`+w.plugin+`"`) {
				t.Errorf("%s/%s: decision does not name %s: %s", w.ws, id, w.plugin, body)
			}
		}
	}
	resp, err := http.Get("http://" + h.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for name := range bad {
		if !strings.Contains(string(metrics), `edgerelay_plugin_failures_total{plugin="`+name+`"}`) {
			t.Errorf("metrics do not count failures of %s", name)
		}
	}
	logs := h.logs.String()
	for _, s := range []string{"looper", "panicker", "bomber", "recurser", "garbage"} {
		if !strings.Contains(logs, s) {
			t.Errorf("log never names plugin %s", s)
		}
	}
	code, body := h.do("GET", "/v1/plugins", "", nil)
	if code != 200 || !strings.Contains(string(body), "garbage") {
		t.Errorf("GET /v1/plugins should report the refused file with its error: %s", body)
	}
	if code, _ := h.do("GET", "/healthz", "", nil); code != 200 {
		t.Errorf("healthz %d", code)
	}
}

// TestAssemblyScriptPluginEndToEnd runs the AssemblyScript example plugin
// (built by `make example-as`, part of `make test`) inside relayd: the ABI
// is language-neutral.
func TestAssemblyScriptPluginEndToEnd(t *testing.T) {
	wasm, err := os.ReadFile("../../build/examples/as_example.wasm")
	if err != nil {
		if os.Getenv("EDGERELAY_REQUIRE_EXAMPLES") != "" {
			t.Fatalf("AssemblyScript example not built (make example-as): %v", err)
		}
		t.Skip("build/examples/as_example.wasm missing: run make example-as (make test does)")
	}
	h := newHarness(t, harnessOptions{})
	dir := filepath.Join(h.dir, "plugins")
	writeFile(t, filepath.Join(dir, "as_example.wasm"), wasm)
	writeFile(t, filepath.Join(dir, "as_example.hcl"), []byte("types = [\"account_shared\"]\nconfig {\n  internal_owner = \"bot@corp.example\"\n}\n"))
	h.start()
	defer h.stop(syscall.SIGTERM)
	h.registerPhones("acme", "u")
	h.post(
		map[string]any{"id": "internal", "workspace": "acme", "user": "u", "type": "account_shared", "data": map[string]string{"owner": "bot@corp.example"}},
		map[string]any{"id": "external", "workspace": "acme", "user": "u", "type": "account_shared", "data": map[string]string{"owner": "eve@elsewhere.example"}},
	)
	for id, want := range map[string]string{"internal": "suppress", "external": "deliver"} {
		waitFor(t, 10*time.Second, func() error { return h.settled("acme", id) })
		_, body := h.do("GET", "/v1/events/acme/"+id, "", nil)
		v, _ := h.event("acme", id)
		if v.Decision.Verdict != want || !strings.Contains(string(body), `"name":"as_example"`) {
			t.Errorf("%s: %s, want %s by as_example: %s", id, v.Decision.Verdict, want, body)
		}
	}
}
