// Package ingest owns the local socket API (DESIGN.md "Local socket API"):
// HTTP/1.1 over a Unix socket, trusted by the socket file's permissions.
//
// It owns the socket file (stale-socket hygiene, mode, removal on
// shutdown), the strict event decoder ([DecodeEvent], [DecodeBatch]) with
// its size limits and field-naming errors, POST /v1/events, GET
// /v1/events/{workspace}/{id}, the admin endpoints for workspace settings,
// devices and user preferences, /healthz and /readyz, and the JSON error
// shape `{"error":{"code","message"}}` on every route it serves.
//
// It must not decide, schedule or deliver: validated events go to an
// [Acceptor] (the daemon's pipeline), which fills defaults and stores them
// durably. Routes owned by other parts (queue, dead letters, plugins, the
// actions stream, metrics) are added by the daemon with [Server.Handle].
//
// # Batches
//
// An NDJSON batch is streamed: read, decoded and handed to the Acceptor in
// chunks of about 500 events ([BatchReader]), so a batch is never held in
// memory whole, and the bytes of all batches in flight share one budget
// (Options.MaxInflightBytes, config socket.max_inflight_bytes; 503 with
// Retry-After beyond it). A batch that stops early (more than
// relay.MaxBatchEvents events, a body over MaxBatchBytes, the Acceptor
// failing) is answered with the error (413, 503, 500) and, in "results",
// the outcome of every line handed over before: those events are stored; a
// repost answers them "duplicate".
package ingest
