package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

func openEngine(tb testing.TB, opts Options) *Engine {
	tb.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 300 * time.Millisecond
	}
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = 32 << 20
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	e, err := Open(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			tb.Error(err)
		}
	})
	return e
}

func mustLoad(tb testing.TB, e *Engine, name string, wasm []byte) *Plugin {
	tb.Helper()
	p, err := e.Load(name, wasm)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestEvaluateEcho(t *testing.T) {
	e := openEngine(t, Options{})
	p := mustLoad(t, e, "echo", wasmtest.EchoPlugin())
	if len(p.Hash()) != 64 {
		t.Fatalf("hash %q", p.Hash())
	}
	for _, in := range []string{`{"a":1}`, strings.Repeat("x", 3000), `{}`} {
		out, err := p.EvaluateRaw(context.Background(), []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != in {
			t.Fatalf("echo: got %d bytes, want %d", len(out), len(in))
		}
	}
	if s := p.Stats(); s.Calls != 3 || s.Failures != 0 || s.Instances != 1 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := p.EvaluateRaw(context.Background(), nil); err == nil {
		t.Fatal("empty input accepted")
	}
}

func TestLoadRejects(t *testing.T) {
	e := openEngine(t, Options{MemoryLimit: 16 << 16})
	foreign := func() []byte {
		m := wasmtest.NewModule()
		m.ImportFunc("env", "foo", wasmtest.NoT, wasmtest.NoT)
		m.Memory(1, -1)
		m.Func("relay_abi_version", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
		m.Func("relay_alloc", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.I32Const(1024))
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(0))
		return m.Bytes()
	}
	missing := func() []byte {
		return wasmtest.ABIModule(1).Bytes()
	}
	badSig := func() []byte {
		m := wasmtest.ABIModule(1)
		m.Func("relay_evaluate", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.I32Const(0))
		return m.Bytes()
	}
	noMemory := func() []byte {
		m := wasmtest.NewModule()
		m.Func("relay_abi_version", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
		m.Func("relay_alloc", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.I32Const(1024))
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(0))
		return m.Bytes()
	}
	bigMin := func() []byte {
		m := wasmtest.NewModule().Memory(100, -1)
		m.Func("relay_abi_version", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
		m.Func("relay_alloc", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.I32Const(1024))
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(0))
		return m.Bytes()
	}
	initTrap := func() []byte {
		m := wasmtest.ABIModule(1)
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(0))
		m.Func("_initialize", wasmtest.NoT, wasmtest.NoT, nil, []byte{wasmtest.OpUnreachable})
		return m.Bytes()
	}
	tests := []struct {
		name string
		wasm []byte
		want string
	}{
		{"garbage", []byte("not wasm at all"), "load policy x: refused: cannot analyse module: not a WebAssembly 1.0 binary"},
		{"truncated", wasmtest.EchoPlugin()[:40], "load policy x: refused: cannot analyse module: section 7: unexpected end"},
		{"missing export", missing(), `plugin x: missing export "relay_evaluate"`},
		{"wrong abi", func() []byte {
			m := wasmtest.ABIModule(2)
			m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(0))
			return m.Bytes()
		}(), "unsupported ABI version 2"},
		{"unknown encoding", func() []byte {
			m := wasmtest.ABIModule(1)
			m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(0))
			m.Func("relay_encoding", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(7))
			return m.Bytes()
		}(), "relay_encoding returned 7, want 0 (JSON) or 1 (compact)"},
		{"encoding signature", func() []byte {
			m := wasmtest.ABIModule(1)
			m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(0))
			m.Func("relay_encoding", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.I32Const(1))
			return m.Bytes()
		}(), `export "relay_encoding" has signature (i32) -> (i32), want () -> (i32)`},
		{"input sections signature", func() []byte {
			m := wasmtest.ABIModule(1)
			m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(0))
			m.Func("relay_input_sections", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
			return m.Bytes()
		}(), `export "relay_input_sections" has signature () -> (i32), want (i32,i32) -> (i32)`},
		{"foreign import", foreign(), "plugin x imports env.foo: only wasi_snapshot_preview1 is allowed"},
		{"bad signature", badSig(), `export "relay_evaluate" has signature (i32) -> (i32), want (i32,i32) -> (i64)`},
		{"no memory", noMemory(), `missing export "memory"`},
		{"memory min over limit", bigMin(), "min 100 pages (6 Mi) over limit of 16 pages"},
		{"initialize traps", initTrap(), "instantiate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.Load("x", tc.wasm)
			if err == nil {
				p.Close(context.Background())
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			t.Log(err)
		})
	}
	e.mu.Lock()
	n := len(e.plugins)
	e.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d plugins tracked after failed loads", n)
	}
}

// misbehaving returns hand-built guests that fail in each way, with the
// kind of failure expected.
func misbehaving() []struct {
	name string
	wasm []byte
	in   string
	kind FailureKind
} {
	ev := func(code ...[]byte) []byte {
		m := wasmtest.ABIModule(1)
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, code...)
		return m.Bytes()
	}
	grow := ev([]byte{wasmtest.OpBlock, wasmtest.BlockEmpty, wasmtest.OpLoop, wasmtest.BlockEmpty}, wasmtest.I32Const(1), []byte{wasmtest.OpMemoryGrow, 0x00},
		wasmtest.I32Const(-1), []byte{wasmtest.OpI32Eq, wasmtest.OpBrIf, 1, wasmtest.OpBr, 0, wasmtest.OpEnd, wasmtest.OpEnd, wasmtest.OpUnreachable}, wasmtest.I64Const(0))
	recursion := func() []byte {
		m := wasmtest.ABIModule(1)
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.Call(3), wasmtest.I64Const(0))
		m.Func("", wasmtest.NoT, wasmtest.NoT, nil, wasmtest.Call(3))
		return m.Bytes()
	}()
	exit := func() []byte {
		m := wasmtest.NewModule()
		exitFn := m.ImportFunc("wasi_snapshot_preview1", "proc_exit", wasmtest.I32T, wasmtest.NoT)
		m.Memory(1, -1)
		m.Func("relay_abi_version", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
		m.Func("relay_alloc", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.I32Const(1024))
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I32Const(3), wasmtest.Call(exitFn), wasmtest.I64Const(0))
		return m.Bytes()
	}()
	stderr := func() []byte {
		msg := "guest says: something broke"
		m := wasmtest.NewModule()
		fdWrite := m.ImportFunc("wasi_snapshot_preview1", "fd_write", []byte{wasmtest.TI32, wasmtest.TI32, wasmtest.TI32, wasmtest.TI32}, wasmtest.I32T)
		m.Memory(1, -1)
		m.DataAt(16, []byte{64, 0, 0, 0, byte(len(msg)), 0, 0, 0}).DataAt(64, []byte(msg))
		m.Func("relay_abi_version", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
		m.Func("relay_alloc", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.I32Const(1024))
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I32Const(2), wasmtest.I32Const(16), wasmtest.I32Const(1), wasmtest.I32Const(32), wasmtest.Call(fdWrite),
			[]byte{wasmtest.OpDrop, wasmtest.OpUnreachable})
		return m.Bytes()
	}()
	return []struct {
		name string
		wasm []byte
		in   string
		kind FailureKind
	}{
		{"infinite loop", ev([]byte{wasmtest.OpLoop, wasmtest.BlockEmpty, wasmtest.OpBr, 0, wasmtest.OpEnd}, wasmtest.I64Const(0)), "{}", KindTimeout},
		{"unreachable", ev([]byte{wasmtest.OpUnreachable}), "{}", KindTrap},
		{"stderr", stderr, "{}", KindTrap},
		{"grow to limit", grow, "{}", KindMemory},
		{"output out of bounds", ev(wasmtest.I64Const(0x7fff0000<<32 | 16)), "{}", KindBadOutput},
		{"empty output", ev(wasmtest.I64Const(16 << 32)), "{}", KindBadOutput},
		{"output too large", ev(wasmtest.I64Const(MaxOutputBytes + 1)), "{}", KindBadOutput},
		{"proc_exit", exit, "{}", KindExit},
		{"recursion", recursion, "{}", KindStackOverflow},
		{"call tree", callTree(40), "{}", KindTimeout},
		{"mutual recursion tree", mutualTree(40), "{}", KindTimeout},
	}
}

func TestMisbehavingPlugins(t *testing.T) {
	e := openEngine(t, Options{Timeout: 200 * time.Millisecond, MaxConcurrent: 4})
	good := mustLoad(t, e, "good", wasmtest.ConstPlugin(`{"verdict":"allow"}`))
	type tcase struct {
		name string
		wasm []byte
		in   string
		kind FailureKind
	}
	var cases []tcase
	for _, c := range misbehaving() {
		cases = append(cases, tcase(c))
	}
	if gb := needGo(t); gb != nil {
		for _, c := range []struct {
			in   string
			kind FailureKind
		}{
			{`{"x":"loop"}`, KindTimeout},
			{`{"x":"panic"}`, KindPanic},
			{`{"x":"exit"}`, KindExit},
			// Go keeps its goroutine stacks in linear memory: deep recursion
			// runs into the memory limit or the deadline, whichever first.
			{`{"x":"recurse"}`, KindTimeout},
		} {
			cases = append(cases, tcase{name: "go " + c.in, wasm: gb, in: c.in, kind: c.kind})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustLoad(t, e, "bad", tc.wasm)
			defer p.Close(context.Background())
			// Another plugin keeps evaluating while this one misbehaves.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var goodErr error
			var goodCalls int
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := good.EvaluateRaw(context.Background(), []byte(`{}`)); err != nil {
						goodErr = err
						return
					}
					goodCalls++
				}
			}()
			start := time.Now()
			_, err := p.EvaluateRaw(context.Background(), []byte(tc.in))
			took := time.Since(start)
			close(stop)
			wg.Wait()
			if goodErr != nil {
				t.Fatalf("good plugin failed meanwhile: %v", goodErr)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not *Error", err, err)
			}
			t.Logf("%v after %v (good plugin: %d calls meanwhile)", err, took, goodCalls)
			if pe.Kind != tc.kind && !(tc.in == `{"x":"recurse"}` && (pe.Kind == KindMemory || pe.Kind == KindStackOverflow)) {
				t.Fatalf("kind %s, want %s", pe.Kind, tc.kind)
			}
			wantSentinel := relay.ErrPolicyTrap
			if pe.Kind == KindTimeout {
				wantSentinel = relay.ErrPolicyTimeout
			}
			if !errors.Is(err, wantSentinel) || pe.Plugin != "bad" {
				t.Fatalf("error %v does not match %v or name the plugin", err, wantSentinel)
			}
			if took > 20*e.Timeout() {
				t.Errorf("took %v, deadline %v", took, e.Timeout())
			}
			if s := p.Stats(); s.Failures != 1 || s.Discarded != 1 || s.Instances != 0 {
				t.Fatalf("stats after failure %+v", s)
			}
			if tc.name == "stderr" && !strings.Contains(pe.Stderr, "something broke") {
				t.Fatalf("stderr %q", pe.Stderr)
			}
			if strings.HasPrefix(tc.name, "go ") {
				// The next event gets a fresh instance that works.
				out, err := p.EvaluateRaw(context.Background(), []byte(`{"x":"fine"}`))
				if err != nil || !strings.Contains(string(out), "allow") {
					t.Fatalf("after failure: %s, %v", out, err)
				}
			}
		})
	}
}

// TestMemoryBombHostHeap measures what a standard-Go guest that allocates
// until its 128 MiB limit costs the host, with and without the mmap
// allocator.
func TestMemoryBombHostHeap(t *testing.T) {
	gb := needGo(t)
	for _, noMmap := range []bool{false, true} {
		t.Run(map[bool]string{false: "mmap", true: "default allocator"}[noMmap], func(t *testing.T) {
			if noMmap && testing.Short() {
				t.Skip("slow")
			}
			e := openEngine(t, Options{MemoryLimit: 128 << 20, Timeout: 20 * time.Second, noMmap: noMmap})
			p := mustLoad(t, e, "bomb", gb)
			defer p.Close(context.Background())
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := p.EvaluateRaw(context.Background(), []byte(`{"x":"bomb"}`))
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			var pe *Error
			if !errors.As(err, &pe) || pe.Kind != KindMemory {
				t.Fatalf("error %v, want kind memory", err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s: %v; host allocated %d MiB, heapSys %d -> %d MiB",
				t.Name(), took, alloc>>20, before.HeapSys>>20, after.HeapSys>>20)
			if !noMmap && newMmapAllocator() != nil && alloc > 32<<20 {
				t.Errorf("with the mmap allocator the host allocated %d MiB", alloc>>20)
			}
		})
	}
}

func TestConcurrentEvaluateAndClose(t *testing.T) {
	e := openEngine(t, Options{MaxConcurrent: 2, PoolSize: 2})
	p := mustLoad(t, e, "echo", wasmtest.EchoPlugin())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var okCalls, closedCalls int
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_, err := p.EvaluateRaw(context.Background(), []byte(`{"n":1}`))
				mu.Lock()
				switch {
				case err == nil:
					okCalls++
				case errors.Is(err, relay.ErrClosed):
					closedCalls++
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := okCalls
		mu.Unlock()
		if n > 100 {
			break
		}
		runtime.Gosched()
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if s := p.Stats(); s.Instances != 0 {
		t.Fatalf("instances alive after close: %+v", s)
	}
	t.Logf("ok %d, closed %d", okCalls, closedCalls)
}

func TestSemaphoreHonoursContext(t *testing.T) {
	e := openEngine(t, Options{MaxConcurrent: 1})
	p := mustLoad(t, e, "echo", wasmtest.EchoPlugin())
	e.sem <- struct{}{} // occupy the only slot
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.EvaluateRaw(ctx, []byte(`{}`))
	<-e.sem
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if s := p.Stats(); s.Failures != 0 {
		t.Fatalf("a caller giving up counted as plugin failure: %+v", s)
	}
}

func TestCacheDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	old := filepath.Join(dir, "wazero-v0.0.1-"+runtime.GOARCH+"-"+runtime.GOOS)
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	e := openEngine(t, Options{CacheDir: dir})
	mustLoad(t, e, "echo", wasmtest.EchoPlugin())
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v %v", st.Mode(), err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("old cache not pruned: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 || ents[0].Name() != cacheIndexName || !strings.HasPrefix(ents[1].Name(), "wazero-") {
		t.Fatalf("cache dir entries %v", ents)
	}
}

func TestRing(t *testing.T) {
	r := newRing(8)
	r.Write([]byte("hello"))
	if got := r.Tail(300); got != "hello" {
		t.Fatal(got)
	}
	r.Write([]byte(" world!"))
	if got := r.Tail(300); got != "o world!" {
		t.Fatal(got)
	}
	if got := r.Tail(3); got != "ld!" {
		t.Fatal(got)
	}
	r.Write([]byte("0123456789abc"))
	if got := r.Tail(8); got != "56789abc" {
		t.Fatal(got)
	}
	r.Reset()
	if got := r.Tail(8); got != "" {
		t.Fatal(got)
	}
}

// cacheFiles lists the compiled modules in a compilation cache dir.
func cacheFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	subs, _ := os.ReadDir(dir)
	for _, s := range subs {
		if !s.IsDir() || !strings.HasPrefix(s.Name(), "wazero-") {
			continue
		}
		files, _ := os.ReadDir(filepath.Join(dir, s.Name()))
		for _, f := range files {
			out = append(out, s.Name()+"/"+f.Name())
		}
	}
	return out
}

// TestCachePrunedToLoadedVersions: the compilation cache keeps only the
// versions still loaded, across engine restarts too.
func TestCachePrunedToLoadedVersions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	e := openEngine(t, Options{CacheDir: dir})
	v1 := mustLoad(t, e, "p", wasmtest.ConstPlugin(`{"verdict":"allow","reason":"v1"}`))
	v2 := mustLoad(t, e, "p", wasmtest.ConstPlugin(`{"verdict":"allow","reason":"v2"}`))
	if n := len(cacheFiles(t, dir)); n != 2 {
		ents, _ := os.ReadDir(dir)
		t.Fatalf("%d cached modules after two loads: %v %v", n, cacheFiles(t, dir), ents)
	}
	v1.Close(context.Background())
	if err := e.PruneCache(); err != nil {
		t.Fatal(err)
	}
	if n := len(cacheFiles(t, dir)); n != 1 {
		t.Fatalf("%d cached modules after v1 was unloaded and the cache pruned", n)
	}
	kept := cacheFiles(t, dir)
	// A restart loading v2 from the cache keeps its file.
	e2 := openEngine(t, Options{CacheDir: dir})
	mustLoad(t, e2, "p", wasmtest.ConstPlugin(`{"verdict":"allow","reason":"v2"}`))
	if err := e2.PruneCache(); err != nil {
		t.Fatal(err)
	}
	if got := cacheFiles(t, dir); !slices.Equal(got, kept) {
		t.Fatalf("after restart and prune: %v, want %v", got, kept)
	}
	_ = v2
}

// A module that asks for the compact encoding gets compact input and is
// read as compact output; the same answer in JSON from it is bad output.
func TestCompactEncoding(t *testing.T) {
	e := openEngine(t, Options{Timeout: time.Second})
	in := policyInput("compact", &Manifest{})
	compactPlugin := func(out []byte) []byte {
		m := wasmtest.ABIModule(1).DataAt(16, out)
		m.Func("relay_encoding", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(abi.EncodingCompact))
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I64Const(16<<32|int64(len(out))))
		return m.Bytes()
	}
	suppress := abi.Suppress("compact_says_no")
	p := mustLoad(t, e, "compact", compactPlugin(abi.AppendOutputCompact(nil, &suppress)))
	out, err := p.Evaluate(context.Background(), in)
	if err != nil || out.Verdict != abi.VerdictSuppress || out.Reason != "compact_says_no" {
		t.Fatalf("compact output: %+v, %v", out, err)
	}
	// The input it got is compact: an echo decodes as a compact input.
	echo := wasmtest.ABIModule(1)
	echo.Func("relay_encoding", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(abi.EncodingCompact))
	echo.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.Packed(wasmtest.LocalGet(0), wasmtest.LocalGet(1)))
	ep := mustLoad(t, e, "echo", echo.Bytes())
	raw, err := ep.EvaluateRaw(context.Background(), abi.AppendInputCompact(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	var got abi.Input
	var dec abi.InputDecoder
	if err := dec.DecodeCompact(raw, &got); err != nil || got.Event.ID != in.Event.ID {
		t.Fatalf("echoed input: %+v, %v", got.Event, err)
	}
	jp := mustLoad(t, e, "json", compactPlugin([]byte(`{"verdict":"allow"}`)))
	_, err = jp.Evaluate(context.Background(), in)
	var pe *Error
	if !errors.As(err, &pe) || pe.Kind != KindBadOutput {
		t.Fatalf("JSON from a compact plugin: %v, want bad output", err)
	}
}

// Plugins with identical bytes share one compiled module; it lives until
// the last of them closes.
func TestIdenticalPluginsShareACompiledModule(t *testing.T) {
	e := openEngine(t, Options{Timeout: time.Second})
	wasm := wasmtest.ConstPlugin(`{"verdict":"allow"}`)
	a := mustLoad(t, e, "a", wasm)
	b := mustLoad(t, e, "b", wasm)
	other := mustLoad(t, e, "other", wasmtest.ConstPlugin(`{"verdict":"suppress"}`))
	modules := func() (n, refs int) {
		e.modMu.Lock()
		defer e.modMu.Unlock()
		for _, m := range e.modules {
			n, refs = n+1, refs+m.refs
		}
		return n, refs
	}
	if n, refs := modules(); n != 2 || refs != 3 {
		t.Fatalf("%d modules, %d uses; want 2 modules for 3 plugins", n, refs)
	}
	if a.mod != b.mod || a.mod == other.mod {
		t.Fatal("identical plugins do not share their compiled module")
	}
	ctx := context.Background()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	in := policyInput("b", &Manifest{})
	if out, err := b.Evaluate(ctx, in); err != nil || out.Verdict != abi.VerdictAllow {
		t.Fatalf("b after a closed: %+v, %v", out, err)
	}
	// b needs a new instance now: instantiating from the shared module
	// still works.
	inst, err := b.newInstance(ctx)
	if err != nil {
		t.Fatalf("instantiate b after a closed: %v", err)
	}
	b.closeInstance(inst)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n, refs := modules(); n != 1 || refs != 1 {
		t.Fatalf("after closing a and b: %d modules, %d uses; want other's only", n, refs)
	}
}

// TestIdenticalBytesInstrumentedOnce: a plugin whose bytes a loaded plugin
// already has reuses its module without running the rewrite again. The
// rewrite of the shipped bundle (4.2 MB) allocates about 60 MB, which the
// five policies installed from it used to pay five times at start, setting
// relayd's peak RSS.
func TestIdenticalBytesInstrumentedOnce(t *testing.T) {
	e := openEngine(t, Options{Timeout: time.Second})
	// A padded module, so that its rewrite allocates measurably.
	const pad = 4 << 20
	wasm := append(wasmtest.ConstPlugin(`{"verdict":"allow"}`),
		wasmtest.Section(0, append(wasmtest.Name("padding"), make([]byte, pad)...))...)
	loadAlloc := func(name string) (*Plugin, uint64) {
		t.Helper()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		p := mustLoad(t, e, name, wasm)
		runtime.ReadMemStats(&after)
		return p, after.TotalAlloc - before.TotalAlloc
	}
	a, first := loadAlloc("a")
	if first < pad {
		t.Fatalf("the first load allocated %d bytes, less than the module: the test measures nothing", first)
	}
	b, second := loadAlloc("b")
	if second > pad/4 {
		t.Fatalf("loading the same bytes again allocated %d bytes (the first load %d): instrumented again", second, first)
	}
	if a.mod != b.mod || a.cacheKey != b.cacheKey || b.Hash() != sha256hex(wasm) {
		t.Fatal("identical plugins do not share their module")
	}
	// Once every plugin of those bytes is closed, loading them again
	// instruments and compiles them again (nothing stale is reused).
	ctx := context.Background()
	if err := errors.Join(a.Close(ctx), b.Close(ctx)); err != nil {
		t.Fatal(err)
	}
	c, third := loadAlloc("c")
	if third < pad {
		t.Fatalf("a load after all were closed allocated %d bytes: it reused a released module", third)
	}
	if out, err := c.Evaluate(ctx, policyInput("c", &Manifest{})); err != nil || out.Verdict != abi.VerdictAllow {
		t.Fatalf("c: %+v, %v", out, err)
	}
}
