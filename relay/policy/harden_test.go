package policy

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// callTree returns a guest whose relay_evaluate makes 2^depth calls without
// a single loop: f(n) = n == 0 ? 0 : f(n-1) + f(n-1), as an acyclic chain
// of functions f_depth ... f_0 (no recursion either).
func callTree(depth int) []byte {
	m := abiMod(1)
	// Functions 0, 1 are ABI; evaluate is 2; f_0 is 3, f_k is 3+k.
	m.fn("relay_evaluate", ppT, i64T, nil, call(uint32(3+depth)), []byte{opDrop}, i64c(0))
	m.fn("", noT, i32T, nil, i32c(1))
	for k := 1; k <= depth; k++ {
		m.fn("", noT, i32T, nil, call(uint32(3+k-1)), call(uint32(3+k-1)), []byte{opI32Add})
	}
	return m.bytes()
}

// mutualTree is the recursive variant: g(n) = n == 0 ? 1 : g(n-1) + g(n-1).
func mutualTree(depth int32) []byte {
	m := abiMod(1)
	m.fn("relay_evaluate", ppT, i64T, nil, i32c(depth), call(3), []byte{opDrop}, i64c(0))
	m.fn("", i32T, i32T, nil,
		lget(0), []byte{opI32Eqz, opIf, blockEmpty}, i32c(1), []byte{opReturn, opEnd},
		lget(0), i32c(1), []byte{opI32Sub}, call(3),
		lget(0), i32c(1), []byte{opI32Sub}, call(3), []byte{opI32Add})
	return m.bytes()
}

// factorial recurses n deep and returns n! in the output length.
func factorial() []byte {
	m := abiMod(1)
	m.fn("relay_evaluate", ppT, i64T, nil, packed(i32c(0), cat(lget(1), call(3))))
	m.fn("", i32T, i32T, nil,
		lget(0), []byte{opI32Eqz, opIf, blockEmpty}, i32c(1), []byte{opReturn, opEnd},
		lget(0), lget(0), i32c(1), []byte{opI32Sub}, call(3), []byte{0x6c}) // i32.mul
	return m.bytes()
}

func TestHardenLeavesSimpleModules(t *testing.T) {
	for _, b := range [][]byte{constPlugin(`{"verdict":"allow"}`), echoPlugin(), callTree(3)} {
		out, err := harden(b)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("module changed (err %v)", err)
		}
	}
	// The deep loop-free tree exceeds the budget and is guarded.
	if out, _ := harden(callTree(40)); bytes.Equal(out, callTree(40)) {
		t.Fatal("call tree not guarded")
	}
}

func TestHardenedRecursionStillWorks(t *testing.T) {
	e := openEngine(t, Options{})
	p := mustLoad(t, e, "fact", factorial())
	for n, want := range map[int]int{1: 1, 3: 6, 5: 120} {
		out, err := p.EvaluateRaw(context.Background(), bytes.Repeat([]byte("x"), n))
		if err != nil || len(out) != want {
			t.Fatalf("%d!: %d bytes, %v", n, len(out), err)
		}
	}
	if p.compiled.ExportedFunctions()["relay_evaluate"] == nil {
		t.Fatal("exports lost")
	}
}

// TestDeadlineEscapesClosed shows the holes and their fix: without the
// guards a loop-free call tree ignores the deadline; with them it stops.
func TestDeadlineEscapesClosed(t *testing.T) {
	e := openEngine(t, Options{Timeout: 50 * time.Millisecond})
	ctx := context.Background()
	// Unguarded (compiled directly), a tree of 2^26 calls still runs to the
	// end, far past the 50 ms deadline.
	raw, err := e.rt.CompileModule(ctx, callTree(26))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(ctx)
	mod, err := e.rt.InstantiateModule(ctx, raw, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(ctx)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	start := time.Now()
	_, err = mod.ExportedFunction("relay_evaluate").Call(cctx, 0, 0)
	cancel()
	t.Logf("unguarded 2^26 call tree: returned %v after %v (deadline 5ms)", err, time.Since(start))
	// Guarded, 2^40 calls (hours of work) stop at the deadline.
	p := mustLoad(t, e, "tree", callTree(40))
	start = time.Now()
	_, err = p.EvaluateRaw(ctx, []byte("{}"))
	var pe *Error
	if !errors.As(err, &pe) || pe.Kind != KindTimeout {
		t.Fatalf("guarded tree: %v", err)
	}
	t.Logf("guarded 2^40 call tree: %v after %v", err, time.Since(start))
}

func TestHardenGoModule(t *testing.T) {
	gb := needGo(t)
	secs, err := splitSections(gb[8:])
	if err != nil {
		t.Fatal(err)
	}
	m, err := analyse(secs)
	if err != nil {
		t.Fatal(err)
	}
	loops := 0
	for _, b := range m.bodies {
		if b.entryChecked {
			loops++
		}
	}
	guard := m.pickGuards()
	t.Logf("go module: %d functions, %d checked on entry, %d guarded", len(m.bodies), loops, len(guard))
}

// FuzzHarden: the decoder never panics, and whatever valid module it
// rewrites still compiles.
func FuzzHarden(f *testing.F) {
	for _, b := range [][]byte{constPlugin(`{}`), echoPlugin(), callTree(30), mutualTree(5), factorial()} {
		f.Add(b)
	}
	rt := wazero.NewRuntime(context.Background())
	defer rt.Close(context.Background())
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := harden(b)
		if err != nil || bytes.Equal(out, b) {
			return
		}
		ctx := context.Background()
		if c, err := rt.CompileModule(ctx, b); err == nil {
			c.Close(ctx)
			c2, err := rt.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("valid module no longer compiles after hardening: %v", err)
			}
			c2.Close(ctx)
		}
	})
}
