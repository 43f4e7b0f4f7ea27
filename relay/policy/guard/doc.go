// Package guard rewrites a WebAssembly module at load time so that the host
// can stop any call into it: the kill switch of relay/policy.
//
// Instrument decodes every function body and adds:
//
//   - Fuel. A new mutable global counts down at every function entry and
//     every loop header, by an upper bound of the instructions the function
//     can run before its next count (the instructions after that point,
//     plus the whole work of the small loop-free functions it calls, which
//     do not count themselves). When the fuel goes below zero the guest
//     calls the host function Module.Func (argument ReasonFuel), which
//     checks the wall-clock deadline and either ends the call (by panicking,
//     which wazero turns into an error) or returns new fuel. So the host
//     runs at most every Fuel instructions of guest work, and nothing the
//     guest does between two checks is unbounded: loops, call trees and
//     recursion all pass a count. This replaces wazero's
//     WithCloseOnContextDone, which leaves native code at every loop
//     back-edge (wazero #2466) and does not see loop-free call trees.
//   - A depth limit. Every function on a call-graph cycle is wrapped: the
//     wrapper counts nested calls in a second global and calls the host with
//     ReasonDepth past MaxDepth, so unbounded recursion ends in
//     microseconds instead of growing wazero's stack to 400 MB.
//
// The rewrite fails closed: a module it cannot fully analyse (an
// instruction it does not know, an index out of range, a section out of
// order, a trailing byte, an import of the guard's own module) is refused
// with an *Error naming the reason, never returned unguarded. The only
// import the rewritten module gains is Module.Func; the host must provide
// it.
//
// The package only transforms bytes: it runs nothing and holds no state.
package guard
