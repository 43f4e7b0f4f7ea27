package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/relaytest/openapitest"
	"github.com/edgerelay/edgerelay/relay/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore is an in-memory store.Backend for tests.
type memStore struct {
	// Store makes memStore satisfy the interface as it grows; methods the
	// socket API never calls are left to it (calling one panics).
	store.Backend

	mu       sync.Mutex
	fail     error // returned by every call when set
	events   map[relay.EventKey]*store.Record
	devices  map[[3]string]relay.Device
	settings map[string]map[string]relay.Setting
	prefs    map[[2]string]map[string]bool
}

var _ store.Backend = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{
		events:   map[relay.EventKey]*store.Record{},
		devices:  map[[3]string]relay.Device{},
		settings: map[string]map[string]relay.Setting{},
		prefs:    map[[2]string]map[string]bool{},
	}
}

func (m *memStore) AddEvents(_ context.Context, events []relay.Event, at time.Time) ([]error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	errs := make([]error, len(events))
	for i, ev := range events {
		if _, ok := m.events[ev.Key()]; ok {
			errs[i] = relay.ErrDuplicate
			continue
		}
		m.events[ev.Key()] = &store.Record{Event: ev, ReceivedAt: at}
	}
	return errs, nil
}

func (m *memStore) AddDecided(ctx context.Context, events []relay.Event, decided []*store.Decided, at time.Time) ([]error, error) {
	errs, err := m.AddEvents(ctx, events, at)
	if err != nil {
		return nil, err
	}
	for i, d := range decided {
		if d != nil && errs[i] == nil {
			if err := m.Decide(ctx, events[i].Key(), d.Decision, d.Alert, d.Jobs); err != nil {
				return nil, err
			}
		}
	}
	return errs, nil
}

func (m *memStore) Event(_ context.Context, key relay.EventKey) (*store.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	rec, ok := m.events[key]
	if !ok {
		return nil, relay.ErrNotFound
	}
	c := *rec
	return &c, nil
}

func (m *memStore) Decide(_ context.Context, key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.events[key]
	if !ok {
		return relay.ErrNotFound
	}
	rec.Decision, rec.Alert, rec.Jobs = &d, alert, slices.Clone(jobs)
	return nil
}

func (m *memStore) Undecided(context.Context, time.Time, func(relay.Event) error) error { return nil }

func (m *memStore) RegisterDevice(_ context.Context, d relay.Device) ([]relay.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var taken []relay.Device
	for k, o := range m.devices {
		if o.Workspace == d.Workspace && o.Token == d.Token && (o.User != d.User || o.ID != d.ID) {
			taken = append(taken, o)
			delete(m.devices, k)
		}
	}
	m.devices[[3]string{d.Workspace, d.User, d.ID}] = d
	return taken, nil
}

func (m *memStore) Device(_ context.Context, ws, user, id string) (relay.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.devices[[3]string{ws, user, id}]
	if !ok {
		return relay.Device{}, relay.ErrNotFound
	}
	return d, nil
}

func (m *memStore) Devices(_ context.Context, ws, user string) ([]relay.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []relay.Device
	for k, d := range m.devices {
		if k[0] == ws && k[1] == user {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b relay.Device) int { return cmpString(a.ID, b.ID) })
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (m *memStore) DeleteDevice(_ context.Context, ws, user, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [3]string{ws, user, id}
	if _, ok := m.devices[k]; !ok {
		return relay.ErrNotFound
	}
	delete(m.devices, k)
	return nil
}

func (m *memStore) RemoveDeviceToken(_ context.Context, ws, user, id, token string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [3]string{ws, user, id}
	if d, ok := m.devices[k]; ok && d.Token == token {
		delete(m.devices, k)
		return true, nil
	}
	return false, nil
}

func (m *memStore) Settings(_ context.Context, ws string) (map[string]relay.Setting, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	return maps.Clone(m.settings[ws]), nil
}

func (m *memStore) PutSettings(_ context.Context, ws string, s map[string]relay.Setting) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.settings[ws] == nil {
		m.settings[ws] = map[string]relay.Setting{}
	}
	maps.Copy(m.settings[ws], s)
	return nil
}

func (m *memStore) Preferences(_ context.Context, ws, user string) (map[string]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.prefs[[2]string{ws, user}]), nil
}

func (m *memStore) PutPreferences(_ context.Context, ws, user string, p map[string]bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{ws, user}
	if m.prefs[k] == nil {
		m.prefs[k] = map[string]bool{}
	}
	maps.Copy(m.prefs[k], p)
	return nil
}

func (m *memStore) Close(context.Context) error { return nil }

// storeAcceptor accepts events into a store, as the pipeline does.
func storeAcceptor(st store.Backend) Acceptor {
	return AcceptorFunc(func(ctx context.Context, events []relay.Event) ([]error, error) {
		return st.AddEvents(ctx, events, time.Now())
	})
}

var testTypes = map[string]relay.Setting{
	relay.TypeOTPReceived:          relay.SettingEnabled,
	relay.TypeIdentityVerification: relay.SettingEnforced,
	relay.TypeNewTrustedDevice:     relay.SettingEnabled,
	relay.TypeAccountShared:        relay.SettingEnabled,
}

func knownTestType(t string) bool { _, ok := testTypes[t]; return ok }

// shortDir returns a short temporary directory (sun_path is 108 bytes).
func shortDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "rl")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testServer is a running Server with a client on its socket.
type testServer struct {
	*Server
	store  *memStore
	client *http.Client
	cancel context.CancelFunc
	done   chan error
}

// startServer runs a server on a fresh socket; edit adjusts its options.
// Cleanup stops it and checks Run's result.
func startServer(tb testing.TB, edit func(*Options)) *testServer {
	tb.Helper()
	st := newMemStore()
	opts := Options{
		Path:     filepath.Join(shortDir(tb), "r.sock"),
		Acceptor: storeAcceptor(st),
		Store:    st,
		Types:    func() map[string]relay.Setting { return testTypes },
		KnownApp: func(a string) bool { return a == "demo" },
	}
	if edit != nil {
		edit(&opts)
	}
	ts := &testServer{Server: New(opts), store: st, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- ts.Run(ctx) }()
	select {
	case <-ts.Ready():
	case err := <-ts.done:
		cancel()
		tb.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		tb.Fatal("server not ready after 10s")
	}
	ts.client = unixClient(opts.Path)
	// Every answer the tests see must match the OpenAPI document.
	ts.client.Transport = openapitest.New(tb, "socket", OpenAPI).Transport(tb, ts.client.Transport)
	tb.Cleanup(func() {
		ts.client.CloseIdleConnections()
		if err := ts.stop(); err != nil {
			tb.Errorf("run: %v", err)
		}
	})
	return ts
}

// stop cancels Run and waits for it (idempotent).
func (ts *testServer) stop() error {
	ts.cancel()
	err, ok := <-ts.done
	if ok {
		close(ts.done)
	}
	return err
}

func unixClient(path string) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to the test server.
func (ts *testServer) do(tb testing.TB, method, path, contentType string, body []byte) response {
	tb.Helper()
	req, err := http.NewRequest(method, "http://relayd"+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// decode unmarshals the body strictly into v.
func (r response) decode(tb testing.TB, v any) {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("decode %s: %v", r.body, err)
	}
}

// wantError checks a JSON error answer.
func (r response) wantError(tb testing.TB, status int, code, message string) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	var e ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		tb.Fatalf("decode error body %s: %v", r.body, err)
	}
	if e.Error.Code != code || (message != "" && e.Error.Message != message) {
		tb.Fatalf("error %q %q, want %q %q", e.Error.Code, e.Error.Message, code, message)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("Content-Type %q", ct)
	}
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errStoreDown = errors.New("disk on fire")
