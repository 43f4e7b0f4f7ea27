package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

// sseEvent is one parsed Server-Sent Event (or a comment block).
type sseEvent struct {
	id, event, data string
	comments        []string
}

type sseClient struct {
	t    testing.TB
	resp *http.Response
	br   *bufio.Reader
	stop context.CancelFunc
}

func openStream(t testing.TB, url string, lastID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{t: t, resp: resp, br: bufio.NewReader(resp.Body), stop: cancel}
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.stop()
	c.resp.Body.Close()
}

// next reads one block; it fails the test after 10s.
func (c *sseClient) next() (sseEvent, error) {
	var ev sseEvent
	timer := time.AfterFunc(10*time.Second, c.stop)
	defer timer.Stop()
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.id != "" || ev.data != "" || len(ev.comments) > 0 {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
			ev.comments = append(ev.comments, strings.TrimSpace(line[1:]))
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}

// nextAnswer skips comments and returns the next answer event.
func (c *sseClient) nextAnswer() AnswerEvent {
	c.t.Helper()
	for {
		ev, err := c.next()
		if err != nil {
			c.t.Fatalf("stream: %v", err)
		}
		if ev.id == "" {
			continue
		}
		var a AnswerEvent
		if ev.event != "action" || json.Unmarshal([]byte(ev.data), &a) != nil || strconv.FormatUint(a.Seq, 10) != ev.id {
			c.t.Fatalf("bad event %+v", ev)
		}
		return a
	}
}

type streamFixture struct {
	st  *bolt.Store
	hub *Hub
	url string
	n   int
	mu  sync.Mutex
}

func newStreamFixture(t *testing.T, heartbeat time.Duration) *streamFixture {
	f := &streamFixture{st: bolttest.Open(t), hub: NewHub()}
	srv := httptest.NewServer(StreamHandler(f.st, StreamOptions{Hub: f.hub, Heartbeat: heartbeat, Batch: 7}))
	t.Cleanup(func() {
		f.hub.Close()
		srv.Close()
	})
	f.url = srv.URL + "/v1/actions/stream"
	return f
}

// answer stores one answer to a new event and notifies the hub.
func (f *streamFixture) answer(t testing.TB) relay.Answer {
	f.mu.Lock()
	f.n++
	id := fmt.Sprintf("evt-%d", f.n)
	f.mu.Unlock()
	a, err := f.st.AnswerAction(context.Background(), relay.Answer{Event: relay.EventKey{Workspace: "acme", ID: id},
		User: "alice", DeviceID: "phone", Action: "approve", AnsweredAt: time.Now().UTC()})
	if err != nil {
		t.Error(err)
	}
	f.hub.Notify()
	return a
}

func TestStreamResume(t *testing.T) {
	f := newStreamFixture(t, time.Hour)
	for range 3 {
		f.answer(t)
	}
	c := openStream(t, f.url, "")
	for want := uint64(1); want <= 3; want++ {
		if a := c.nextAnswer(); a.Seq != want || a.Workspace != "acme" || a.EventID != fmt.Sprintf("evt-%d", want) || a.Action != "approve" {
			t.Fatalf("got %+v, want seq %d", a, want)
		}
	}
	// Live answers are pushed.
	f.answer(t)
	f.answer(t)
	for want := uint64(4); want <= 5; want++ {
		if a := c.nextAnswer(); a.Seq != want {
			t.Fatalf("live: seq %d, want %d", a.Seq, want)
		}
	}
	c.close()
	// Answers while disconnected arrive after reconnecting, once.
	f.answer(t)
	f.answer(t)
	c = openStream(t, f.url, "5")
	for want := uint64(6); want <= 8; want++ {
		if want == 8 {
			f.answer(t)
		}
		if a := c.nextAnswer(); a.Seq != want {
			t.Fatalf("resume: seq %d, want %d", a.Seq, want)
		}
	}
}

// TestStreamNoLossNoDupes: writers store answers concurrently while a
// reader keeps dropping its connection and resuming with Last-Event-ID.
func TestStreamNoLossNoDupes(t *testing.T) {
	f := newStreamFixture(t, time.Hour)
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				f.answer(t)
			}
		})
	}
	var seen []uint64
	last := ""
	for len(seen) < writers*each {
		c := openStream(t, f.url, last)
		for range 23 { // drop the connection every 23 answers
			if len(seen) == writers*each {
				break
			}
			a := c.nextAnswer()
			seen = append(seen, a.Seq)
			last = strconv.FormatUint(a.Seq, 10)
		}
		c.close()
	}
	wg.Wait()
	for i, s := range seen {
		if s != uint64(i+1) {
			t.Fatalf("answer %d has seq %d: lost or repeated (%v)", i, s, seen)
		}
	}
}

func TestStreamHeartbeatAndClose(t *testing.T) {
	f := newStreamFixture(t, 20*time.Millisecond)
	c := openStream(t, f.url, "")
	pings := 0
	for pings < 2 {
		ev, err := c.next()
		if err != nil {
			t.Fatal(err)
		}
		for _, cm := range ev.comments {
			if cm == "ping" {
				pings++
			}
		}
	}
	f.hub.Close()
	for {
		if _, err := c.next(); err != nil {
			break // the stream ended
		}
	}
	f.hub.Notify() // a no-op after Close
}

func TestStreamBadLastEventID(t *testing.T) {
	f := newStreamFixture(t, time.Hour)
	req, _ := http.NewRequest("GET", f.url, nil)
	req.Header.Set("Last-Event-ID", "x1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
}

// TestStreamSkipsCancels: an upstream cancel, stored as an event's first
// answer, is not an answer: the stream skips it and goes on.
func TestStreamSkipsCancels(t *testing.T) {
	f := newStreamFixture(t, time.Hour)
	f.answer(t) // seq 1
	if _, err := f.st.AnswerAction(t.Context(), relay.Answer{Event: relay.EventKey{Workspace: "acme", ID: "cancelled"},
		User: "alice", DeviceID: relay.CancelDevice, Action: relay.CancelAction, AnsweredAt: time.Now().UTC(), Cancelled: true}); err != nil {
		t.Fatal(err)
	}
	f.answer(t) // seq 3
	c := openStream(t, f.url, "")
	if a := c.nextAnswer(); a.Seq != 1 {
		t.Fatalf("got %+v, want seq 1", a)
	}
	if a := c.nextAnswer(); a.Seq != 3 || a.EventID == "cancelled" {
		t.Fatalf("got %+v, want seq 3 (the cancel skipped)", a)
	}
}
