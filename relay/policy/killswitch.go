package policy

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/edgerelay/edgerelay/relay/policy/guard"
)

// The kill switch. Modules are rewritten at load (package guard) to count
// fuel and to call guard.Module.guard.Func every guard.Fuel instructions of
// work; that host function ends the call once the deadline has passed (or
// the caller gave up) by panicking, which wazero turns into the error
// Call returns. Nothing runs per call but two stores: no goroutine, no
// timer, no context.

// callState is an instance's deadline, read by the guard host function
// through the context the instance is called with.
type callState struct {
	deadline time.Time
	ctx      context.Context // the caller's; nil between calls
}

type callStateKey struct{}

var (
	// errKillSwitch ends a call that ran past its deadline.
	errKillSwitch = errors.New("deadline exceeded: call ended by the kill switch")
	// errCallDepth ends a call whose guarded calls nested too deep.
	errCallDepth = errors.New("call depth exceeded")
	// errNoCallState means a guest was called without a deadline: a bug,
	// refused rather than run unguarded.
	errNoCallState = errors.New("guest called without a deadline")
)

// withCallState returns a context carrying cs for the guard host function.
func withCallState(ctx context.Context, cs *callState) context.Context {
	return context.WithValue(ctx, callStateKey{}, cs)
}

// arm sets the deadline of the next call and the caller's context.
func (cs *callState) arm(ctx context.Context, timeout time.Duration) {
	cs.deadline = time.Now().Add(timeout)
	cs.ctx = ctx
}

// disarm forgets the caller's context once the call is over.
func (cs *callState) disarm() { cs.ctx = nil }

// fuelGrant is the fuel guardCheck hands out: guard.Fuel. Benchmarks
// lower it and count the checks (fuelChecks) to measure the work a call
// does, in the guard's units, whatever the machine's speed (workPerCall).
var (
	fuelGrant  atomic.Uint32
	fuelChecks atomic.Uint64
)

func init() { fuelGrant.Store(guard.Fuel) }

// guardCheck is guard.Func: (reason i32) -> fuel i32.
func guardCheck(ctx context.Context, _ api.Module, stack []uint64) {
	cs, _ := ctx.Value(callStateKey{}).(*callState)
	if cs == nil {
		panic(errNoCallState)
	}
	if uint32(stack[0]) == guard.ReasonDepth {
		panic(errCallDepth)
	}
	if c := cs.ctx; c != nil {
		if done := c.Done(); done != nil {
			select {
			case <-done:
				panic(c.Err())
			default:
			}
		}
	}
	if time.Now().After(cs.deadline) {
		panic(errKillSwitch)
	}
	fuelChecks.Add(1)
	stack[0] = uint64(fuelGrant.Load())
}

// instantiateGuard adds the guard host module to rt.
func instantiateGuard(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(guard.Module).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(guardCheck), []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		Export(guard.Func).
		Instantiate(ctx)
	return err
}
