// Package policy is the WebAssembly host for policy plugins: it owns the
// wazero runtime (Engine), each compiled plugin version and its pool of
// instances (Plugin), the ordered chain that turns plugin outputs into a
// decision (Set), and hot reload from plugins.dir (Watcher).
//
// The ABI is DESIGN.md "Plugin ABI (version 1)": a WASI preview-1 reactor
// exporting memory, relay_abi_version, relay_alloc and relay_evaluate. The
// package must never let a plugin crash or stall the daemon: every guest call
// runs on an instance no other goroutine uses, under a deadline
// (wazero's WithCloseOnContextDone), with capped linear memory, and any
// failure discards the instance and comes back as *Error.
//
// It does not parse the daemon's config, deliver anything or keep state
// beyond the in-memory recent-event counters it feeds to plugins.
package policy
