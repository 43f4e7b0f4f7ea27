package coalesce

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gatedConn is a net.Conn whose writes wait for a gate and are recorded
// one by one.
type gatedConn struct {
	net.Conn
	gate    chan struct{} // one receive per write; nil: no wait
	entered chan struct{} // a write waits in the gate (buffered)
	done    chan struct{} // closed by Close: a write in the gate fails
	once    sync.Once
	mu      sync.Mutex
	seen    [][]byte
	fail    error
}

func (g *gatedConn) Write(p []byte) (int, error) {
	if g.gate != nil {
		g.entered <- struct{}{}
		select {
		case <-g.gate:
		case <-g.done:
			return 0, net.ErrClosed
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return 0, g.fail
	}
	g.seen = append(g.seen, bytes.Clone(p))
	return len(p), nil
}

func (g *gatedConn) Close() error {
	g.once.Do(func() { close(g.done) })
	return g.Conn.Close()
}

func (g *gatedConn) writes() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.seen)
}

func gated(a net.Conn) *gatedConn {
	return &gatedConn{Conn: a, gate: make(chan struct{}), entered: make(chan struct{}, 16), done: make(chan struct{})}
}

func pipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Bytes written from many goroutines all arrive, each write's bytes in one
// piece and in the order the writes returned.
func TestWritesArriveWholeAndInOrder(t *testing.T) {
	a, b := pipe(t)
	c := New(a, 1024)
	var got bytes.Buffer
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(&got, b)
		read <- err
	}()
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				msg := fmt.Sprintf("<%d:%d>", g, i)
				mu.Lock() // the order of returns is the order of the stream
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Error(err)
				}
				order = append(order, msg)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	waitIdle(t, c)
	c.Close()
	<-read
	var want bytes.Buffer
	for _, m := range order {
		want.WriteString(m)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("stream differs: got %d bytes, want %d", got.Len(), want.Len())
	}
}

// waitIdle waits until the writer has nothing left.
func waitIdle(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		idle := !c.writing && len(c.queued) == 0
		c.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("writer still busy")
}

// The writes made while one write is in the kernel leave together, in one
// write of the underlying connection; a write on an idle connection leaves
// at once, alone.
func TestWritesDuringAWriteLeaveTogether(t *testing.T) {
	a, _ := pipe(t)
	g := gated(a)
	c := New(g, 0)
	defer c.Close()
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	// The writer now waits in the gate with "first"; these queue behind it.
	for _, s := range []string{"a", "b", "c"} {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	g.gate <- struct{}{} // "first" goes out
	g.gate <- struct{}{} // then the three together
	waitIdle(t, c)
	got := g.writes()
	if len(got) != 2 || string(got[0]) != "first" || string(got[1]) != "abc" {
		t.Fatalf("underlying writes %q, want [first abc]", got)
	}
	// Idle again: the next write leaves alone.
	if _, err := c.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	g.gate <- struct{}{}
	waitIdle(t, c)
	if got := g.writes(); len(got) != 3 || string(got[2]) != "late" {
		t.Fatalf("underlying writes %q, want late alone", got)
	}
}

// A writer past maxQueued waits for the queue to leave, then goes on.
func TestWriteWaitsForRoom(t *testing.T) {
	a, _ := pipe(t)
	g := gated(a)
	c := New(g, 8)
	defer c.Close()
	c.Write([]byte("1234")) // taken by the writer, waiting in the gate
	<-g.entered
	c.Write([]byte("12345678")) // queued: the queue is full
	done := make(chan struct{})
	go func() {
		c.Write([]byte("x")) // must wait
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("a write past maxQueued did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	g.gate <- struct{}{} // "1234" leaves, the writer takes the queue
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting write did not go on")
	}
	g.gate <- struct{}{}
	g.gate <- struct{}{}
	waitIdle(t, c)
	var all []byte
	for _, w := range g.writes() {
		all = append(all, w...)
	}
	if string(all) != "123412345678x" {
		t.Fatalf("stream %q", all)
	}
}

// A failed write is returned by the next Write and closes the connection,
// so a reader waiting on it ends too.
func TestFailedWriteIsReturnedAndCloses(t *testing.T) {
	a, _ := pipe(t)
	boom := errors.New("boom")
	g := &gatedConn{Conn: a, fail: boom, done: make(chan struct{})}
	c := New(g, 0)
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("first write: %v (the failure comes later)", err)
	}
	waitIdle(t, c)
	if _, err := c.Write([]byte("next")); !errors.Is(err, boom) {
		t.Fatalf("next write: %v, want boom", err)
	}
	<-c.done // the writer closed the connection as it ended
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after a failed write succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close after a failed write: %v", err)
	}
}

// Close ends a write blocked in the kernel and the writers waiting for
// room; later writes fail.
func TestCloseUnblocks(t *testing.T) {
	a, _ := pipe(t)
	g := gated(a)
	c := New(g, 4)
	c.Write([]byte("1234"))
	<-g.entered // and waits there: nobody opens the gate
	c.Write([]byte("5678"))
	errs := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("9"))
		errs <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("waiting write: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting write did not end at Close")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after Close succeeded")
	}
	waitIdle(t, c)
}

// The HTTP/2 transport reads the TLS state through the wrapper.
func TestConnectionState(t *testing.T) {
	a, _ := pipe(t)
	c := New(a, 0)
	defer c.Close()
	if st := c.ConnectionState(); st.HandshakeComplete {
		t.Fatal("a plain connection has no TLS state")
	}
	var _ interface{ ConnectionState() tls.ConnectionState } = c
}
