// Package relay holds edgerelay's vocabulary: events, devices, settings,
// decisions, delivery states, the errors shared between parts, and log keys.
//
// It does no I/O. Every other package under relay/ imports it; it imports
// none of them.
package relay
