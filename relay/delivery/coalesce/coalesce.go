// Package coalesce batches the writes of a connection to a push provider.
//
// Go's HTTP/2 client flushes its buffer after every request's HEADERS frame
// and again after its DATA frame: with hundreds of pushes in flight on one
// connection that is two TLS records and two write system calls per push,
// each one a trip through the kernel's TCP stack. A Conn hands writes to a
// writer goroutine instead: while one write is in the kernel, the frames
// written meanwhile queue up and leave together in the next one. An idle
// connection writes at once, so a lone push waits for no batch. The writer
// lives as long as the connection (one started per write would grow a
// fresh stack through crypto/tls every time).
package coalesce

import (
	"crypto/tls"
	"net"
	"runtime"
	"sync"
)

// DefaultMaxQueued bounds the bytes queued behind a write in progress: a
// writer past it waits, as it would on a full socket buffer.
const DefaultMaxQueued = 256 << 10

// Conn is a net.Conn whose writes are coalesced (see the package comment).
// Write returns once its bytes are queued; a failure of the underlying
// write is returned by the next Write (and by every one after), and closes
// the connection, so that reads and the requests waiting on them end too.
type Conn struct {
	net.Conn
	maxQueued int

	mu      sync.Mutex
	room    sync.Cond // signalled when queued bytes leave
	work    sync.Cond // signalled when bytes are queued, or at Close
	queued  []byte    // written, not yet handed to the kernel
	spare   []byte    // the writer's buffer, reused
	writing bool      // the writer has bytes in the kernel
	err     error     // the first failure, returned by every later Write
	closed  bool
	done    chan struct{} // closed when the writer ends
}

// New wraps c; maxQueued <= 0 means DefaultMaxQueued.
func New(c net.Conn, maxQueued int) *Conn {
	if maxQueued <= 0 {
		maxQueued = DefaultMaxQueued
	}
	cc := &Conn{Conn: c, maxQueued: maxQueued, done: make(chan struct{})}
	cc.room.L = &cc.mu
	cc.work.L = &cc.mu
	go cc.writeLoop()
	return cc
}

// errClosed is the Write error after Close.
var errClosed = net.ErrClosed

// Write queues p for the writer goroutine and starts it if none runs.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.queued) > 0 && len(c.queued)+len(p) > c.maxQueued {
		c.room.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, errClosed
	}
	if len(c.queued) == 0 && !c.writing {
		c.work.Signal()
	}
	c.queued = append(c.queued, p...)
	return len(p), nil
}

// writeLoop hands the queued bytes to the underlying connection, all that
// queued up during the last write at once, until the connection is closed
// or a write fails.
func (c *Conn) writeLoop() {
	defer close(c.done)
	c.mu.Lock()
	for {
		for len(c.queued) == 0 && c.err == nil && !c.closed {
			c.work.Wait()
		}
		if c.err != nil || c.closed {
			c.mu.Unlock()
			return
		}
		// One round of the scheduler first: the senders already runnable
		// add their frames to this write (an idle process goes on at
		// once). With 64 pushes in flight against the fake, a push's two
		// flushes took 1.3 writes without it, 0.14 with it.
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
		if c.err != nil || c.closed {
			c.mu.Unlock()
			return
		}
		out := c.queued
		c.queued = c.spare[:0]
		c.writing = true
		c.room.Broadcast() // the queue is empty again
		c.mu.Unlock()
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		c.writing = false
		c.spare = out[:0]
		if err != nil && c.err == nil {
			c.err = err
			c.room.Broadcast()
			c.mu.Unlock()
			// Nobody may be writing any more: the reads and the requests
			// waiting on them must learn it too. (Not under mu: a TLS
			// close may try to send its alert.)
			c.Conn.Close()
			return
		}
	}
}

// Close closes the underlying connection at once (a write blocked in the
// kernel must end, as with a plain connection) and waits for the writer to
// end; bytes still queued are dropped. Writers waiting for room return
// net.ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.queued = nil
	failed := c.err != nil
	c.room.Broadcast()
	c.work.Signal()
	c.mu.Unlock()
	err := c.Conn.Close()
	<-c.done // the writer ends: its write, if any, failed with the close
	if failed {
		return nil // closed when the write failed
	}
	return err
}

// ConnectionState is the TLS state of the underlying connection, when it is
// a *tls.Conn (the HTTP/2 transport reads it).
func (c *Conn) ConnectionState() tls.ConnectionState {
	if t, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return t.ConnectionState()
	}
	return tls.ConnectionState{}
}
