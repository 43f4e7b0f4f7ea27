//go:build wasip1

// Package sdk is the guest side of the edgerelay plugin ABI for Go plugins
// built with the standard toolchain (GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared). Importing it exports relay_abi_version, relay_alloc,
// relay_evaluate, relay_encoding (asking for the compact encoding) and
// relay_input_sections (telling the host which input sections the rule
// reads, Reads) from the module (Go's //go:wasmexport works from any package linked into a
// c-shared module); the Go linker adds _initialize and memory. A plugin registers its rule once, from init:
//
//	package main
//
//	import (
//		"github.com/edgerelay/edgerelay/plugins/abi"
//		"github.com/edgerelay/edgerelay/plugins/sdk"
//	)
//
//	func init() { sdk.Handle(Evaluate, sdk.Reads(abi.SectionEventData)) }
//
//	func Evaluate(in abi.Input) abi.Output {
//		if in.Event.Data["owner"] == "bot@corp.example" {
//			return abi.Suppress("internal_share")
//		}
//		return abi.Allow()
//	}
//
//	func main() {}
//
// main is never called: a reactor module runs package init in _initialize,
// then the host calls the exports.
//
// To warn the user without touching the event's own alert, set
// abi.Output.Notice: the relay sends it as a separate informational alert
// (no actions, never answerable), once per event and plugin:
//
//	out := abi.Suppress("push_bombing_guard")
//	out.Notice = &abi.Notice{Title: "Repeated sign-in requests blocked", Body: "…"}
//	return out
//
// The package owns the glue: the input and output buffers (package globals,
// reused across calls), decoding with the abi codec, calling the handler and
// encoding its answer. It must not hold policy logic. All its files are
// wasip1-only, so host builds of ./... skip it.
package sdk
