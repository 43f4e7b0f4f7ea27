package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/relaytest/openapitest"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testIssuer   = "upstream"
	testAudience = "edgerelay"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// testConfig returns a config with app "demo", the default notification
// types and HS256 auth from a secret file in dir.
func testConfig(tb testing.TB, dir string) *config.Config {
	tb.Helper()
	cfg := config.Default()
	cfg.API.Address = "127.0.0.1:0"
	cfg.Apps = []*config.App{{Name: "demo"}}
	secret := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(secret, append(testSecret, '\n'), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg.Auth = config.Auth{Issuer: testIssuer, Audience: testAudience, HS256SecretFile: secret, MaxTokenLifetime: config.DefaultMaxTokenLifetime}
	return cfg
}

// testServer is a running app API on a loopback port, with its store.
type testServer struct {
	tb    testing.TB
	srv   *Server
	st    *bolt.Store
	url   string
	hc    *http.Client
	clock *clock

	mu      sync.Mutex
	answers []relay.Answer // OnAnswer calls
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// startServer runs a server; edit may change the options first.
func startServer(tb testing.TB, edit func(*Options)) *testServer {
	tb.Helper()
	dir := tb.TempDir()
	ts := &testServer{tb: tb, st: bolttest.Open(tb), clock: &clock{now: time.Now().UTC().Truncate(time.Second)}}
	opts := Options{
		Config:    testConfig(tb, dir),
		Store:     ts.st,
		Logger:    hclog.NewNullLogger(),
		Now:       ts.clock.Now,
		UserRate:  1000,
		UserBurst: 1000,
		AddrRate:  1000,
		AddrBurst: 1000,
		OnAnswer: func(_ context.Context, a relay.Answer, _ *store.Record) {
			ts.mu.Lock()
			ts.answers = append(ts.answers, a)
			ts.mu.Unlock()
		},
	}
	if edit != nil {
		edit(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ts.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		tb.Fatal(err)
	}
	ts.url = "http://" + srv.Addr().String()
	// Every answer the tests see must match the OpenAPI document.
	ts.hc = &http.Client{Timeout: 10 * time.Second, Transport: openapitest.New(tb, "app", OpenAPI).Transport(tb, &http.Transport{})}
	tb.Cleanup(ts.hc.CloseIdleConnections)
	return ts
}

// token mints an HS256 token for user in ws with role, valid for an hour.
func (ts *testServer) token(ws, user, role string) string {
	now := ts.clock.Now()
	return mint(ts.tb, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": user, "ws": ws, "role": role,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
}

func mint(tb testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) errCode() string {
	var e ErrorBody
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func (r response) errMessage() string {
	var e ErrorBody
	json.Unmarshal(r.body, &e)
	return e.Error.Message
}

// do sends a request with an optional bearer token; body may be a string,
// []byte or a value to encode.
func (ts *testServer) do(method, path, token string, body any) response {
	ts.tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			ts.tb.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		ts.tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ts.hc.Do(req)
	if err != nil {
		ts.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// expect checks a response's status (and error code when code != "").
func expect(tb testing.TB, r response, status int, code string) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" && r.errCode() != code {
		tb.Fatalf("error code %q, want %q; body %s", r.errCode(), code, r.body)
	}
}

// registerDevice registers a device for a user and fails the test if it
// is refused.
func (ts *testServer) registerDevice(ws, user, id, token string) {
	ts.tb.Helper()
	r := ts.do("PUT", "/v1/devices/"+id, ts.token(ws, user, RoleUser),
		map[string]string{"platform": "ios", "token": token, "app": "demo"})
	expect(ts.tb, r, 200, "")
}

// addEvent stores an actionable event for user and decides it delivered.
func (ts *testServer) addEvent(ws, id, user string, ttl time.Duration, devices ...string) {
	ts.tb.Helper()
	ctx := context.Background()
	ev := relay.Event{ID: id, Workspace: ws, User: user, Type: relay.TypeIdentityVerification,
		Title: "Confirm sign-in", Actions: []string{"approve", "deny"}, ExpiresAt: ts.clock.Now().Add(ttl)}
	errs, err := ts.st.AddEvents(ctx, []relay.Event{ev}, ts.clock.Now())
	if err != nil || errs[0] != nil {
		ts.tb.Fatalf("add event: %v %v", err, errs)
	}
	var jobs []relay.Job
	for _, d := range devices {
		jobs = append(jobs, relay.Job{Event: ev.Key(), DeviceID: d, Platform: relay.PlatformIOS, State: relay.StateDelivered, ExpiresAt: ev.ExpiresAt})
	}
	alert := &relay.Alert{EventID: id, Workspace: ws, Type: ev.Type, Title: ev.Title, Actions: ev.Actions, CollapseID: "c-" + id, ExpiresAt: ev.ExpiresAt}
	if err := ts.st.Decide(ctx, ev.Key(), relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnforced}, alert, jobs); err != nil {
		ts.tb.Fatal(err)
	}
}

// dialRaw opens a TCP connection to the server.
func (ts *testServer) dialRaw() net.Conn {
	ts.tb.Helper()
	c, err := net.Dial("tcp", ts.srv.Addr().String())
	if err != nil {
		ts.tb.Fatal(err)
	}
	ts.tb.Cleanup(func() { c.Close() })
	return c
}
