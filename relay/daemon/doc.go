// Package daemon is relayd's composition root: it opens the parts in
// dependency order (store, providers, queue, pipeline, plugins, listeners),
// runs their loops, and shuts them down in reverse: the socket stops
// accepting first, then the deciders, then in-flight sends drain, and the
// store closes last. It holds no logic of its own beyond that wiring.
package daemon
