// Package policy is the WebAssembly host for policy plugins: it owns the
// wazero runtime (Engine), each compiled plugin version and its pool of
// instances (Plugin), the ordered chain that turns plugin outputs into a
// decision (Set), the user.recent counters (Recent) and hot reload from
// plugins.dir (Watcher).
//
// The ABI is DESIGN.md "Plugin ABI (version 1)", with the wire types and
// codec from plugins/abi. The package must never let a plugin crash or stall
// the daemon, so:
//
//   - Imports other than wasi_snapshot_preview1 are refused at load; WASI
//     gets no preopened directories, env, args or sockets, and fake clocks.
//     Instances are anonymous, so no module can import another.
//   - Every guest call runs on an instance no other goroutine uses, under a
//     per-call deadline (the kill switch, below), behind an engine-wide
//     semaphore of MaxConcurrent (default GOMAXPROCS) slots: deadlines are
//     wall-clock, and more busy evaluations than cores turns healthy calls
//     into timeouts.
//   - An instance serves one workspace only: a guest may keep anything in
//     its globals, and that must never reach another workspace's decision.
//     Pools keep at most PoolSize idle instances per plugin and workspace
//     and MaxIdle per plugin (least recently used evicted), so every busy
//     workspace keeps its own warm instance (a new standard-Go instance
//     takes ~10 ms); the Watcher closes instances idle for IdleTimeout.
//   - Linear memory is capped (MemoryLimit) and backed on Linux by one mmap
//     reservation per instance, so growing to the limit costs no copies and
//     no Go heap (measured by TestMemoryBombHostHeap).
//   - Any failure discards the instance and returns *Error, which names the
//     plugin and the kind (trap, panic, exit, memory, stack_overflow,
//     bad_output, timeout). What the guest printed stays in Error.Stderr:
//     it is not in Error() and is logged only at debug, digits masked.
//   - Manifests are data: HCL expressions are refused before anything
//     evaluates them, and a decision's hash covers the module and the
//     manifest config.
//
// # The kill switch
//
// wazero's own deadline (WithCloseOnContextDone) leaves native code for Go
// at every loop back-edge (wazero #2466: guest code 1.3–13× slower) and
// does not see loop-free call trees at all. Load instead rewrites every
// module (package guard) before compiling it: a fuel counter in a global of
// the module counts down at function entries and loop headers by an upper
// bound of the work to the next count, and when it runs out the guest calls
// the host function guard.Module.guard.Func, which checks the call's
// deadline and the caller's context (killswitch.go) and ends the call by
// panicking, or returns new fuel. Recursive functions also count their
// depth and end past guard.MaxDepth. A module the rewrite cannot analyse is
// refused at load.
//
// Remaining risk:
//
//   - Fuel counts instructions, not time: between two checks a guest runs
//     at most guard.Fuel weighted instructions, a few milliseconds of
//     ordinary code, but instructions such as memory.fill or a host call
//     (WASI) are counted as one.
//   - Deadlines stay wall-clock: the kill switch is Timeout, not a latency
//     goal. A host with other CPU load can still kill a healthy call.
//   - Plugins of mutually hostile tenants share one runtime and one process:
//     a wazero bug would be shared too. Run such tenants in separate daemons.
//
// The package does not parse the daemon's config, deliver anything or keep
// state beyond plugins and the in-memory recent-event counters.
package policy
