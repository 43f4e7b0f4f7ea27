// Package config owns config.hcl: its schema, its defaults, its validation
// and the normalized view of it that the rest of relayd consumes.
//
// [Load] reads a file, decodes it with gohcl into private schema structs (so
// unknown attributes and blocks are errors), fills defaults from [Default],
// resolves every relative path against the file's directory, validates every
// value and returns all problems at once as hcl.Diagnostics, each pointing at
// the attribute or block it concerns (config.hcl:14,3-21: summary; detail).
// [Parse] does the same from bytes without touching the filesystem, for
// tests, fuzzing and tools. [Loader] additionally keeps the parsed files so
// `relayd -check` can print diagnostics with source snippets.
//
// The package does no I/O beyond reading the config file and checking that
// referenced files exist: it never opens sockets, reads secrets or creates
// directories, and it never logs. Reference: docs/config.md.
package config
