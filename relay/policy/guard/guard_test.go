package guard

import (
	"bytes"
	"context"
	"errors"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// host is a runtime with the guard host module, counting fuel requests and
// ending a call after limit of them.
type host struct {
	rt     wazero.Runtime
	checks int
	limit  int
}

var errStop = errors.New("stopped by the test host")

func newHost(tb testing.TB) *host {
	tb.Helper()
	ctx := context.Background()
	h := &host{rt: wazero.NewRuntime(ctx), limit: 1 << 30}
	tb.Cleanup(func() { h.rt.Close(ctx) })
	_, err := h.rt.NewHostModuleBuilder(Module).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			if stack[0] == ReasonDepth {
				panic(errors.New("depth"))
			}
			h.checks++
			if h.checks > h.limit {
				panic(errStop)
			}
			stack[0] = Fuel
		}), []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		Export(Func).Instantiate(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, h.rt); err != nil {
		tb.Fatal(err)
	}
	return h
}

func (h *host) run(tb testing.TB, wasm []byte, fn string, args ...uint64) ([]uint64, error) {
	tb.Helper()
	ctx := context.Background()
	out, err := Instrument(wasm)
	if err != nil {
		tb.Fatal(err)
	}
	mod, err := h.rt.Instantiate(ctx, out)
	if err != nil {
		tb.Fatal(err)
	}
	defer mod.Close(ctx)
	return mod.ExportedFunction(fn).Call(ctx, args...)
}

// counter loops n times (its argument) and returns n.
func counter() []byte {
	m := wasmtest.NewModule()
	m.Func("count", wasmtest.I32T, wasmtest.I32T, []byte{0x01, 0x01, wasmtest.TI32}, // one i32 local: i
		[]byte{wasmtest.OpBlock, wasmtest.BlockEmpty, wasmtest.OpLoop, wasmtest.BlockEmpty},
		wasmtest.LocalGet(1), wasmtest.LocalGet(0), []byte{0x4e}, []byte{wasmtest.OpBrIf, 1}, // i >= n: break (i32.ge_s)
		wasmtest.LocalGet(1), wasmtest.I32Const(1), []byte{wasmtest.OpI32Add, wasmtest.OpLocalSet, 1, wasmtest.OpBr, 0, wasmtest.OpEnd, wasmtest.OpEnd},
		wasmtest.LocalGet(1))
	return m.Bytes()
}

func TestFuelCountsLoops(t *testing.T) {
	h := newHost(t)
	res, err := h.run(t, counter(), "count", 10_000_000)
	if err != nil || res[0] != 10_000_000 {
		t.Fatalf("%v %v", res, err)
	}
	// Each iteration costs at most the loop body (about 12 instructions).
	if h.checks < 10_000_000*5/Fuel || h.checks > 10_000_000*20/Fuel+2 {
		t.Fatalf("%d host checks for 10M iterations", h.checks)
	}
	t.Logf("10M iterations: %d host checks", h.checks)
}

func TestFuelEndsEveryKindOfRunaway(t *testing.T) {
	loop := wasmtest.NewModule()
	loop.Func("run", wasmtest.NoT, wasmtest.NoT, nil, []byte{wasmtest.OpLoop, wasmtest.BlockEmpty, wasmtest.OpBr, 0, wasmtest.OpEnd})
	tree := wasmtest.NewModule() // 2^40 calls, no loop, no recursion
	tree.Func("run", wasmtest.NoT, wasmtest.NoT, nil, wasmtest.Call(1+40), []byte{wasmtest.OpDrop})
	tree.Func("", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
	for k := 1; k <= 40; k++ {
		tree.Func("", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.Call(uint32(1+k-1)), wasmtest.Call(uint32(1+k-1)), []byte{wasmtest.OpI32Add})
	}
	rec := wasmtest.NewModule()
	rec.Func("run", wasmtest.NoT, wasmtest.NoT, nil, wasmtest.Call(1))
	rec.Func("", wasmtest.NoT, wasmtest.NoT, nil, wasmtest.Call(1))
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"loop", loop.Bytes(), errStop.Error()},
		{"call tree", tree.Bytes(), errStop.Error()},
		{"recursion", rec.Bytes(), "depth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			h.limit = 3
			_, err := h.run(t, tc.wasm, "run")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestInstrumentKeepsBehaviour(t *testing.T) {
	// Recursion through a wrapper, a table call and exports keep working.
	m := wasmtest.NewModule()
	fact := m.Func("fact", wasmtest.I32T, wasmtest.I32T, nil,
		wasmtest.LocalGet(0), []byte{wasmtest.OpI32Eqz, wasmtest.OpIf, wasmtest.BlockEmpty}, wasmtest.I32Const(1), []byte{wasmtest.OpReturn, wasmtest.OpEnd},
		wasmtest.LocalGet(0), wasmtest.LocalGet(0), wasmtest.I32Const(1), []byte{wasmtest.OpI32Sub}, wasmtest.Call(0), []byte{0x6c})
	_ = fact
	h := newHost(t)
	res, err := h.run(t, m.Bytes(), "fact", 10)
	if err != nil || res[0] != 3628800 {
		t.Fatalf("fact(10) = %v, %v", res, err)
	}
	// A recursive function that leaves by a branch to its own label (not a
	// return) is wrapped instead; deep recursion still ends.
	w := wasmtest.NewModule()
	w.Func("down", wasmtest.I32T, wasmtest.NoT, nil,
		wasmtest.LocalGet(0), []byte{wasmtest.OpI32Eqz, wasmtest.OpBrIf, 0}, wasmtest.LocalGet(0), wasmtest.I32Const(1), []byte{wasmtest.OpI32Sub}, wasmtest.Call(0))
	out, st, err := InstrumentStats(w.Bytes())
	if err != nil || st.Wrapped != 1 || st.Inline != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	_ = out
	if _, err := h.run(t, w.Bytes(), "down", 1000); err != nil {
		t.Fatalf("down(1000): %v", err)
	}
	if _, err := h.run(t, w.Bytes(), "down", MaxDepth+10); err == nil || !strings.Contains(err.Error(), "depth") {
		t.Fatalf("down(MaxDepth+10): %v", err)
	}
	if _, err := h.run(t, m.Bytes(), "fact", MaxDepth+10); err == nil || !strings.Contains(err.Error(), "depth") {
		t.Fatalf("fact(MaxDepth+10): %v", err)
	}
	if _, err := h.run(t, m.Bytes(), "fact", MaxDepth-10); err != nil {
		t.Fatalf("fact(MaxDepth-10): %v", err)
	}
}

func TestRefusals(t *testing.T) {
	body := func(code ...[]byte) []byte {
		m := wasmtest.NewModule()
		m.Func("f", wasmtest.NoT, wasmtest.NoT, nil, code...)
		return m.Bytes()
	}
	reserved := wasmtest.NewModule()
	reserved.ImportFunc(Module, Func, wasmtest.I32T, wasmtest.I32T)
	valid := body()
	tests := []struct {
		name string
		wasm []byte
		want string
	}{
		{"bad magic", []byte("\x00asm\x02\x00\x00\x00"), "not a WebAssembly 1.0 binary"},
		{"atomics", body([]byte{0xfe, 0x03, 0x00}), "function 0: unsupported instruction 0xfe"},
		{"tail call", body([]byte{0x12, 0x00}), "unsupported instruction 0x12"},
		{"global out of range", body([]byte{0x23, 0x00, wasmtest.OpDrop}), "global 0 out of range"},
		{"call out of range", body(wasmtest.Call(1)), "function 1 out of range"},
		// Found by FuzzInstrument: the export would name the fuel counter
		// the rewrite appends, making an invalid module valid.
		{"export of a global out of range", []byte("\x00asm\x01\x00\x00\x00\x07\x05\x01\x01g\x03\x00"), "export of global 0 out of range"},
		{"reserved import", reserved.Bytes(), `"edgerelay_guard" is reserved`},
		{"truncated", valid[:len(valid)-2], "unexpected end"},
		{"trailing bytes in code", append(valid[:len(valid):len(valid)], 0x0a, 0x01, 0x00), "out of order or repeated"},
		{"unknown section", append(valid[:len(valid):len(valid)], 0x0d, 0x00), "unsupported section id 13"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Instrument(tc.wasm)
			var ge *Error
			if !errors.As(err, &ge) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an *Error containing %q", err, tc.want)
			}
		})
	}
}

// TestGoModule instruments a standard-Go module and runs its initializer.
func TestGoModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go module")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "gobad.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "../testdata/gobad")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, st, err := InstrumentStats(wasm)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("go module: %+v, %d -> %d bytes", st, len(wasm), len(got))
	h := newHost(t)
	ctx := context.Background()
	mod, err := h.rt.InstantiateWithConfig(ctx, got, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(ctx)
	if res, err := mod.ExportedFunction("relay_abi_version").Call(ctx); err != nil || res[0] != 1 {
		t.Fatalf("%v %v", res, err)
	}
}

// FuzzInstrument: every module wazero compiles is either instrumented (the
// result compiles and imports the guard) or refused with an *Error; a
// module wazero refuses is never turned into one it accepts; nothing
// panics.
func FuzzInstrument(f *testing.F) {
	m := wasmtest.NewModule()
	m.Func("f", wasmtest.I32T, wasmtest.I32T, nil, wasmtest.LocalGet(0))
	f.Add(m.Bytes())
	f.Add(counter())
	loop := wasmtest.NewModule()
	loop.Func("run", wasmtest.NoT, wasmtest.NoT, nil, []byte{wasmtest.OpLoop, wasmtest.BlockEmpty, wasmtest.OpBr, 0, wasmtest.OpEnd})
	f.Add(loop.Bytes())
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Instrument(b)
		if err != nil {
			var ge *Error
			if !errors.As(err, &ge) {
				t.Fatalf("refused with %T %v, want *Error", err, err)
			}
			return
		}
		// Only what the rewrite accepted reaches wazero (as in the
		// engine): wazero itself runs out of memory on some tiny invalid
		// modules (a type with 2^32 parameters), which the rewrite refuses.
		c, cerr := rt.CompileModule(ctx, b)
		if cerr == nil {
			c.Close(ctx)
		}
		c2, err := rt.CompileModule(ctx, out)
		if cerr != nil {
			if err == nil {
				c2.Close(ctx)
				t.Fatalf("an invalid module (%v) compiles after instrumenting", cerr)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid module no longer compiles after instrumenting: %v", err)
		}
		defer c2.Close(ctx)
		found := false
		for _, fn := range c2.ImportedFunctions() {
			if mod, name, _ := fn.Import(); mod == Module && name == Func {
				found = true
			}
		}
		if !found {
			t.Fatal("instrumented module does not import the guard")
		}
		if bytes.Equal(out, b) {
			t.Fatal("module unchanged")
		}
	})
}
