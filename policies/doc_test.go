// Package policies_test builds every shipped policy to WebAssembly with the
// standard Go toolchain and runs it through wazero exactly as the host does
// (ABI exports, _initialize, relay_alloc, relay_evaluate), with the config
// from its manifest. It proves plugins/sdk and plugins/abi end to end.
package policies_test
