package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
)

func postJSON(tb testing.TB, ts *testServer, body string) response {
	tb.Helper()
	return ts.do(tb, http.MethodPost, "/v1/events", MediaTypeJSON, []byte(body))
}

func postNDJSON(tb testing.TB, ts *testServer, body string) response {
	tb.Helper()
	return ts.do(tb, http.MethodPost, "/v1/events", MediaTypeNDJSON+"; charset=utf-8", []byte(body))
}

func results(tb testing.TB, r response) []Result {
	tb.Helper()
	if r.status != http.StatusAccepted {
		tb.Fatalf("status %d, want 202; body %s", r.status, r.body)
	}
	var res Results
	r.decode(tb, &res)
	return res.Results
}

func TestPostSingleEvent(t *testing.T) {
	ts := startServer(t, nil)
	got := results(t, postJSON(t, ts, sampleEvent))
	if want := []Result{{ID: "evt-123", Status: StatusAccepted}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("results %+v, want %+v", got, want)
	}
	rec, err := ts.store.Event(context.Background(), relay.EventKey{Workspace: "acme", ID: "evt-123"})
	if err != nil || rec.Event.Title != "Code for GitHub" {
		t.Fatalf("stored %+v, %v", rec, err)
	}
	got = results(t, postJSON(t, ts, sampleEvent))
	if want := []Result{{ID: "evt-123", Status: StatusDuplicate}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("repeat: results %+v, want %+v", got, want)
	}
}

func TestPostSingleEventRejected(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct{ name, body, msg string }{
		{"unknown field", ev(`"foo":1`), `unknown field "foo"`},
		{"missing user", `{"id":"a","workspace":"w","type":"otp_received"}`, `missing required field "user"`},
		{"unknown type", `{"id":"a","workspace":"w","user":"u","type":"x"}`, `field "type": unknown notification type "x"`},
		{"wrong type", ev(`"title":1`), `field "title": expected string, got number`},
		{"trailing garbage", ev("") + "{}", `unexpected data after the event object at byte 59`},
		{"expiry", ev(`"occurred_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T09:00:00Z"`), `field "expires_at": before occurred_at`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := postJSON(t, ts, tc.body)
			r.wantError(t, http.StatusBadRequest, CodeBadRequest, tc.msg)
			var body ErrorBody
			r.decode(t, &body)
			want := []Result{{ID: "a", Status: StatusRejected, Error: tc.msg}}
			if !reflect.DeepEqual(body.Results, want) {
				t.Fatalf("results %+v, want %+v", body.Results, want)
			}
		})
	}
	if n := len(ts.store.events); n != 0 {
		t.Fatalf("%d events stored", n)
	}
}

func TestPostSingleEventTooLarge(t *testing.T) {
	ts := startServer(t, nil)
	body := ev(`"body":"` + strings.Repeat("x", relay.MaxEventBytes) + `"`)
	postJSON(t, ts, body).wantError(t, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "event larger than 16384 bytes")
}

func TestPostBatch(t *testing.T) {
	ts := startServer(t, nil)
	lines := []string{
		`{"id":"e1","workspace":"w","user":"u","type":"otp_received"}`,
		`{"id":"e2","workspace":"w","user":"u","type":"account_shared"}`,
		`{"id":"e3","workspace":"w","user":"u","type":"otp_received","colour":"red"}`,
		``,
		`{"id":"e4","workspace":"w","user":"u","type":"otp_received"}`,
		`{"id":"e1","workspace":"w","user":"u","type":"otp_received"}`,
		`{"id":"e5"`,
	}
	got := results(t, postNDJSON(t, ts, strings.Join(lines, "\n")+"\n"))
	want := []Result{
		{Line: 1, ID: "e1", Status: StatusAccepted},
		{Line: 2, ID: "e2", Status: StatusAccepted},
		{Line: 3, ID: "e3", Status: StatusRejected, Error: `unknown field "colour"`},
		{Line: 5, ID: "e4", Status: StatusAccepted},
		{Line: 6, ID: "e1", Status: StatusDuplicate},
		{Line: 7, ID: "e5", Status: StatusRejected, Error: `invalid JSON at byte 10: expected ',' or '}' after field "id", got end of input`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("results\n%+v\nwant\n%+v", got, want)
	}
	for _, id := range []string{"e1", "e2", "e4"} {
		if _, err := ts.store.Event(context.Background(), relay.EventKey{Workspace: "w", ID: id}); err != nil {
			t.Fatalf("event %s: %v", id, err)
		}
	}
	if len(ts.store.events) != 3 {
		t.Fatalf("%d events stored, want 3", len(ts.store.events))
	}
}

// A small body is decoded into a small pooled chunk: one with more lines
// than that chunk holds grows it, and a chunk used by a bigger batch before
// carries nothing into the next.
func TestPostSmallBatchGrowsItsChunk(t *testing.T) {
	ts := startServer(t, nil)
	batch := func(prefix string, n int) (string, []Result) {
		var b strings.Builder
		var want []Result
		for i := range n {
			fmt.Fprintf(&b, `{"id":"%s%d","workspace":"w","user":"u","type":"otp_received"}`+"\n", prefix, i)
			want = append(want, Result{Line: i + 1, ID: fmt.Sprintf("%s%d", prefix, i), Status: StatusAccepted})
		}
		return b.String(), want
	}
	for round, n := range []int{smallChunkEvents * 3, 1, smallChunkEvents + 1, 600, 2} {
		body, want := batch(fmt.Sprintf("r%d-", round), n)
		if n <= smallChunkEvents*3 && len(body) > smallBatchBytes {
			t.Fatalf("round %d: body of %d bytes is not a small batch", round, len(body))
		}
		if got := results(t, postNDJSON(t, ts, body)); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d (%d events): results\n%+v\nwant\n%+v", round, n, got, want)
		}
	}
	if want := smallChunkEvents*3 + 1 + smallChunkEvents + 1 + 600 + 2; len(ts.store.events) != want {
		t.Fatalf("%d events stored, want %d", len(ts.store.events), want)
	}
}

func TestPostBatchAllRejected(t *testing.T) {
	called := false
	ts := startServer(t, func(o *Options) {
		o.Acceptor = AcceptorFunc(func(context.Context, []relay.Event) ([]error, error) {
			called = true
			return nil, nil
		})
	})
	got := results(t, postNDJSON(t, ts, "x\n"))
	if len(got) != 1 || got[0].Status != StatusRejected || got[0].Line != 1 || got[0].ID != "" {
		t.Fatalf("results %+v", got)
	}
	if called {
		t.Fatal("acceptor called with no valid event")
	}
}

func TestPostBatchOversizeLine(t *testing.T) {
	ts := startServer(t, nil)
	huge := ev(`"body":"` + strings.Repeat("x", relay.MaxEventBytes) + `"`)
	got := results(t, postNDJSON(t, ts, ev("")+"\n"+huge+"\n"+`{"id":"b","workspace":"w","user":"u","type":"otp_received"}`))
	want := []Result{
		{Line: 1, ID: "a", Status: StatusAccepted},
		{Line: 2, Status: StatusRejected, Error: "event larger than 16384 bytes"},
		{Line: 3, ID: "b", Status: StatusAccepted},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("results %+v, want %+v", got, want)
	}
}

func TestPostBatchTooMany(t *testing.T) {
	ts := startServer(t, nil)
	var b strings.Builder
	for i := range relay.MaxBatchEvents + 1 {
		fmt.Fprintf(&b, `{"id":"e%d","workspace":"w","user":"u","type":"otp_received"}`+"\n", i)
	}
	// The batch is streamed: the first 10,000 events are stored as they
	// come, and the answer says so with their results.
	r := postNDJSON(t, ts, b.String())
	r.wantError(t, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "batch has more than 10000 events: split it (lines up to 10000 were processed: see results; nothing after them was)")
	var eb ErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatal(err)
	}
	if got := eb.Results; len(got) != relay.MaxBatchEvents || got[len(got)-1].Line != relay.MaxBatchEvents || got[0].Status != StatusAccepted {
		t.Fatalf("%d results", len(got))
	}
	if len(ts.store.events) != relay.MaxBatchEvents {
		t.Fatalf("%d events stored, want the first %d", len(ts.store.events), relay.MaxBatchEvents)
	}
}

func TestPostBatchBodyCap(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.MaxBatchBytes = 1000 })
	postNDJSON(t, ts, strings.Repeat(ev("")+"\n", 20)).wantError(t, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "batch body larger than 1000 bytes")
}

func TestPostEventsBadRequests(t *testing.T) {
	ts := startServer(t, nil)
	postNDJSON(t, ts, "\n \n").wantError(t, http.StatusBadRequest, CodeBadRequest, "no events in body")
	ts.do(t, http.MethodPost, "/v1/events", "text/plain", []byte(ev(""))).wantError(t, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
		`Content-Type "text/plain" not supported: use application/json (one event) or application/x-ndjson (a batch)`)
	ts.do(t, http.MethodPost, "/v1/events", "", []byte(ev(""))).wantError(t, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "")
	ts.do(t, http.MethodPost, "/v1/events", "application/json; =x", []byte(ev(""))).wantError(t, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "")
}

func TestPostEventsAcceptorErrors(t *testing.T) {
	var mu sync.Mutex
	var fail error
	var reject error
	ts := startServer(t, func(o *Options) {
		o.Acceptor = AcceptorFunc(func(_ context.Context, events []relay.Event) ([]error, error) {
			mu.Lock()
			defer mu.Unlock()
			if fail != nil {
				return nil, fail
			}
			errs := make([]error, len(events))
			for i := range errs {
				errs[i] = reject
			}
			return errs, nil
		})
	})
	set := func(f, r error) { mu.Lock(); fail, reject = f, r; mu.Unlock() }

	set(errStoreDown, nil)
	postJSON(t, ts, ev("")).wantError(t, http.StatusServiceUnavailable, CodeUnavailable, "events not stored: disk on fire")
	postNDJSON(t, ts, ev("")).wantError(t, http.StatusServiceUnavailable, CodeUnavailable, "events not stored: disk on fire")

	set(nil, errors.New("event expired before it arrived"))
	r := postJSON(t, ts, ev(""))
	r.wantError(t, http.StatusBadRequest, CodeBadRequest, "event expired before it arrived")
	got := results(t, postNDJSON(t, ts, ev("")))
	if want := []Result{{Line: 1, ID: "a", Status: StatusRejected, Error: "event expired before it arrived"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("results %+v", got)
	}

	set(nil, fmt.Errorf("store: %w", relay.ErrDuplicate))
	got = results(t, postJSON(t, ts, ev("")))
	if want := []Result{{ID: "a", Status: StatusDuplicate}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("wrapped duplicate: %+v", got)
	}
}

func TestPostEventsAcceptorWrongCount(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.Acceptor = AcceptorFunc(func(context.Context, []relay.Event) ([]error, error) { return nil, nil })
	})
	postJSON(t, ts, ev("")).wantError(t, http.StatusInternalServerError, CodeInternal, "")
}

func TestGetEvent(t *testing.T) {
	ts := startServer(t, nil)
	ts.do(t, http.MethodGet, "/v1/events/acme/evt-123", "", nil).wantError(t, http.StatusNotFound, CodeNotFound, `event "evt-123" not found in workspace "acme"`)
	results(t, postJSON(t, ts, sampleEvent))

	r := ts.do(t, http.MethodGet, "/v1/events/acme/evt-123", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var raw map[string]json.RawMessage
	r.decode(t, &raw)
	for _, k := range []string{"id", "workspace", "user", "type", "expires_at", "decision", "deliveries"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("answer lacks %q: %s", k, r.body)
		}
	}
	if string(raw["decision"]) != "null" || string(raw["deliveries"]) != "[]" {
		t.Fatalf("undecided event: %s", r.body)
	}

	now := time.Date(2026, 11, 27, 10, 0, 1, 0, time.UTC)
	key := relay.EventKey{Workspace: "acme", ID: "evt-123"}
	err := ts.store.Decide(context.Background(), key,
		relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled, Plugins: []relay.PluginDecision{{Name: "quiet", Hash: "abc", Verdict: "allow"}}},
		nil, []relay.Job{{Event: key, DeviceID: "d1", Platform: relay.PlatformIOS, State: relay.StateFailed, Attempts: 3, LastError: "BadTopic", UpdatedAt: now}})
	if err != nil {
		t.Fatal(err)
	}
	r = ts.do(t, http.MethodGet, "/v1/events/acme/evt-123", "", nil)
	var st EventStatus
	r.decode(t, &st)
	want := EventStatus{
		ID: "evt-123", Workspace: "acme", User: "u-42", Type: "otp_received",
		ExpiresAt:  time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC),
		ReceivedAt: st.ReceivedAt,
		Decision:   &relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnabled, Plugins: []relay.PluginDecision{{Name: "quiet", Hash: "abc", Verdict: "allow"}}},
		Deliveries: []Delivery{{DeviceID: "d1", Platform: relay.PlatformIOS, State: relay.StateFailed, Attempts: 3, LastError: "BadTopic", UpdatedAt: now}},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("got %+v\nwant %+v", st, want)
	}
	// A decision without plugins lists none, not null.
	if err := ts.store.Decide(context.Background(), key, relay.Decision{Verdict: relay.VerdictSuppress, Reason: relay.ReasonUserOptOut}, nil, nil); err != nil {
		t.Fatal(err)
	}
	r = ts.do(t, http.MethodGet, "/v1/events/acme/evt-123", "", nil)
	if !bytes.Contains(r.body, []byte(`"decision":{"verdict":"suppress","reason":"user_opt_out","plugins":[]}`)) {
		t.Fatalf("body %s", r.body)
	}
	// Escaped path segments are unescaped.
	results(t, postJSON(t, ts, `{"id":"a/b c","workspace":"w","user":"u","type":"otp_received"}`))
	if r := ts.do(t, http.MethodGet, "/v1/events/w/a%2Fb%20c", "", nil); r.status != http.StatusOK {
		t.Fatalf("escaped id: %d %s", r.status, r.body)
	}
	ts.store.mu.Lock()
	ts.store.fail = errStoreDown
	ts.store.mu.Unlock()
	ts.do(t, http.MethodGet, "/v1/events/acme/evt-123", "", nil).wantError(t, http.StatusServiceUnavailable, CodeUnavailable, "read event: disk on fire")
}

func TestRoutingErrors(t *testing.T) {
	ts := startServer(t, nil)
	ts.do(t, http.MethodGet, "/v1/nope", "", nil).wantError(t, http.StatusNotFound, CodeNotFound, "no route for GET /v1/nope")
	r := ts.do(t, http.MethodDelete, "/v1/events", "", nil)
	r.wantError(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method DELETE not allowed on /v1/events")
	if allow := r.header.Get("Allow"); allow != "POST" {
		t.Fatalf("Allow %q", allow)
	}
	r = ts.do(t, http.MethodPost, "/v1/workspaces/w/settings", "", nil)
	r.wantError(t, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "")
	if allow := r.header.Get("Allow"); allow != "GET, HEAD, PUT" {
		t.Fatalf("Allow %q", allow)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var mu sync.Mutex
	var notReady error = errors.New("plugins loading")
	ts := startServer(t, func(o *Options) {
		o.Readiness = func() error { mu.Lock(); defer mu.Unlock(); return notReady }
	})
	r := ts.do(t, http.MethodGet, "/healthz", "", nil)
	if r.status != http.StatusOK || string(r.body) != `{"status":"ok"}`+"\n" {
		t.Fatalf("healthz %d %s", r.status, r.body)
	}
	ts.do(t, http.MethodGet, "/readyz", "", nil).wantError(t, http.StatusServiceUnavailable, CodeUnavailable, "not ready: plugins loading")
	mu.Lock()
	notReady = nil
	mu.Unlock()
	if r := ts.do(t, http.MethodGet, "/readyz", "", nil); r.status != http.StatusOK || string(r.body) != `{"status":"ready"}`+"\n" {
		t.Fatalf("readyz %d %s", r.status, r.body)
	}
}

func TestPanicRecovery(t *testing.T) {
	var logs syncBuffer
	ts := startServer(t, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	})
	ts.Handle("GET /v1/boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("kaboom") }))
	ts.do(t, http.MethodGet, "/v1/boom", "", nil).wantError(t, http.StatusInternalServerError, CodeInternal, "internal error")
	if !strings.Contains(logs.String(), "handler panic") || !strings.Contains(logs.String(), "kaboom") {
		t.Fatalf("panic not logged: %s", logs.String())
	}
	// The server still serves.
	if r := ts.do(t, http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// TestHandleStream checks that an added long-lived handler can flush and
// lift the read deadline, as the actions stream must.
func TestHandleStream(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.ReadTimeout = 50 * time.Millisecond })
	ts.Handle("GET /v1/actions/stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).SetReadDeadline(time.Time{}); err != nil {
			t.Errorf("set read deadline: %v", err)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "id: %d\ndata: x\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				t.Errorf("stream context cancelled: %v", r.Context().Err())
				return
			case <-time.After(60 * time.Millisecond): // outlive ReadTimeout
			}
		}
	}))
	resp, err := ts.client.Get("http://relayd/v1/actions/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var ids []string
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			ids = append(ids, id)
		}
	}
	if strings.Join(ids, ",") != "0,1,2" {
		t.Fatalf("ids %v, err %v", ids, sc.Err())
	}
}

func TestSocketMode(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "nested", "run", "r.sock")
	ts := startServer(t, func(o *Options) { o.Path = path; o.Mode = 0o600 })
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want a socket with 0600", fi.Mode())
	}
	if ts.Path() != path {
		t.Fatal(ts.Path())
	}
	// Default mode.
	ts2 := startServer(t, nil)
	if fi, err := os.Lstat(ts2.Path()); err != nil || fi.Mode().Perm() != DefaultMode {
		t.Fatalf("default mode: %v %v", fi.Mode(), err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(shortDir(t), "r.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // leaves the file behind, as a crash does
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left: %v", err)
	}
	ts := startServer(t, func(o *Options) { o.Path = path })
	if r := ts.do(t, http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
}

func TestSocketPathNotASocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "r.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := runOnce(t, Options{Path: path})
	if err == nil || err.Error() != fmt.Sprintf("socket path %s exists and is not a socket", path) {
		t.Fatalf("err %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("file was touched")
	}
}

func TestSocketInUse(t *testing.T) {
	ts := startServer(t, nil)
	err := runOnce(t, Options{Path: ts.Path()})
	if err == nil || err.Error() != fmt.Sprintf("socket %s is in use by another process", ts.Path()) {
		t.Fatalf("err %v", err)
	}
	if r := ts.do(t, http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		t.Fatal("first server disturbed")
	}
}

// runOnce runs a server with test defaults for missing options and
// returns Run's error; it fails the test if Run starts serving.
func runOnce(tb testing.TB, opts Options) error {
	tb.Helper()
	st := newMemStore()
	if opts.Acceptor == nil {
		opts.Acceptor = storeAcceptor(st)
	}
	if opts.Store == nil {
		opts.Store = st
	}
	if opts.KnownType == nil {
		opts.KnownType = knownTestType
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(opts)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-s.Ready():
		cancel()
		<-done
		tb.Fatal("Run served")
		return nil
	}
}

func TestRunChecksOptions(t *testing.T) {
	path := filepath.Join(shortDir(t), "r.sock")
	st := newMemStore()
	tests := []struct {
		opts Options
		want string
	}{
		{Options{}, "run ingest server: no socket path"},
		{Options{Path: path}, "run ingest server: no acceptor"},
		{Options{Path: path, Acceptor: storeAcceptor(st)}, "run ingest server: no store"},
		{Options{Path: path, Acceptor: storeAcceptor(st), Store: st}, "run ingest server: no notification types (KnownType or Types)"},
	}
	for _, tc := range tests {
		if err := New(tc.opts).Run(context.Background()); err == nil || err.Error() != tc.want {
			t.Errorf("err %v, want %s", err, tc.want)
		}
	}
	ts := startServer(t, nil)
	if err := ts.Run(context.Background()); err == nil || err.Error() != "run ingest server: already run" {
		t.Fatalf("second Run: %v", err)
	}
}

// blockingAcceptor blocks each Accept until released (or its ctx ends).
type blockingAcceptor struct {
	entered chan struct{}
	release chan struct{}
	ctxErr  chan error
}

func newBlockingAcceptor() *blockingAcceptor {
	return &blockingAcceptor{entered: make(chan struct{}, 1), release: make(chan struct{}), ctxErr: make(chan error, 1)}
}

func (a *blockingAcceptor) Accept(ctx context.Context, events []relay.Event) ([]error, error) {
	a.entered <- struct{}{}
	select {
	case <-a.release:
		return make([]error, len(events)), nil
	case <-ctx.Done():
		a.ctxErr <- ctx.Err()
		return nil, ctx.Err()
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	acc := newBlockingAcceptor()
	ts := startServer(t, func(o *Options) { o.Acceptor = acc })
	type answer struct {
		r   response
		err error
	}
	answers := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://relayd/v1/events", strings.NewReader(ev("")))
		req.Header.Set("Content-Type", MediaTypeJSON)
		resp, err := ts.client.Do(req)
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		answers <- answer{r: response{status: resp.StatusCode, body: b.Bytes()}, err: err}
	}()
	<-acc.entered
	ts.cancel()
	// The listener closes first: the socket file goes away and new
	// connections are refused, while the request in flight waits.
	waitFor(t, "socket file removed", func() bool {
		_, err := os.Lstat(ts.Path())
		return errors.Is(err, os.ErrNotExist)
	})
	select {
	case err := <-ts.done:
		t.Fatalf("Run returned %v with a request in flight", err)
	default:
	}
	close(acc.release)
	a := <-answers
	if a.err != nil || a.r.status != http.StatusAccepted {
		t.Fatalf("in-flight request: %v %d %s", a.err, a.r.status, a.r.body)
	}
	if err := ts.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := os.Lstat(ts.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left: %v", err)
	}
}

func TestShutdownDrainDeadline(t *testing.T) {
	acc := newBlockingAcceptor()
	ts := startServer(t, func(o *Options) { o.Acceptor = acc; o.DrainTimeout = 50 * time.Millisecond })
	errs := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://relayd/v1/events", strings.NewReader(ev("")))
		req.Header.Set("Content-Type", MediaTypeJSON)
		resp, err := ts.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				err = fmt.Errorf("status %d", resp.StatusCode)
			} else {
				err = errors.New("503") // the handler won the race with Close
			}
		}
		errs <- err
	}()
	<-acc.entered
	if err := ts.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := <-acc.ctxErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("acceptor ctx: %v", err)
	}
	// The client sees its connection closed, or a 503 when the handler
	// answered before the close.
	if err := <-errs; err == nil || strings.HasPrefix(err.Error(), "status ") {
		t.Fatalf("request past the drain deadline: %v", err)
	}
	if _, err := os.Lstat(ts.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left: %v", err)
	}
}

// The socket's directory decides who can replace the socket: one others can
// write to, or owned by someone else, is refused with the path and the fix.
func TestSocketDirectoryChecked(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the socket path
		want  []string                              // in the error
	}{
		{"world-writable", func(t *testing.T, dir string) string {
			chmod(t, dir, 0o777)
			return filepath.Join(dir, "r.sock")
		}, []string{"is writable by group or others", "chmod go-w " + "DIR"}},
		{"group-writable", func(t *testing.T, dir string) string {
			chmod(t, dir, 0o770)
			return filepath.Join(dir, "r.sock")
		}, []string{"is writable by group or others"}},
		{"sticky world-writable", func(t *testing.T, dir string) string {
			chmod(t, dir, 0o1777)
			return filepath.Join(dir, "r.sock")
		}, []string{"is writable by group or others"}},
		{"writable parent", func(t *testing.T, dir string) string {
			chmod(t, dir, 0o777)
			sub := filepath.Join(dir, "sub")
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(sub, "r.sock")
		}, []string{"is writable by group or others"}},
		{"foreign owner", func(t *testing.T, dir string) string {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			if err := os.Chown(dir, 12345, 12345); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "r.sock")
		}, []string{"is owned by uid 12345", "chown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := shortDir(t)
			path := tc.setup(t, dir)
			err := runOnce(t, Options{Path: path})
			if err == nil {
				t.Fatal("served in an unsafe directory")
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "DIR", dir)
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), dir) {
				t.Fatalf("error %q does not name %s", err, dir)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("socket created anyway: %v", err)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode|os.ModeSticky*os.FileMode(mode>>9&1)); err != nil {
		t.Fatal(err)
	}
}

// A world-writable mode is refused: anyone could post events.
func TestSocketModeWorldWritableRefused(t *testing.T) {
	err := runOnce(t, Options{Path: filepath.Join(shortDir(t), "r.sock"), Mode: 0o666})
	if err == nil || !strings.Contains(err.Error(), "0666") {
		t.Fatalf("err %v", err)
	}
}

// With umask 0, the socket is never seen with a mode other than the one
// configured: it is created where no one else can reach it, and its mode is
// set before it appears at its path.
func TestSocketNeverReachableBeforeMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for range 30 {
		dir := shortDir(t)
		path := filepath.Join(dir, "r.sock")
		stop := make(chan struct{})
		bad := make(chan os.FileMode, 1)
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if fi, err := os.Lstat(path); err == nil && fi.Mode().Perm() != 0o600 {
					select {
					case bad <- fi.Mode():
					default:
					}
				}
			}
		})
		ts := startServer(t, func(o *Options) { o.Path = path; o.Mode = 0o600 })
		close(stop)
		wg.Wait()
		ts.client.CloseIdleConnections()
		if err := ts.stop(); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-bad:
			t.Fatalf("socket seen with mode %v before its mode was set", m)
		default:
		}
	}
}

// A batch reaches the Acceptor in chunks as it arrives: the first events
// are stored before the rest of the body is even sent.
// Work an accept leaves for after the answer (relay.RunAfterAnswer: the
// sends of a batch's jobs past its first few) runs once the poster has
// its answer, for one event and for a batch: here it waits for the answer
// to arrive, which it could not if it ran first. In a batch of several
// chunks, a chunk's work does not wait for the rest of the body.
func TestWorkAfterTheAnswer(t *testing.T) {
	answered := make(chan struct{}, 1)
	var mu sync.Mutex
	var ran []int
	late := false // the last chunk's work found no answer within 10 s
	st := newMemStore()
	ts := startServer(t, func(o *Options) {
		o.Store = st
		o.Acceptor = AcceptorFunc(func(ctx context.Context, events []relay.Event) ([]error, error) {
			n := len(events)
			queued := relay.RunAfterAnswer(ctx, func() {
				if n < batchChunkEvents { // the last chunk: after the answer
					select {
					case <-answered:
					case <-time.After(10 * time.Second):
						mu.Lock()
						late = true
						mu.Unlock()
					}
				}
				mu.Lock()
				ran = append(ran, n)
				mu.Unlock()
			})
			if !queued {
				return nil, errors.New("no AfterAnswer in the accept's context")
			}
			return st.AddEvents(ctx, events, time.Now())
		})
	})
	line := func(i int) string {
		return fmt.Sprintf(`{"id":"e%d","workspace":"w","user":"u","type":"otp_received"}`, i)
	}
	var batch strings.Builder
	for i := range batchChunkEvents + 3 {
		batch.WriteString(line(i) + "\n")
	}
	for _, tc := range []struct {
		name, ct, body string
		want           []int
	}{
		{"one event", MediaTypeJSON, line(-1), []int{1}},
		{"batch", MediaTypeNDJSON, batch.String(), []int{batchChunkEvents, 3}},
	} {
		mu.Lock()
		ran = nil
		mu.Unlock()
		r := ts.do(t, http.MethodPost, "/v1/events", tc.ct, []byte(tc.body))
		answered <- struct{}{}
		if r.status != http.StatusAccepted {
			t.Fatalf("%s: %d %s", tc.name, r.status, r.body)
		}
		waitFor(t, tc.name+": the work after the answer", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Equal(ran, tc.want)
		})
		mu.Lock()
		if late {
			t.Fatalf("%s: the work after the answer ran before it", tc.name)
		}
		mu.Unlock()
	}
}

func TestPostBatchStreamsToAcceptor(t *testing.T) {
	var mu sync.Mutex
	var calls []int
	first := make(chan struct{})
	st := newMemStore()
	ts := startServer(t, func(o *Options) {
		o.Store = st
		o.Acceptor = AcceptorFunc(func(ctx context.Context, events []relay.Event) ([]error, error) {
			mu.Lock()
			calls = append(calls, len(events))
			if len(calls) == 1 {
				close(first)
			}
			mu.Unlock()
			return st.AddEvents(ctx, events, time.Now())
		})
	})
	pr, pw := io.Pipe()
	line := func(i int) string {
		return fmt.Sprintf(`{"id":"e%d","workspace":"w","user":"u","type":"otp_received"}`+"\n", i)
	}
	go func() {
		for i := range batchChunkEvents + 10 {
			io.WriteString(pw, line(i))
		}
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(errors.New("the acceptor saw nothing before the end of the body"))
			return
		}
		for i := batchChunkEvents + 10; i < 3*batchChunkEvents; i++ {
			io.WriteString(pw, line(i))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, "http://relayd/v1/events", pr)
	req.Header.Set("Content-Type", MediaTypeNDJSON)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res Results
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	if len(res.Results) != 3*batchChunkEvents {
		t.Fatalf("%d results", len(res.Results))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range calls {
		if n > batchChunkEvents {
			t.Fatalf("acceptor calls %v: one larger than a chunk", calls)
		}
	}
}

// Batches in flight share a byte budget: one that does not fit is answered
// 503 with Retry-After before its body is read; the budget comes back when
// a batch is answered.
func TestPostBatchInflightBudget(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	ts := startServer(t, func(o *Options) {
		o.MaxInflightBytes = 1 << 20
		o.Acceptor = AcceptorFunc(func(ctx context.Context, events []relay.Event) ([]error, error) {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
			return make([]error, len(events)), nil
		})
	})
	body := strings.Repeat(ev("")+"\n", 10000) // about 700 KB
	post := func() *http.Response {
		req, _ := http.NewRequest(http.MethodPost, "http://relayd/v1/events", strings.NewReader(body))
		req.Header.Set("Content-Type", MediaTypeNDJSON)
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		return resp
	}
	first := make(chan *http.Response, 1)
	go func() { first <- post() }()
	<-entered
	if got := ts.InflightBytes(); got != int64(len(body)) {
		t.Fatalf("in flight %d, want %d", got, len(body))
	}
	second := post()
	b, _ := io.ReadAll(second.Body)
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "max_inflight_bytes") {
		t.Fatalf("second batch: %d %q %s", second.StatusCode, second.Header.Get("Retry-After"), b)
	}
	close(release)
	if r := <-first; r == nil || r.StatusCode != http.StatusAccepted {
		t.Fatalf("first batch: %v", r)
	} else {
		r.Body.Close()
	}
	waitFor(t, "the budget given back", func() bool { return ts.InflightBytes() == 0 })
	third := post()
	third.Body.Close()
	if third.StatusCode != http.StatusAccepted {
		t.Fatalf("third batch: %d", third.StatusCode)
	}
}
