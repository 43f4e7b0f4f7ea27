// Package daemon is relayd's composition root: it opens the parts in
// dependency order (store, providers, queue, pipeline, plugins, listeners),
// runs their loops, and shuts them down in reverse: the socket stops
// accepting first, then the deciders, then in-flight sends drain, and the
// store closes last (with store "jetstream" and a nats {} block, the
// embedded NATS server stops after it). Beside the wiring it holds the few
// things that belong to no one part: the sealing notifier, withdraw pushes
// after an answer, /readyz (store probe and breakers), the shared
// user.recent counters of a cluster, metrics and status.
package daemon
