package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/policy/guard"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

// shippedPolicies are the policies under policies/, in manifest order.
var shippedPolicies = []string{"account_sharing_filter", "push_bombing_guard", "new_device_escalation", "otp_redaction", "quiet_hours"}

var (
	shippedOnce sync.Once
	shippedWasm map[string][]byte
	shippedErr  error
)

// shipped builds the shipped policies once (relying on the go build cache)
// and returns name's module and its shipped manifest.
func shipped(tb testing.TB, name string) ([]byte, *Manifest) {
	tb.Helper()
	shippedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "policybench")
		if err != nil {
			shippedErr = err
			return
		}
		defer os.RemoveAll(dir)
		shippedWasm = make(map[string][]byte)
		for _, n := range shippedPolicies {
			b, err := buildGoPlugin(dir, "../../policies/"+n+"/wasm")
			if err != nil {
				shippedErr = err
				return
			}
			shippedWasm[n] = b
		}
	})
	if shippedErr != nil {
		tb.Fatal(shippedErr)
	}
	path := filepath.Join("../../policies", name, name+".hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := ParseManifest(path, src)
	if err != nil {
		tb.Fatal(err)
	}
	return shippedWasm[name], m
}

// policyInput is a realistic input for a shipped policy: an event of a type
// it judges, with its shipped config.
func policyInput(name string, m *Manifest) *abi.Input {
	typ := relay.TypeAccountShared
	if len(m.Types) > 0 {
		typ = m.Types[0]
	}
	req := testRequest(typ, false)
	ev := req.Event
	ev.Workspace, ev.User = "acme", "u-42"
	switch name {
	case "otp_redaction":
		ev.Title, ev.Body = "Code 482913 for GitHub", "Use 482913 to sign in to github.com"
		ev.Data = map[string]string{"code": "482913", "account": "github", "ip": "203.0.113.9"}
	case "account_sharing_filter":
		ev.Title, ev.Body = "Vault shared with you", "alice shared vault-7"
		ev.Data = map[string]string{"owner": "alice@partner.example", "item": "vault-7"}
	default:
		ev.Title, ev.Body = "Sign-in request", "Approve sign-in from 203.0.113.9?"
		ev.Data = map[string]string{"ip": "203.0.113.9", "country": "FR", "device": "Pixel 9"}
	}
	s := NewSet(SetOptions{}, nil)
	in := s.input(req, t0)
	withSettings(in, req)
	in.Config = m.Config
	return in
}

// BenchmarkShippedPolicies measures one evaluation of each shipped policy
// through the full path (semaphore, pool, kill switch, input encode, guest
// call, output decode) with the kill switch armed ("armed") and with no
// instrumentation at all ("bare": no rewrite, no deadline), and reports the
// per-call p50 and p99 besides the mean. "trivial" is a hand-written module
// returning a constant: the host's own overhead per call.
func BenchmarkShippedPolicies(b *testing.B) {
	names := append([]string{"trivial"}, shippedPolicies...)
	for _, name := range names {
		for _, mode := range []string{"armed", "bare"} {
			b.Run(name+"/"+mode, func(b *testing.B) {
				var wasm []byte
				var in *abi.Input
				if name == "trivial" {
					wasm = wasmtest.ConstPlugin(`{"verdict":"allow"}`)
					in = policyInput(name, &Manifest{})
				} else {
					var m *Manifest
					wasm, m = shipped(b, name)
					in = policyInput(name, m)
				}
				e := openEngine(b, Options{Timeout: time.Second, noDeadline: mode == "bare"})
				p := mustLoad(b, e, name, wasm)
				ctx := context.Background()
				// The input the chain sends: only the sections the
				// plugin reads.
				secs, err := p.InputSections(ctx, in.Event.Workspace, in.Config)
				if err != nil {
					b.Fatal(err)
				}
				for range 100 { // warm up: config parse, guest heap
					if _, err := p.evaluateInput(ctx, in, secs); err != nil {
						b.Fatal(err)
					}
				}
				work := 0.0
				if mode == "armed" {
					work = workPerCall(b, func() error {
						_, err := p.evaluateInput(ctx, in, secs)
						return err
					})
				}
				lat := make([]time.Duration, 0, 1<<16)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu0 := threadCPU()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					t := time.Now()
					if _, err := p.evaluateInput(ctx, in, secs); err != nil {
						b.Fatal(err)
					}
					if len(lat) < cap(lat) {
						lat = append(lat, time.Since(t))
					}
				}
				b.StopTimer()
				cpu := threadCPU() - cpu0
				slices.Sort(lat)
				p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
				b.ReportMetric(float64(p50.Nanoseconds())/1000, "p50-µs")
				// The fastest call: what a call costs on a quiet machine
				// (this one is shared).
				b.ReportMetric(float64(lat[0].Nanoseconds())/1000, "min-µs")
				b.ReportMetric(float64(p99.Nanoseconds())/1000, "p99-µs")
				// CPU time of this thread per call: what the call costs
				// whatever else the machine is doing.
				b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
				if work > 0 {
					b.ReportMetric(work, "work/op")
				}
				if testing.Verbose() {
					fmt.Fprintf(os.Stderr, "%-24s %-5s p50 %8.2f µs  p99 %8.2f µs\n", name, mode,
						float64(p50.Nanoseconds())/1000, float64(p99.Nanoseconds())/1000)
				}
			})
		}
	}
}

// workPerCall returns the work one call of call does, in the kill switch's
// fuel units (each count's weight is an upper bound on the instructions
// its block runs): a measure of a guest's cost that does not move with the
// machine's speed or load. The grant is lowered to 64 while it counts.
func workPerCall(b *testing.B, call func() error) float64 {
	const grant, calls = 64, 200
	fuelGrant.Store(grant)
	defer fuelGrant.Store(guard.Fuel)
	for range 2 { // use up the fuel granted before
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	checks := fuelChecks.Load()
	for range calls {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	return float64((fuelChecks.Load()-checks)*grant) / calls
}

// threadCPU returns the calling thread's user+system CPU time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWorkspaceSwitch measures the two ways to keep one workspace's
// guest state from another's events, for a shipped (standard-Go) policy:
// "new-instance" is what the engine does when a workspace has no idle
// instance of its own (instantiate and run _initialize); "memory-reset" is
// the floor of the alternative, restoring the instance's linear memory
// from a snapshot taken after _initialize (a copy of the whole memory; a
// sound reset would also need the mutable globals and tables restored and
// Go's runtime to accept its memory shrinking back, which it does not
// expect). The per-workspace instance costs only on a workspace's first
// event per idle period; a reset would cost on every switch.
func BenchmarkWorkspaceSwitch(b *testing.B) {
	wasm, m := shipped(b, "quiet_hours")
	in := policyInput("quiet_hours", m)
	e := openEngine(b, Options{Timeout: time.Second})
	p := mustLoad(b, e, "quiet_hours", wasm)
	ctx := context.Background()
	b.Run("new-instance", func(b *testing.B) {
		for b.Loop() {
			inst, err := p.newInstance(ctx)
			if err != nil {
				b.Fatal(err)
			}
			p.closeInstance(inst)
		}
	})
	b.Run("memory-reset", func(b *testing.B) {
		inst, err := p.newInstance(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer p.closeInstance(inst)
		inst.ws = in.Event.Workspace
		if _, err := p.evaluate(ctx, in.Event.Workspace, abi.AppendInputCompact(nil, in), nil); err != nil {
			b.Fatal(err)
		}
		view, _ := inst.mem.Read(0, inst.mem.Size())
		snap := append([]byte(nil), view...)
		b.SetBytes(int64(len(snap)))
		for b.Loop() {
			inst.mem.Write(0, snap)
		}
	})
}

// BenchmarkCodeFootprint shows what the per-policy benchmark hides: a
// standard-Go guest touches hundreds of KiB of its own machine code per
// call, and the relay alternates between plugins (and its own work), so in
// the daemon calls run with cold caches. ns/op is per call. "one" repeats
// one plugin; "same-code" alternates five plugins sharing one compiled
// module; "same-source" alternates five copies of one module compiled
// separately (identical code at five addresses); "shipped" alternates the
// five shipped policies.
func BenchmarkCodeFootprint(b *testing.B) {
	e := openEngine(b, Options{Timeout: time.Second})
	w, m := shipped(b, "quiet_hours")
	in := policyInput("quiet_hours", m)
	var same, copies, diff []*Plugin
	var ins []*abi.Input
	for i := 0; i < 5; i++ {
		same = append(same, mustLoad(b, e, fmt.Sprint("same", i), w))
		// A custom section makes each copy a different module.
		c := append(append([]byte(nil), w...), 0x00, 0x04, 0x02, 'x', byte('0'+i), 'p')
		copies = append(copies, mustLoad(b, e, fmt.Sprint("copy", i), c))
	}
	for _, n := range shippedPolicies {
		w, m := shipped(b, n)
		diff = append(diff, mustLoad(b, e, n, w))
		ins = append(ins, policyInput(n, m))
	}
	ctx := context.Background()
	run := func(b *testing.B, ps []*Plugin, in func(int) *abi.Input) {
		for range 20 {
			for i, p := range ps {
				if _, err := p.Evaluate(ctx, in(i)); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			k := i % len(ps)
			if _, err := ps[k].Evaluate(ctx, in(k)); err != nil {
				b.Fatal(err)
			}
		}
	}
	same0 := func(int) *abi.Input { return in }
	b.Run("one", func(b *testing.B) { run(b, same[:1], same0) })
	b.Run("same-code", func(b *testing.B) { run(b, same, same0) })
	b.Run("same-source", func(b *testing.B) { run(b, copies, same0) })
	b.Run("shipped", func(b *testing.B) { run(b, diff, func(i int) *abi.Input { return ins[i] }) })
	// What make policies installs: the bundle of all five (policies/all)
	// under each name, one compiled module.
	dir := b.TempDir()
	bundle, err := buildGoPlugin(dir, "../../policies/all/wasm")
	if err != nil {
		b.Fatal(err)
	}
	var bundled []*Plugin
	for _, n := range shippedPolicies {
		bundled = append(bundled, mustLoad(b, e, "bundle-"+n, bundle))
	}
	b.Run("shipped-bundle", func(b *testing.B) { run(b, bundled, func(i int) *abi.Input { return ins[i] }) })
}

// BenchmarkBundlePair approximates a plugin call inside relayd under the
// end-to-end bench: the bundle make policies installs (policies/all, one
// module for the five), otp_redaction and new_device_escalation called
// alternately (the bench's two event types, one guest call each). "loop"
// calls back to back; "flushed" walks 4 MiB of unrelated memory between
// calls (relayd's HTTP, TLS and bbolt work between two guest calls), so the
// guest's code and data are cold, as in the daemon. call-µs and p50-µs
// count only the calls; ns/op includes the flushing.
func BenchmarkBundlePair(b *testing.B) {
	bundle, err := buildGoPlugin(b.TempDir(), "../../policies/all/wasm")
	if err != nil {
		b.Fatal(err)
	}
	e := openEngine(b, Options{Timeout: time.Second})
	var ps []*Plugin
	var ins []*abi.Input
	var secs []abi.Sections
	ctx := context.Background()
	for _, n := range []string{"otp_redaction", "new_device_escalation"} {
		_, m := shipped(b, n)
		p := mustLoad(b, e, n, bundle)
		in := policyInput(n, m)
		if n == "new_device_escalation" {
			in.Event.Type = relay.TypeNewTrustedDevice
		}
		s, err := p.InputSections(ctx, in.Event.Workspace, in.Config)
		if err != nil {
			b.Fatal(err)
		}
		ps, ins, secs = append(ps, p), append(ins, in), append(secs, s)
	}
	junk := make([]byte, 4<<20)
	for _, mode := range []string{"loop", "flushed"} {
		b.Run(mode, func(b *testing.B) {
			for i := range 100 {
				if _, err := ps[i%2].evaluateInput(ctx, ins[i%2], secs[i%2]); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, 1<<16)
			var total time.Duration
			var sink byte
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0 := threadCPU()
			for i := 0; b.Loop(); i++ {
				if mode == "flushed" {
					for j := 0; j < len(junk); j += 64 {
						junk[j]++
						sink += junk[j]
					}
				}
				t := time.Now()
				if _, err := ps[i%2].evaluateInput(ctx, ins[i%2], secs[i%2]); err != nil {
					b.Fatal(err)
				}
				d := time.Since(t)
				total += d
				if len(lat) < cap(lat) {
					lat = append(lat, d)
				}
			}
			cpu := threadCPU() - cpu0
			_ = sink
			slices.Sort(lat)
			if mode == "loop" { // CPU time of the calls: what they cost however busy the machine
				b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
			}
			b.ReportMetric(float64(total.Nanoseconds())/1000/float64(b.N), "call-µs")
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-µs")
		})
	}
}
