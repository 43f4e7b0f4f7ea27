package daemon_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/relaytest"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// Delivery guarantees end to end (issue 5): faults, crashes, expiry, token
// removal, the circuit breaker and dead letters, against relayd as a
// subprocess.

// registerUsers gives each of n users of ws an iPhone and an Android phone.
func (h *harness) registerUsers(ws string, n int) {
	h.t.Helper()
	for u := range n {
		h.registerPhones(ws, fmt.Sprintf("u-%d", u))
	}
}

// loadEvents returns n account_shared events spread over users users of ws,
// expiring at expires.
func loadEvents(ws string, n, users int, expires time.Time) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{"id": eventID(i), "workspace": ws, "user": fmt.Sprintf("u-%d", i%users),
			"type": relay.TypeAccountShared, "title": "shared", "expires_at": expires.UTC().Format(time.RFC3339Nano)}
	}
	return out
}

// tryPost posts events as NDJSON and returns the results, or an error when
// relayd did not answer 202 (down, restarting, full).
func (h *harness) tryPost(events []map[string]any) ([]result, error) {
	var buf bytes.Buffer
	for _, e := range events {
		b, _ := json.Marshal(e)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	req, _ := http.NewRequest("POST", "http://relayd/v1/events", &buf)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := h.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 202 {
		return nil, fmt.Errorf("POST /v1/events: %d %s", resp.StatusCode, body)
	}
	var out struct{ Results []result }
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}

// queueState returns GET /v1/queue.
func (h *harness) queueState() (open int, lanes []map[string]any) {
	h.t.Helper()
	code, body := h.do("GET", "/v1/queue", "", nil)
	if code != 200 {
		h.t.Fatalf("GET /v1/queue: %d %s", code, body)
	}
	var q struct {
		Open  int              `json:"open_jobs"`
		Lanes []map[string]any `json:"lanes"`
	}
	if err := json.Unmarshal(body, &q); err != nil {
		h.t.Fatal(err)
	}
	return q.Open, q.Lanes
}

// drained waits until no job is open and every event id(0)..id(n-1) is
// decided and settled, and returns them.
func (h *harness) drained(timeout time.Duration, ws string, n int, id func(int) string) []eventView {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	waitFor(h.t, timeout, func() error {
		if open, _ := h.queueState(); open > 0 {
			return fmt.Errorf("%d jobs open", open)
		}
		return nil
	})
	for {
		vs := h.events(ws, n, id)
		i := slices.IndexFunc(vs, func(v eventView) bool { return v.open(ws) != nil })
		if i < 0 {
			return vs
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %v: %v", timeout, vs[i].open(ws))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pushStats counts, per provider, accepted pushes by (token, collapse id):
// the distinct events delivered and the duplicates.
type pushStats struct {
	delivered  map[string]bool // collapse id (any provider)
	duplicates int
	late       int // accepted at or after the event's expiry
}

func countPushes(all []relaytest.Push, expires map[string]time.Time) pushStats {
	s := pushStats{delivered: map[string]bool{}}
	seen := map[string]int{}
	for _, p := range all {
		if p.Status != 200 {
			continue
		}
		cid := p.CollapseID()
		s.delivered[cid] = true
		k := p.Provider + "/" + p.Token + "/" + cid
		seen[k]++
		if seen[k] > 1 {
			s.duplicates++
		}
		if exp, ok := expires[cid]; ok && !p.Time.Before(exp) {
			s.late++
		}
	}
	return s
}

// TestFaultInjection: the fakes answer 30% of requests with 503, 500 or
// 429 (with Retry-After) and reset 5% of streams; every event is delivered
// to both phones, none after its expiry, and duplicates are counted.
func TestFaultInjection(t *testing.T) {
	n := envInt("EDGERELAY_FAULT_EVENTS", 10_000)
	if testing.Short() {
		n = 1000
	}
	h := newHarness(t, harnessOptions{logLevel: "warn"})
	h.start()
	defer h.stop(syscall.SIGTERM)
	const users = 100
	h.registerUsers("acme", users)
	// Rules apply in order, each with its probability of the requests the
	// ones before let through: 10% + 10% + 10% + 5% overall.
	h.APNs.Script("", relaytest.Rule{Reason: "ServiceUnavailable", Probability: 0.10})
	h.APNs.Script("", relaytest.Rule{Reason: "InternalServerError", Probability: 0.10 / 0.90})
	h.APNs.Script("", relaytest.Rule{Reason: "TooManyRequests", RetryAfter: "1", Probability: 0.10 / 0.80})
	h.APNs.Script("", relaytest.Rule{Action: relaytest.ActionResetStream, Probability: 0.05 / 0.70})
	h.FCM.Script("", relaytest.Rule{Status: 503, RetryAfter: "1", Probability: 0.10})
	h.FCM.Script("", relaytest.Rule{Status: 500, Probability: 0.10 / 0.90})
	h.FCM.Script("", relaytest.Rule{Status: 429, RetryAfter: "1", Probability: 0.10 / 0.80})
	h.FCM.Script("", relaytest.Rule{Action: relaytest.ActionResetStream, Probability: 0.05 / 0.70})

	start := time.Now()
	expiresAt := start.Add(10 * time.Minute)
	events := loadEvents("acme", n, users, expiresAt)
	expires := map[string]time.Time{}
	for i := 0; i < n; i += 1000 {
		batch := events[i:min(i+1000, n)]
		for _, r := range h.post(batch...) {
			if r.Status != "accepted" {
				t.Fatalf("%+v", r)
			}
		}
		for _, e := range batch {
			expires[pipeline.CollapseID(relay.EventKey{Workspace: "acme", ID: e["id"].(string)})] = expiresAt
		}
	}
	vs := h.drained(3*time.Minute, "acme", n, eventID)
	took := time.Since(start)
	for i, v := range vs {
		for _, d := range v.Deliveries {
			if d.State != "delivered" {
				t.Fatalf("event e-%d device %s: %s (%s)", i, d.DeviceID, d.State, d.LastError)
			}
		}
	}
	apns, fcm := countPushes(h.APNs.Pushes(), expires), countPushes(h.FCM.Pushes(), expires)
	if len(apns.delivered) != n || len(fcm.delivered) != n {
		t.Fatalf("distinct events delivered: apns %d fcm %d, want %d each", len(apns.delivered), len(fcm.delivered), n)
	}
	if apns.late+fcm.late > 0 {
		t.Fatalf("%d pushes accepted after their expiry", apns.late+fcm.late)
	}
	faults := 0
	for _, p := range append(h.APNs.Pushes(), h.FCM.Pushes()...) {
		if p.Status != 200 {
			faults++
		}
	}
	t.Logf("fault injection: %d events x 2 phones delivered in %v; %d APNs + %d FCM requests, %d faults answered; duplicates: apns %d fcm %d (each with the same collapse id)",
		n, took.Round(time.Millisecond), h.APNs.Requests(), h.FCM.Requests(), faults, apns.duplicates, fcm.duplicates)
}

// TestCrashSIGKILL: relayd is killed with SIGKILL at random moments during
// a load against fakes with 20 ms latency; after the last restart every
// accepted event is delivered or expired, none lost.
func TestCrashSIGKILL(t *testing.T) {
	n, kills := envInt("EDGERELAY_CRASH_EVENTS", 20_000), 10
	if testing.Short() {
		n, kills = 2000, 3
	}
	h := newHarness(t, harnessOptions{logLevel: "warn"})
	h.start()
	const users = 50
	h.registerUsers("acme", users)
	h.APNs.Script("", relaytest.Rule{Latency: 20 * time.Millisecond})
	h.FCM.Script("", relaytest.Rule{Latency: 20 * time.Millisecond})
	expiresAt := time.Now().Add(10 * time.Minute)
	events := loadEvents("acme", n, users, expiresAt)

	// The loader posts batches until each is answered: a batch whose answer
	// was lost is posted again and its stored events come back duplicate.
	var mu sync.Mutex
	accepted := 0
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		for i := 0; i < n; i += 500 {
			batch := events[i:min(i+500, n)]
			for {
				res, err := h.tryPost(batch)
				if err == nil {
					mu.Lock()
					for _, r := range res {
						if r.Status == "accepted" || r.Status == "duplicate" {
							accepted++
						}
					}
					mu.Unlock()
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for k := range kills {
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		h.mu.Lock()
		cmd := h.cmd
		h.mu.Unlock()
		cmd.Process.Signal(syscall.SIGKILL)
		<-h.exited
		h.mu.Lock()
		h.cmd = nil
		h.mu.Unlock()
		mu.Lock()
		t.Logf("kill %d: %d events accepted so far", k+1, accepted)
		mu.Unlock()
		// What the kill left passes the store check: the schedule agrees
		// with the open jobs (no job left that would never be sent).
		if err := bolt.Check(filepath.Join(h.dir, "data", "relay.db")); err != nil {
			t.Fatalf("kill %d: %v", k+1, err)
		}
		h.start()
	}
	<-loaded
	defer h.stop(syscall.SIGTERM)
	if accepted != n {
		t.Fatalf("%d of %d events accepted", accepted, n)
	}
	vs := h.drained(2*time.Minute, "acme", n, eventID)
	expires := map[string]time.Time{}
	lost := 0
	for i, v := range vs {
		id := eventID(i)
		expires[pipeline.CollapseID(relay.EventKey{Workspace: "acme", ID: id})] = expiresAt
		if len(v.Deliveries) != 2 {
			t.Errorf("event %s has %d deliveries, want 2", id, len(v.Deliveries))
		}
		for _, d := range v.Deliveries {
			if d.State != "delivered" && d.State != "expired" {
				lost++
				t.Errorf("event %s device %s: %s (%s)", id, d.DeviceID, d.State, d.LastError)
			}
		}
	}
	apns, fcm := countPushes(h.APNs.Pushes(), expires), countPushes(h.FCM.Pushes(), expires)
	if len(apns.delivered) != n || len(fcm.delivered) != n {
		t.Fatalf("distinct events delivered: apns %d fcm %d, want %d each", len(apns.delivered), len(fcm.delivered), n)
	}
	t.Logf("crash test: %d events, %d SIGKILLs, lost %d, duplicates apns %d fcm %d (pushes repeated after a kill, same collapse id)",
		n, kills, lost, apns.duplicates, fcm.duplicates)
}

// eventID names the crash and fault tests' events.
func eventID(i int) string { return fmt.Sprintf("e-%d", i) }

// TestOTPExpiresDuringOutage: an OTP living 3 s while the providers fail
// for 5 s is never delivered and reads expired.
func TestOTPExpiresDuringOutage(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start()
	defer h.stop(syscall.SIGTERM)
	ios, android := h.registerPhones("acme", "u-1")
	h.APNs.Script(ios, relaytest.Rule{Reason: "ServiceUnavailable"})
	h.FCM.Script(android, relaytest.Rule{Status: 503})
	start := time.Now()
	if r := h.post(map[string]any{"id": "otp", "workspace": "acme", "user": "u-1", "type": relay.TypeOTPReceived,
		"expires_at": start.Add(3 * time.Second).UTC().Format(time.RFC3339Nano)}); r[0].Status != "accepted" {
		t.Fatalf("%+v", r)
	}
	waitFor(t, 5*time.Second, func() error {
		if time.Since(start) < 5*time.Second {
			return errors.New("providers still failing")
		}
		return nil
	})
	h.APNs.ClearScript()
	h.FCM.ClearScript()
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "otp") })
	v, _ := h.event("acme", "otp")
	for _, d := range v.Deliveries {
		if d.State != "expired" {
			t.Errorf("device %s: %s, want expired", d.DeviceID, d.State)
		}
	}
	for _, p := range accepted(append(h.APNs.Pushes(), h.FCM.Pushes()...)) {
		t.Errorf("OTP delivered after all: %s", p.String())
	}
	if h.APNs.Requests() == 0 || h.FCM.Requests() == 0 {
		t.Errorf("no attempt made (apns %d, fcm %d)", h.APNs.Requests(), h.FCM.Requests())
	}
}

// TestTokenRemoval: a dead token removes the device; a device that
// re-registers with a new token while a send to its old token is in flight
// keeps the new token and gets the alert on it.
func TestTokenRemoval(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start()
	defer h.stop(syscall.SIGTERM)
	ios, android := h.registerPhones("acme", "u-1")
	h.APNs.Unregister(ios, time.Now())
	h.FCM.Unregister(android)
	h.post(map[string]any{"id": "dead", "workspace": "acme", "user": "u-1", "type": relay.TypeAccountShared})
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "dead") })
	v, _ := h.event("acme", "dead")
	for _, d := range v.Deliveries {
		if d.State != "token_removed" {
			t.Errorf("device %s: %s, want token_removed", d.DeviceID, d.State)
		}
	}
	for _, dev := range []string{"iphone", "pixel"} {
		if code, body := h.do("GET", "/v1/workspaces/acme/users/u-1/devices/"+dev, "", nil); code != 404 {
			t.Errorf("device %s after a dead token: %d %s, want 404", dev, code, body)
		}
	}

	// The race: the old token's send is slow and answered 410; meanwhile
	// the phone registers a new token.
	old, fresh := hexToken("old-token"), hexToken("new-token")
	h.put("/v1/workspaces/acme/users/u-2/devices/iphone", map[string]string{"platform": "ios", "token": old, "app": "demo"})
	h.APNs.Script(old, relaytest.Rule{Latency: time.Second, Reason: "Unregistered"})
	before := h.APNs.Requests()
	h.post(map[string]any{"id": "race", "workspace": "acme", "user": "u-2", "type": relay.TypeAccountShared})
	waitFor(t, 5*time.Second, func() error {
		if h.APNs.Requests() == before {
			return errors.New("send to the old token not in flight yet")
		}
		return nil
	})
	h.put("/v1/workspaces/acme/users/u-2/devices/iphone", map[string]string{"platform": "ios", "token": fresh, "app": "demo"})
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "race") })
	code, body := h.do("GET", "/v1/workspaces/acme/users/u-2/devices/iphone", "", nil)
	if code != 200 || !strings.Contains(string(body), fresh) {
		t.Fatalf("re-registered device: %d %s, want kept with the new token", code, body)
	}
	v, _ = h.event("acme", "race")
	if v.Deliveries[0].State != "delivered" {
		t.Fatalf("race event: %+v, want delivered to the new token", v.Deliveries[0])
	}
	got := false
	for _, p := range accepted(h.APNs.Pushes()) {
		got = got || p.Token == fresh
	}
	if !got {
		t.Fatal("no push accepted for the new token")
	}
}

// TestBreakerInvalidProviderToken: APNs rejects the relay's key; the lane's
// breaker opens after a few errors (one ERROR line), jobs wait without
// spending attempts, and once the key is accepted again they are delivered.
func TestBreakerInvalidProviderToken(t *testing.T) {
	h := newHarness(t, harnessOptions{logLevel: "info"})
	h.start()
	h.registerPhones("acme", "u-1")
	h.APNs.Script("", relaytest.Rule{Reason: "InvalidProviderToken"})
	const n = 20
	var events []map[string]any
	for i := range n {
		events = append(events, map[string]any{"id": fmt.Sprintf("e-%d", i), "workspace": "acme", "user": "u-1", "type": relay.TypeAccountShared})
	}
	h.post(events...)
	waitFor(t, 10*time.Second, func() error {
		for _, l := range func() []map[string]any { _, l := h.queueState(); return l }() {
			if l["lane"] == "demo/ios" && l["breaker"] == "open" {
				return nil
			}
		}
		return errors.New("breaker not open")
	})
	// Android is unaffected.
	for i := range n {
		id := fmt.Sprintf("e-%d", i)
		waitFor(t, 10*time.Second, func() error {
			v, _ := h.event("acme", id)
			for _, d := range v.Deliveries {
				if d.DeviceID == "pixel" && d.State != "delivered" {
					return fmt.Errorf("%s pixel %s", id, d.State)
				}
			}
			return nil
		})
	}
	reqs := h.APNs.Requests()
	if reqs > n {
		t.Errorf("%d APNs requests with the breaker open, want at most one per job (%d)", reqs, n)
	}
	h.APNs.ClearScript()
	for i := range n {
		id := fmt.Sprintf("e-%d", i)
		waitFor(t, 30*time.Second, func() error { return h.settled("acme", id) })
		v, _ := h.event("acme", id)
		for _, d := range v.Deliveries {
			if d.State != "delivered" || d.Attempts > 3 {
				t.Errorf("%s device %s: %s after %d attempts, want delivered in <= 3", id, d.DeviceID, d.State, d.Attempts)
			}
		}
	}
	h.stop(syscall.SIGTERM)
	logs := h.logs.String()
	if c := strings.Count(logs, "PROVIDER CONFIGURATION ERROR"); c != 1 {
		t.Errorf("%d loud breaker lines, want 1:\n%s", c, logs)
	}
	if !strings.Contains(logs, "circuit breaker closed") {
		t.Errorf("no breaker-closed line:\n%s", logs)
	}
}

var (
	relayctlOnce sync.Once
	relayctlBin  string
	relayctlErr  error
)

// relayctl runs the relayctl binary (built once) against h's socket.
func (h *harness) relayctl(args ...string) (string, error) {
	h.t.Helper()
	relayctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "relayctl-bin")
		if err != nil {
			relayctlErr = err
			return
		}
		relayctlBin = filepath.Join(dir, "relayctl")
		cmd := exec.Command("go", "build", "-o", relayctlBin, "github.com/edgerelay/edgerelay/cmd/relayctl")
		cmd.Stderr = os.Stderr
		relayctlErr = cmd.Run()
	})
	if relayctlErr != nil {
		h.t.Fatalf("build relayctl: %v", relayctlErr)
	}
	out, err := exec.Command(relayctlBin, append([]string{"-socket", h.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// TestDeadLetters: a permanent failure reads failed and is listed as a
// dead letter; it is replayed through the socket and through relayctl.
func TestDeadLetters(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start()
	defer h.stop(syscall.SIGTERM)
	for _, u := range []string{"u-1", "u-2"} {
		tok := hexToken(u)
		h.put("/v1/workspaces/acme/users/"+u+"/devices/iphone", map[string]string{"platform": "ios", "token": tok, "app": "demo"})
		h.APNs.Script(tok, relaytest.Rule{Reason: "PayloadTooLarge", Times: 1})
		h.post(map[string]any{"id": "big-" + u, "workspace": "acme", "user": u, "type": relay.TypeAccountShared})
		waitFor(t, 10*time.Second, func() error { return h.settled("acme", "big-"+u) })
		if v, _ := h.event("acme", "big-"+u); v.Deliveries[0].State != "failed" || !strings.Contains(v.Deliveries[0].LastError, "PayloadTooLarge") {
			t.Fatalf("delivery %+v, want failed with the reason", v.Deliveries[0])
		}
	}
	code, body := h.do("GET", "/v1/deadletters?limit=1", "", nil)
	var list struct {
		DeadLetters []struct {
			ID     string         `json:"id"`
			Event  relay.EventKey `json:"event"`
			Reason string         `json:"reason"`
		} `json:"dead_letters"`
		Next string `json:"next"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.DeadLetters) != 1 || list.Next == "" {
		t.Fatalf("GET /v1/deadletters?limit=1: %d %s", code, body)
	}
	newest := list.DeadLetters[0]
	if newest.Event.ID != "big-u-2" || !strings.Contains(newest.Reason, "PayloadTooLarge") {
		t.Fatalf("newest dead letter %+v", newest)
	}
	code, body = h.do("GET", "/v1/deadletters?after="+list.Next, "", nil)
	if code != 200 || !strings.Contains(string(body), "big-u-1") {
		t.Fatalf("second page: %d %s", code, body)
	}
	// Replay through the socket.
	if code, body := h.do("POST", "/v1/deadletters/"+newest.ID+"/replay", "", nil); code != 200 {
		t.Fatalf("replay: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "big-u-2") })
	if v, _ := h.event("acme", "big-u-2"); v.Deliveries[0].State != "delivered" {
		t.Fatalf("replayed delivery %+v", v.Deliveries[0])
	}
	if code, _ := h.do("POST", "/v1/deadletters/"+newest.ID+"/replay", "", nil); code != 409 {
		t.Fatalf("second replay: %d, want 409", code)
	}
	if code, _ := h.do("POST", "/v1/deadletters/12345/replay", "", nil); code != 404 {
		t.Fatalf("unknown dead letter: %d, want 404", code)
	}

	// And through relayctl.
	out, err := h.relayctl("dlq", "list")
	if err != nil || !strings.Contains(out, "big-u-1") || !strings.Contains(out, "PayloadTooLarge") {
		t.Fatalf("relayctl dlq list: %v\n%s", err, out)
	}
	older := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "big-u-1") {
			older = strings.Fields(line)[0]
		}
	}
	if _, err := strconv.Atoi(older); err != nil {
		t.Fatalf("no id for big-u-1 in:\n%s", out)
	}
	if out, err := h.relayctl("dlq", "replay", older); err != nil || !strings.Contains(out, "pending") {
		t.Fatalf("relayctl dlq replay: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "big-u-1") })
	if v, _ := h.event("acme", "big-u-1"); v.Deliveries[0].State != "delivered" {
		t.Fatalf("replayed delivery %+v", v.Deliveries[0])
	}
	if out, err := h.relayctl("dlq", "replay", older); err == nil || !strings.Contains(out, "409") {
		t.Fatalf("second relayctl replay: %v\n%s", err, out)
	}
}

// currentRSS returns a process's resident set size (VmRSS) in MiB.
func currentRSS(tb testing.TB, pid int) float64 { return procStatus(tb, pid, "VmRSS:") }

// procStatus returns a kB field of /proc/PID/status in MiB.
func procStatus(tb testing.TB, pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkOutageRSS measures relayd's memory while APNs is down (every
// push answered 503) and 200,000 jobs are open (override with
// EDGERELAY_OUTAGE_JOBS): steady-state RSS over 30 s once all are queued.
// Run with: go test -run '^$' -bench BenchmarkOutageRSS -benchtime 1x ./relay/daemon/
func BenchmarkOutageRSS(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("EDGERELAY_OUTAGE_JOBS")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		h := newHarness(b, harnessOptions{logLevel: "warn", retry: "initial = \"1s\"\n  max = \"1m\"\n  jitter = 1"})
		h.start()
		const users = 200
		for u := range users {
			user := fmt.Sprintf("u-%d", u)
			h.put("/v1/workspaces/acme/users/"+user+"/devices/iphone", map[string]string{"platform": "ios", "token": hexToken(user), "app": "demo"})
		}
		h.APNs.Script("", relaytest.Rule{Reason: "ServiceUnavailable"})
		rss0 := currentRSS(b, h.pid())
		start := time.Now()
		events := loadEvents("acme", n, users, time.Now().Add(time.Hour))
		for i := 0; i < n; i += 5000 {
			if _, err := h.tryPost(events[i:min(i+5000, n)]); err != nil {
				b.Fatal(err)
			}
		}
		waitFor(b, 5*time.Minute, func() error {
			if open, _ := h.queueState(); open < n {
				return fmt.Errorf("%d of %d jobs open", open, n)
			}
			return nil
		})
		queued := time.Since(start)
		var samples []float64
		depth, anon := 0.0, 0.0
		for range 30 {
			time.Sleep(time.Second)
			samples = append(samples, currentRSS(b, h.pid()))
			anon = procStatus(b, h.pid(), "RssAnon:")
			_, lanes := h.queueState()
			for _, l := range lanes {
				if l["lane"] == "demo/ios" {
					depth = max(depth, l["depth"].(float64))
				}
			}
		}
		peak := peakRSS(b, h.pid())
		h.stop(syscall.SIGTERM)
		steady := samples[len(samples)-1]
		mx := 0.0
		for _, s := range samples {
			mx = max(mx, s)
		}
		fi, _ := os.Stat(filepath.Join(h.dir, "data", "relay.db"))
		b.ReportMetric(steady, "steady-rss-MiB")
		b.ReportMetric(peak, "peak-rss-MiB")
		b.ReportMetric(anon, "steady-anon-MiB")
		b.Logf("outage: %d open jobs queued in %v; RSS idle %.0f MiB, steady %.0f MiB (max %.0f over 30 s; anonymous %.0f MiB, the rest is the store's mmap), peak %.0f MiB; max jobs in memory %.0f; APNs requests %d; store %.0f MiB",
			n, queued.Round(time.Millisecond), rss0, steady, mx, anon, peak, depth, h.APNs.Requests(), float64(fi.Size())/(1<<20))
	}
}

// envInt reads a test size from the environment (make test shrinks the
// longest e2e tests to fit the CI budget; run them full size by hand).
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
