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
//     per-call deadline (wazero's WithCloseOnContextDone), behind an
//     engine-wide semaphore of MaxConcurrent (default GOMAXPROCS) slots:
//     deadlines are wall-clock, and more busy evaluations than cores turns
//     healthy calls into timeouts.
//   - Linear memory is capped (MemoryLimit) and backed on Linux by one mmap
//     reservation per instance, so growing to the limit costs no copies and
//     no Go heap (measured by TestMemoryBombHostHeap: a standard-Go guest
//     allocating to 128 MiB took 26 ms and 0 MiB of host allocations, against
//     4.1 s and 893 MiB with wazero's default allocator).
//   - Any failure discards the instance and returns *Error, which names the
//     plugin and the kind (trap, panic, exit, memory, stack_overflow,
//     bad_output, timeout) and carries up to 300 bytes of guest output.
//
// # Deadline escapes and deep recursion
//
// wazero v1.12 checks for a closed module only at loop headers: not at
// function entry, host calls or stack growth. A loop-free call tree of 2^26
// calls ran about 260 ms against a 5 ms deadline, and 2^32 calls ran 21 s;
// unbounded recursion grew wazero's stack (up to its 400 MB ceiling) for
// seconds before "stack overflow", and a guest stuck in native code also
// delays the Go GC's stop-the-world, so other plugins timed out meanwhile.
// Load therefore rewrites the module (harden.go) before compiling it: every
// function on a call-graph cycle, and every loop-free function whose
// worst-case work between checks exceeds 2^20 instructions, is wrapped so
// that each call enters an empty loop (a deadline check) and counts its
// depth, trapping beyond 16384 nested guarded calls (reported as
// stack_overflow). Functions that already reach a loop header on entry (all
// of Go's) only get the depth count. The guards cost nothing measurable on a
// standard-Go SDK plugin (BenchmarkEvaluate) and leave modules without
// recursion or large loop-free call trees byte-for-byte unchanged.
//
// Remaining risk:
//
//   - Between two checks a guest can still run unchecked for up to its
//     straight-line code plus the tails of the frames on its stack (at most
//     16384 guarded frames), each bounded by the 2^20-instruction budget:
//     milliseconds in practice, but not a hard bound.
//   - call_indirect targets are matched by function type; a module that
//     builds its table at run time (table.set, table.grow) with functions
//     not named in an element segment or ref.func would escape the
//     analysis. wazero's default features (WebAssembly 2.0) allow this only
//     for functions the module already references, which are counted.
//   - Deadlines stay wall-clock: the kill switch is Timeout, not a latency
//     goal. A host with other CPU load can still kill a healthy call.
//   - Plugins of mutually hostile tenants share one runtime and one process:
//     a wazero bug would be shared too. Run such tenants in separate daemons.
//
// The package does not parse the daemon's config, deliver anything or keep
// state beyond plugins and the in-memory recent-event counters.
package policy
