// Package all is the bundle of the shipped policies: one module holding
// all five (see all/wasm), which make policies installs under each
// policy's name. Plugins with identical bytes share one compiled module in
// the relay, so the five cost one compile and one copy of machine code
// instead of five: measured by BenchmarkCodeFootprint in relay/policy,
// calls that alternate between separately compiled standard-Go modules run
// about 4x slower than calls into one shared module, because each module's
// megabytes of code are cold in the CPU's caches.
//
// Each policy's own module (policies/NAME/wasm) builds and behaves the same;
// the bundle selects the policy by the "policy" key of the manifest config
// (plugins/sdk Policy).
package all
