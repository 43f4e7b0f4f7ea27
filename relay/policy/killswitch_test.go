package policy

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

// callTree returns a guest whose relay_evaluate makes 2^depth calls without
// a single loop: f(n) = n == 0 ? 0 : f(n-1) + f(n-1), as an acyclic chain
// of functions f_depth ... f_0 (no recursion either).
func callTree(depth int) []byte {
	m := wasmtest.ABIModule(1)
	// Functions 0, 1 are ABI; evaluate is 2; f_0 is 3, f_k is 3+k.
	m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.Call(uint32(3+depth)), []byte{wasmtest.OpDrop}, wasmtest.I64Const(0))
	m.Func("", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(1))
	for k := 1; k <= depth; k++ {
		m.Func("", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.Call(uint32(3+k-1)), wasmtest.Call(uint32(3+k-1)), []byte{wasmtest.OpI32Add})
	}
	return m.Bytes()
}

// mutualTree is the recursive variant: g(n) = n == 0 ? 1 : g(n-1) + g(n-1).
func mutualTree(depth int32) []byte {
	m := wasmtest.ABIModule(1)
	m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.I32Const(depth), wasmtest.Call(3), []byte{wasmtest.OpDrop}, wasmtest.I64Const(0))
	m.Func("", wasmtest.I32T, wasmtest.I32T, nil,
		wasmtest.LocalGet(0), []byte{wasmtest.OpI32Eqz, wasmtest.OpIf, wasmtest.BlockEmpty}, wasmtest.I32Const(1), []byte{wasmtest.OpReturn, wasmtest.OpEnd},
		wasmtest.LocalGet(0), wasmtest.I32Const(1), []byte{wasmtest.OpI32Sub}, wasmtest.Call(3),
		wasmtest.LocalGet(0), wasmtest.I32Const(1), []byte{wasmtest.OpI32Sub}, wasmtest.Call(3), []byte{wasmtest.OpI32Add})
	return m.Bytes()
}

// factorial recurses n deep and returns n! in the output length.
func factorial() []byte {
	m := wasmtest.ABIModule(1)
	m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.Packed(wasmtest.I32Const(0), wasmtest.Cat(wasmtest.LocalGet(1), wasmtest.Call(3))))
	m.Func("", wasmtest.I32T, wasmtest.I32T, nil,
		wasmtest.LocalGet(0), []byte{wasmtest.OpI32Eqz, wasmtest.OpIf, wasmtest.BlockEmpty}, wasmtest.I32Const(1), []byte{wasmtest.OpReturn, wasmtest.OpEnd},
		wasmtest.LocalGet(0), wasmtest.LocalGet(0), wasmtest.I32Const(1), []byte{wasmtest.OpI32Sub}, wasmtest.Call(3), []byte{0x6c}) // i32.mul
	return m.Bytes()
}

func TestGuardedRecursionStillWorks(t *testing.T) {
	e := openEngine(t, Options{})
	p := mustLoad(t, e, "fact", factorial())
	for n, want := range map[int]int{1: 1, 3: 6, 5: 120} {
		out, err := p.EvaluateRaw(context.Background(), bytes.Repeat([]byte("x"), n))
		if err != nil || len(out) != want {
			t.Fatalf("%d!: %d bytes, %v", n, len(out), err)
		}
	}
}

// TestKillSwitch: an infinite loop, a loop-free call tree of 2^40 calls, a
// recursive tree and unbounded recursion all end by the deadline (plus 10%
// and a little scheduling slack), with no WithCloseOnContextDone.
func TestKillSwitch(t *testing.T) {
	const timeout = 100 * time.Millisecond
	e := openEngine(t, Options{Timeout: timeout})
	loop := func() []byte {
		m := wasmtest.ABIModule(1)
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, []byte{wasmtest.OpLoop, wasmtest.BlockEmpty, wasmtest.OpBr, 0, wasmtest.OpEnd}, wasmtest.I64Const(0))
		return m.Bytes()
	}()
	recursion := func() []byte {
		m := wasmtest.ABIModule(1)
		m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, wasmtest.Call(3), wasmtest.I64Const(0))
		m.Func("", wasmtest.NoT, wasmtest.NoT, nil, wasmtest.Call(3))
		return m.Bytes()
	}()
	for _, tc := range []struct {
		name string
		wasm []byte
		kind FailureKind
	}{
		{"infinite loop", loop, KindTimeout},
		{"call tree 2^40", callTree(40), KindTimeout},
		{"recursive tree 2^40", mutualTree(40), KindTimeout},
		{"unbounded recursion", recursion, KindStackOverflow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustLoad(t, e, "x", tc.wasm)
			defer p.Close(context.Background())
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			start, cpu0 := time.Now(), threadCPU()
			_, err := p.EvaluateRaw(context.Background(), []byte("{}"))
			took, cpu := time.Since(start), threadCPU()-cpu0
			var pe *Error
			if !errors.As(err, &pe) || pe.Kind != tc.kind {
				t.Fatalf("got %v, want kind %s", err, tc.kind)
			}
			t.Logf("%s: %s after %v, %v CPU (deadline %v)", tc.name, pe.Kind, took, cpu, timeout)
			// The guest runs on this thread: the CPU it used is what the
			// kill switch bounds (wall time also counts the time other
			// processes on this shared machine held the cores).
			if limit := timeout + timeout/10 + 25*time.Millisecond; cpu > limit {
				t.Errorf("used %v of CPU, more than %v", cpu, limit)
			}
		})
	}
}

// TestCallerCancelEndsGuest: the caller giving up ends a running guest too.
func TestCallerCancelEndsGuest(t *testing.T) {
	e := openEngine(t, Options{Timeout: 10 * time.Second})
	p := mustLoad(t, e, "tree", callTree(40))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, err := p.EvaluateRaw(ctx, []byte("{}"))
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

// TestUnanalysableModuleRefused: a module the rewrite cannot analyse is
// refused at load, naming why, never run unguarded.
func TestUnanalysableModuleRefused(t *testing.T) {
	e := openEngine(t, Options{})
	// An atomic instruction (threads proposal): outside what the rewrite
	// decodes.
	m := wasmtest.ABIModule(1)
	m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil, []byte{0xfe, 0x03, 0x00}, wasmtest.I64Const(0))
	reserved := wasmtest.NewModule()
	reserved.ImportFunc("edgerelay_guard", "check", wasmtest.I32T, wasmtest.I32T)
	reserved.Memory(1, -1)
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"unknown instruction", m.Bytes(), "refused: cannot analyse module: function 2: unsupported instruction 0xfe"},
		{"garbage", []byte("not wasm"), "refused: cannot analyse module: not a WebAssembly 1.0 binary"},
		{"reserved import", reserved.Bytes(), `the module "edgerelay_guard" is reserved`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.Load("x", tc.wasm)
			if err == nil {
				p.Close(context.Background())
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
