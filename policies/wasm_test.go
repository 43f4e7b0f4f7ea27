//go:build !wasip1

package policies_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

var names = []string{"account_sharing_filter", "new_device_escalation", "otp_redaction", "push_bombing_guard", "quiet_hours"}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// compileCache is shared by every runtime the tests make: a module is
// compiled once, not once per load (under -race a compile of the bundle
// takes seconds, and TestPoliciesWasm loads it for each policy). wazero
// keys a compiled module by its bytes and the runtime's settings, so
// loads with and without close-on-context-done stay apart.
var compileCache = wazero.NewCompilationCache()

func TestMain(m *testing.M) {
	code := m.Run()
	compileCache.Close(context.Background())
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// goTool returns the go command, or "" when there is none.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	p, _ := exec.LookPath("go")
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// wasmFile builds all policies once (the go build cache makes reruns cheap)
// and returns the path of name's module.
func wasmFile(tb testing.TB, name string) string {
	tb.Helper()
	gocmd := goTool()
	if gocmd == "" {
		tb.Skip("go command not found")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "policies-wasm")
		if buildErr != nil {
			return
		}
		for _, n := range append(names, "all") {
			cmd := exec.Command(gocmd, "build", "-buildmode=c-shared", "-trimpath",
				"-o", filepath.Join(buildDir, n+".wasm"), "./"+n+"/wasm")
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %w\n%s", n, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return filepath.Join(buildDir, name+".wasm")
}

// manifestConfig reads NAME/NAME.hcl and returns its config {} block as
// JSON, the way the host passes it.
func manifestConfig(tb testing.TB, name string) []byte {
	tb.Helper()
	p := hclparse.NewParser()
	f, diags := p.ParseHCLFile(filepath.Join(name, name+".hcl"))
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	content, diags := f.Body.Content(&hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "order"}, {Name: "types"}, {Name: "workspaces"},
			{Name: "override_enforced"}, {Name: "on_error"}, {Name: "mode"}},
		Blocks: []hcl.BlockHeaderSchema{{Type: "config"}},
	})
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	for _, a := range content.Attributes {
		if _, diags := a.Expr.Value(nil); diags.HasErrors() {
			tb.Fatal(diags)
		}
	}
	if len(content.Blocks) == 0 {
		return nil
	}
	attrs, diags := content.Blocks[0].Body.JustAttributes()
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	i := 0
	for name, a := range attrs {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			tb.Fatal(diags)
		}
		j, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			tb.Fatal(err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", name, j)
		i++
	}
	b.WriteByte('}')
	return b.Bytes()
}

// plugin is one compiled policy with one instance, driven like the host.
type plugin struct {
	rt     wazero.Runtime
	mod    api.Module
	eval   api.Function
	alloc  api.Function
	ptr    uint32
	size   uint32
	stderr bytes.Buffer
}

// input encodes in as the Go SDK asks the host to: compact.
func input(in *abi.Input) []byte { return abi.AppendInputCompact(nil, in) }

func load(tb testing.TB, name string) *plugin { return loadWith(tb, name, true) }

// loadWith loads name; cod turns wazero's close-on-context-done (the
// deadline switch the host always uses) on or off.
func loadWith(tb testing.TB, name string, cod bool) *plugin {
	tb.Helper()
	return loadPath(tb, wasmFile(tb, name), cod)
}

func loadPath(tb testing.TB, path string, cod bool) *plugin {
	tb.Helper()
	name := filepath.Base(path)
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	p := &plugin{rt: wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(cod).WithMemoryLimitPages(512).WithCompilationCache(compileCache))}
	tb.Cleanup(func() { p.rt.Close(ctx) })
	compiled, err := p.rt.CompileModule(ctx, bin)
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range compiled.ImportedFunctions() {
		if mod, _, _ := f.Import(); mod != abi.ImportModule {
			tb.Errorf("%s imports from %q", name, mod)
		}
	}
	exports := compiled.ExportedFunctions()
	for export, sig := range map[string]string{
		abi.ExportInitialize: "()->()", abi.ExportAbiVersion: "()->(i32)",
		abi.ExportAlloc: "(i32)->(i32)", abi.ExportEvaluate: "(i32,i32)->(i64)",
		abi.ExportEncoding: "()->(i32)", abi.ExportInputSections: "(i32,i32)->(i32)",
	} {
		f, ok := exports[export]
		if !ok && export == abi.ExportInitialize {
			continue // optional for non-Go guests
		}
		if !ok {
			tb.Fatalf("%s: missing export %s", name, export)
		}
		if got := signature(f); got != sig {
			tb.Errorf("%s: %s has signature %s, want %s", name, export, got, sig)
		}
	}
	if _, ok := compiled.ExportedMemories()[abi.ExportMemory]; !ok {
		tb.Fatalf("%s: no exported memory", name)
	}
	wasi_snapshot_preview1.MustInstantiate(ctx, p.rt)
	p.mod, err = p.rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().
		WithName("").WithStartFunctions(abi.ExportInitialize).WithStderr(&p.stderr).WithStdout(&p.stderr))
	if err != nil {
		tb.Fatalf("instantiate %s: %v", name, err)
	}
	res, err := p.mod.ExportedFunction(abi.ExportAbiVersion).Call(ctx)
	if err != nil || len(res) != 1 || uint32(res[0]) != abi.Version {
		tb.Fatalf("%s: relay_abi_version = %v, %v", name, res, err)
	}
	// Every module built with the SDK reads and writes the compact
	// encoding, which the host then uses.
	enc := p.mod.ExportedFunction(abi.ExportEncoding)
	if enc == nil {
		tb.Fatalf("%s: no %s export", name, abi.ExportEncoding)
	}
	if res, err := enc.Call(ctx); err != nil || len(res) != 1 || uint32(res[0]) != abi.EncodingCompact {
		tb.Fatalf("%s: %s = %v, %v; want %d", name, abi.ExportEncoding, res, err, abi.EncodingCompact)
	}
	p.alloc = p.mod.ExportedFunction(abi.ExportAlloc)
	p.eval = p.mod.ExportedFunction(abi.ExportEvaluate)
	return p
}

func signature(f api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ",")
	}
	return "(" + names(f.ParamTypes()) + ")->(" + names(f.ResultTypes()) + ")"
}

// evaluate sends doc and returns the raw output (nil when out_len is 0).
func (p *plugin) evaluate(ctx context.Context, doc []byte) ([]byte, error) {
	if uint32(len(doc)) > p.size {
		res, err := p.alloc.Call(ctx, uint64(len(doc)))
		if err != nil {
			return nil, fmt.Errorf("relay_alloc: %w", err)
		}
		if res[0] == 0 {
			return nil, fmt.Errorf("relay_alloc returned 0")
		}
		p.ptr, p.size = uint32(res[0]), uint32(len(doc))
	}
	if !p.mod.Memory().Write(p.ptr, doc) {
		return nil, fmt.Errorf("write input out of range")
	}
	res, err := p.eval.Call(ctx, uint64(p.ptr), uint64(len(doc)))
	if err != nil {
		return nil, fmt.Errorf("relay_evaluate: %w (stderr: %s)", err, p.stderr.String())
	}
	optr, olen := uint32(res[0]>>32), uint32(res[0])
	if olen == 0 {
		return nil, nil
	}
	out, ok := p.mod.Memory().Read(optr, olen)
	if !ok {
		return nil, fmt.Errorf("output [%d,+%d) out of range", optr, olen)
	}
	return out, nil
}

func (p *plugin) decide(tb testing.TB, in *abi.Input) abi.Output {
	tb.Helper()
	raw, err := p.evaluate(context.Background(), input(in))
	if err != nil {
		tb.Fatal(err)
	}
	if raw == nil {
		tb.Fatalf("out_len 0; stderr: %s", p.stderr.String())
	}
	var out abi.Output
	if err := abi.DecodeOutputCompact(raw, &out); err != nil {
		tb.Fatalf("decode output %s: %v", raw, err)
	}
	return out
}

var now = time.Date(2026, 11, 27, 23, 30, 0, 0, time.UTC) // 00:30 in Paris

func event(typ string, data map[string]string) abi.Input {
	return abi.Input{
		ABI: abi.Version, Now: now,
		Event: abi.Event{ID: "evt-1", Workspace: "acme", User: "u-42", Type: typ, Title: "Title", Body: "Body",
			Data: data, Priority: "high", OccurredAt: now, ExpiresAt: now.Add(10 * time.Hour)},
		Baseline:  abi.Baseline{Verdict: "deliver", Reason: "enabled"},
		Workspace: abi.Workspace{Settings: map[string]string{typ: "enabled"}},
		User: abi.User{
			Preferences: map[string]bool{typ: true},
			Devices:     []abi.Device{{ID: "d1", Platform: "ios", App: "demo"}},
			Recent:      map[string]abi.Recent{typ: {M1: 1, M10: 1, H1: 1}},
		},
	}
}

func TestPoliciesWasm(t *testing.T) {
	type check func(t *testing.T, out abi.Output)
	verdict := func(v, reason string) check {
		return func(t *testing.T, out abi.Output) {
			if out.Verdict != v || out.Reason != reason {
				t.Errorf("got %s/%q, want %s/%q", out.Verdict, out.Reason, v, reason)
			}
		}
	}
	tests := []struct {
		policy string
		name   string
		in     abi.Input
		config string // "" = the manifest's
		checks []check
	}{
		{"account_sharing_filter", "internal", event("account_shared", map[string]string{"owner": "bob@corp.example"}), "",
			[]check{verdict("suppress", "internal_owner")}},
		{"account_sharing_filter", "external", event("account_shared", map[string]string{"owner": "eve@evil.example"}), "",
			[]check{verdict("allow", "")}},
		{"new_device_escalation", "unusual", event("identity_verification", map[string]string{"country": "BR"}), `{"usual":{"u-42":["FR"]},"level":"critical"}`,
			[]check{verdict("allow", "unusual_country"), func(t *testing.T, out abi.Output) {
				if *out.Set.Title != "New sign-in from BR — was this you?" || *out.Set.InterruptionLevel != "critical" {
					t.Errorf("set %+v", out.Set)
				}
			}}},
		{"new_device_escalation", "manifest default", event("new_trusted_device", map[string]string{"country": "US"}), "",
			[]check{verdict("allow", "")}},
		{"otp_redaction", "redacts", event("otp_received", map[string]string{"code": "482913", "account": "github"}), "",
			[]check{verdict("allow", "otp_redacted"), func(t *testing.T, out abi.Output) {
				if *out.Set.Body != "Tap to view your code for github" {
					t.Errorf("body %q", *out.Set.Body)
				}
			}}},
		{"push_bombing_guard", "warning", func() abi.Input {
			in := event("identity_verification", nil)
			in.Baseline.Enforced = true
			in.User.Recent["identity_verification"] = abi.Recent{M10: 6}
			return in
		}(), "", []check{verdict("suppress", "push_bombing_guard"), func(t *testing.T, out abi.Output) {
			if n := out.Notice; n == nil || n.Title != "Repeated sign-in requests blocked" || n.Data["warning"] != "push_bombing" || out.Set != nil {
				t.Errorf("notice %+v set %+v", n, out.Set)
			}
		}}},
		{"push_bombing_guard", "suppress", func() abi.Input {
			in := event("identity_verification", nil)
			in.User.Recent["identity_verification"] = abi.Recent{M10: 7}
			return in
		}(), "", []check{verdict("suppress", "push_bombing_guard"), func(t *testing.T, out abi.Output) {
			if out.Notice != nil {
				t.Errorf("a second notice %+v", out.Notice)
			}
		}}},
		{"quiet_hours", "defers at night in Paris", event("account_shared", nil), "",
			[]check{verdict("defer", "quiet_hours"), func(t *testing.T, out abi.Output) {
				if want := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC); !out.DeferUntil.Equal(want) {
					t.Errorf("defer_until %v, want %v", out.DeferUntil, want)
				}
			}}},
		{"quiet_hours", "mfa passes", event("identity_verification", nil), "",
			[]check{verdict("allow", "")}},
	}
	// Each policy's own module, then the bundle of all five (policies/all,
	// what make policies installs), selected by config.policy.
	for _, module := range []string{"own", "all"} {
		plugins := map[string]*plugin{}
		for _, tc := range tests {
			p := plugins[tc.policy]
			if p == nil {
				name := tc.policy
				if module == "all" {
					name = "all"
				}
				p = load(t, name) // closed when the whole test ends
				plugins[tc.policy] = p
			}
			t.Run(module+"/"+tc.policy+"/"+tc.name, func(t *testing.T) {
				in := tc.in
				in.Config = manifestConfig(t, tc.policy)
				if tc.config != "" {
					in.Config = []byte(tc.config)
					if module == "all" {
						in.Config = []byte(`{"policy":"` + tc.policy + `",` + tc.config[1:])
					}
				}
				out := p.decide(t, &in)
				for _, c := range tc.checks {
					c(t, out)
				}
			})
		}
	}
}

func TestWasmFailures(t *testing.T) {
	p := load(t, "push_bombing_guard")
	ctx := context.Background()
	for _, tc := range []struct{ name, doc, stderr string }{
		{"garbage input", `{"abi":1,`, "decode input"},
		{"bad config", string(input(&abi.Input{ABI: 1, Config: []byte(`{"max":0}`)})), "max: 0 must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.stderr.Reset()
			out, err := p.evaluate(ctx, []byte(tc.doc))
			if err != nil || out != nil {
				t.Fatalf("got %q, %v; want out_len 0", out, err)
			}
			if !strings.Contains(p.stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want %q", p.stderr.String(), tc.stderr)
			}
		})
	}
	// The instance still works after a refused input, with a bigger buffer.
	in := event("identity_verification", map[string]string{"pad": strings.Repeat("x", 100_000)})
	if out := p.decide(t, &in); out.Verdict != "allow" {
		t.Errorf("got %+v", out)
	}
}

// BenchmarkWasmEvaluate measures one relay_evaluate per op, as the host
// runs it: deadline switch on, a per-call context with a timeout.
func BenchmarkWasmEvaluate(b *testing.B) {
	inputs := map[string]abi.Input{
		"account_sharing_filter": event("account_shared", map[string]string{"owner": "bob@corp.example", "resource": "vault/prod"}),
		"new_device_escalation":  event("identity_verification", map[string]string{"country": "BR", "ip": "203.0.113.9"}),
		"otp_redaction":          event("otp_received", map[string]string{"code": "482913", "account": "github", "ip": "203.0.113.9"}),
		"push_bombing_guard":     event("identity_verification", map[string]string{"ip": "203.0.113.9"}),
		"quiet_hours":            event("account_shared", map[string]string{"owner": "eve@evil.example"}),
	}
	for _, name := range names {
		for _, cod := range []bool{true, false} {
			variant := "deadline"
			if !cod {
				variant = "nodeadline"
			}
			b.Run(name+"/"+variant, func(b *testing.B) {
				p := loadWith(b, name, cod)
				in := inputs[name]
				in.Config = manifestConfig(b, name)
				doc := input(&in)
				if _, err := p.evaluate(context.Background(), doc); err != nil { // warm: config parse
					b.Fatal(err)
				}
				b.SetBytes(int64(len(doc)))
				cpu := startCPU()
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					out, err := p.evaluate(ctx, doc)
					cancel()
					if err != nil || out == nil {
						b.Fatal(err, p.stderr.String())
					}
				}
				cpu.report(b)
			})
		}
	}
}

// cpuClock measures the process's CPU time, which, unlike ns/op, a busy
// machine does not inflate much.
type cpuClock struct{ start time.Duration }

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBundleNeedsPolicy: the bundle refuses a config that names no policy
// of it, with the reason on stderr.
func TestBundleNeedsPolicy(t *testing.T) {
	p := load(t, "all")
	for _, cfg := range []string{`{"body":"x"}`, `{"policy":"nope"}`, `{"policy":1}`} {
		in := event("otp_received", nil)
		in.Config = []byte(cfg)
		raw, err := p.evaluate(context.Background(), input(&in))
		if err != nil || raw != nil {
			t.Fatalf("%s: %s %v", cfg, raw, err)
		}
		if !strings.Contains(p.stderr.String(), "config") {
			t.Fatalf("%s: stderr %q", cfg, p.stderr.String())
		}
	}
}
