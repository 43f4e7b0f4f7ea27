// Package abi is the wire contract between the edgerelay daemon (the host) and
// its WebAssembly policy plugins (the guests): the ABI version, the names of
// the exports a plugin must provide, the Input the host sends and the Output a
// plugin answers, and a hand-written JSON codec for exactly those types.
//
// The package is shared by the host (relay/policy) and the guest SDK
// (plugins/sdk), so the two cannot drift. It is pure Go, builds for every
// GOOS including wasip1, depends only on the standard library, and uses no
// reflection: a Go plugin decodes its input and encodes its output with a
// codec that allocates little and runs in a few microseconds.
//
// The package owns the wire format and its validation rules (settable
// fields, length limits). It must not own policy semantics: how the host
// applies an Output to an event is relay/policy's business.
package abi
