package daemon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

func TestMain(m *testing.M) {
	bin, cleanup, err := buildRelayd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	relaydBin = bin
	code := m.Run()
	cleanup()
	if code == 0 {
		// The fakes, clients and streams of every test must be gone.
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var types = []string{relay.TypeIdentityVerification, relay.TypeNewTrustedDevice, relay.TypeAccountShared, relay.TypeOTPReceived}

// registerPhones gives a user an iPhone and an Android phone.
func (h *harness) registerPhones(ws, user string) (iosToken, androidToken string) {
	iosToken = hexToken(ws + "/" + user)
	androidToken = "fcm-" + ws + "-" + user
	h.put("/v1/workspaces/"+ws+"/users/"+user+"/devices/iphone", map[string]string{"platform": "ios", "token": iosToken, "app": "demo", "environment": "production"})
	h.put("/v1/workspaces/"+ws+"/users/"+user+"/devices/pixel", map[string]string{"platform": "android", "token": androidToken, "app": "demo"})
	return iosToken, androidToken
}

// TestEndToEndMatrix posts one event for each of the 24 combinations of type ×
// workspace setting × user preference and checks exactly the expected pushes
// arrive, with the right headers and payload.
func TestEndToEndMatrix(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start()
	defer h.stop(syscall.SIGTERM)

	states := []string{"enabled", "disabled", "enforced"}
	type combo struct {
		ws, user, typ, state string
		pref, want           bool
	}
	var combos []combo
	for _, st := range states {
		ws := "ws-" + st
		settings := map[string]string{}
		for _, typ := range types {
			settings[typ] = st
		}
		h.put("/v1/workspaces/"+ws+"/settings", settings)
		for _, pref := range []bool{true, false} {
			user := "u-" + strconv.FormatBool(pref)
			h.registerPhones(ws, user)
			prefs := map[string]bool{}
			for _, typ := range types {
				prefs[typ] = pref
			}
			h.put("/v1/workspaces/"+ws+"/users/"+user+"/preferences", prefs)
			for _, typ := range types {
				want := st == "enforced" || (st == "enabled" && pref)
				combos = append(combos, combo{ws, user, typ, st, pref, want})
			}
		}
	}
	if len(combos) != 24 {
		t.Fatalf("%d combos", len(combos))
	}
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var events []map[string]any
	wantPushes := 0
	for i, c := range combos {
		events = append(events, map[string]any{
			"id": fmt.Sprintf("evt-%d", i), "workspace": c.ws, "user": c.user, "type": c.typ,
			"title": "Title " + c.typ, "body": "Body " + c.typ, "data": map[string]string{"k": "v"},
			"expires_at": expires.Format(time.RFC3339),
		})
		if c.want {
			wantPushes++
		}
	}
	for _, r := range h.post(events...) {
		if r.Status != "accepted" {
			t.Fatalf("event %s: %s %s", r.ID, r.Status, r.Error)
		}
	}
	for i, c := range combos {
		id := fmt.Sprintf("evt-%d", i)
		waitFor(t, 20*time.Second, func() error { return h.settled(c.ws, id) })
		v, _ := h.event(c.ws, id)
		wantVerdict := map[bool]string{true: "deliver", false: "suppress"}[c.want]
		if v.Decision.Verdict != wantVerdict {
			t.Errorf("%+v: verdict %s (%s), want %s", c, v.Decision.Verdict, v.Decision.Reason, wantVerdict)
		}
		wantReason := map[string]string{"disabled": "workspace_disabled", "enforced": "enforced"}[c.state]
		if wantReason == "" {
			wantReason = map[bool]string{true: "enabled", false: "user_opt_out"}[c.pref]
		}
		if v.Decision.Reason != wantReason {
			t.Errorf("%+v: reason %q, want %q", c, v.Decision.Reason, wantReason)
		}
		wantState := map[bool]string{true: "delivered", false: "suppressed"}[c.want]
		if len(v.Deliveries) != 2 {
			t.Errorf("%+v: %d deliveries, want 2", c, len(v.Deliveries))
		}
		for _, d := range v.Deliveries {
			if d.State != wantState {
				t.Errorf("%+v: device %s state %s (%s), want %s", c, d.DeviceID, d.State, d.LastError, wantState)
			}
		}
	}

	apns, fcm := accepted(h.APNs.Pushes()), accepted(h.FCM.Pushes())
	if len(apns) != wantPushes || len(fcm) != wantPushes {
		t.Fatalf("pushes: apns %d fcm %d, want %d each", len(apns), len(fcm), wantPushes)
	}
	byCollapse := map[string]relaytest.Push{}
	for _, p := range apns {
		byCollapse[p.Header.Get("apns-collapse-id")] = p
	}
	fcmByCollapse := map[string]relaytest.Push{}
	for _, p := range fcm {
		fcmByCollapse[p.CollapseID()] = p
	}
	for i, c := range combos {
		if !c.want {
			continue
		}
		cid := pipeline.CollapseID(relay.EventKey{Workspace: c.ws, ID: fmt.Sprintf("evt-%d", i)})
		p, ok := byCollapse[cid]
		if !ok {
			t.Errorf("%+v: no APNs push with collapse id %s", c, cid)
			continue
		}
		actionable := c.typ == relay.TypeIdentityVerification || c.typ == relay.TypeNewTrustedDevice
		checkAPNs(t, c.typ, actionable, expires, p)
		fp, ok := fcmByCollapse[cid]
		if !ok {
			t.Errorf("%+v: no FCM push with collapse key %s", c, cid)
			continue
		}
		checkFCM(t, c.typ, actionable, fp)
	}
}

func checkAPNs(t *testing.T, typ string, actionable bool, expires time.Time, p relaytest.Push) {
	t.Helper()
	h := p.Header
	if got := h.Get("apns-topic"); got != topic {
		t.Errorf("%s: apns-topic %q", typ, got)
	}
	if got := h.Get("apns-push-type"); got != "alert" {
		t.Errorf("%s: apns-push-type %q, want alert", typ, got)
	}
	wantPrio := "10"
	if typ == relay.TypeAccountShared {
		wantPrio = "5"
	}
	if got := h.Get("apns-priority"); got != wantPrio {
		t.Errorf("%s: apns-priority %q, want %s", typ, got, wantPrio)
	}
	if got := h.Get("apns-expiration"); got != strconv.FormatInt(expires.Unix(), 10) {
		t.Errorf("%s: apns-expiration %q, want %d", typ, got, expires.Unix())
	}
	if got := p.Title(); got != "Title "+typ {
		t.Errorf("%s: title %q", typ, got)
	}
	if got := p.BodyText(); got != "Body "+typ {
		t.Errorf("%s: body %q", typ, got)
	}
	wantCat := ""
	if actionable {
		wantCat = "APPROVE_DENY"
	}
	if got := p.Category(); got != wantCat {
		t.Errorf("%s: category %q, want %q", typ, got, wantCat)
	}
	aps, _ := p.Payload["aps"].(map[string]any)
	level, _ := aps["interruption-level"].(string)
	if actionable && level != "time-sensitive" {
		t.Errorf("%s: interruption-level %q, want time-sensitive", typ, level)
	}
	if !actionable && level == "time-sensitive" {
		t.Errorf("%s: interruption-level time-sensitive on a non-actionable type", typ)
	}
}

func checkFCM(t *testing.T, typ string, actionable bool, p relaytest.Push) {
	t.Helper()
	msg := p.Payload
	android, _ := msg["android"].(map[string]any)
	wantPrio := "high"
	if typ == relay.TypeAccountShared {
		wantPrio = "normal"
	}
	if got, _ := android["priority"].(string); !strings.EqualFold(got, wantPrio) {
		t.Errorf("%s: android priority %q, want %s", typ, got, wantPrio)
	}
	if ttl, _ := android["ttl"].(string); ttl == "" || ttl == "0s" {
		t.Errorf("%s: android ttl %q, want the time left", typ, ttl)
	}
	_, hasNotification := msg["notification"]
	_, hasAndroidNotification := android["notification"]
	if actionable && (hasNotification || hasAndroidNotification) {
		t.Errorf("%s: actionable Android alert must be data-only, got notification: %s", typ, p.Body)
	}
	if !actionable && !hasNotification && !hasAndroidNotification {
		t.Errorf("%s: informational Android alert has no notification: %s", typ, p.Body)
	}
	data, _ := msg["data"].(map[string]any)
	if actionable {
		if data["title"] != "Title "+typ || data["actions"] == nil {
			t.Errorf("%s: data-only message lacks title/actions: %v", typ, data)
		}
	}
}

// TestDuplicateDeliveredOnce posts the same (workspace, id) twice.
func TestDuplicateDeliveredOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start()
	defer h.stop(syscall.SIGTERM)
	h.registerPhones("acme", "u-1")
	ev := map[string]any{"id": "dup-1", "workspace": "acme", "user": "u-1", "type": "otp_received", "title": "Code", "body": "Tap"}
	if r := h.post(ev); r[0].Status != "accepted" {
		t.Fatalf("first post: %+v", r)
	}
	r := h.post(ev)
	if r[0].Status != "duplicate" {
		t.Fatalf("second post: %+v, want duplicate", r)
	}
	// Also within one batch.
	r = h.post(map[string]any{"id": "dup-2", "workspace": "acme", "user": "u-1", "type": "otp_received"},
		map[string]any{"id": "dup-2", "workspace": "acme", "user": "u-1", "type": "otp_received"})
	if r[0].Status != "accepted" || r[1].Status != "duplicate" {
		t.Fatalf("batch with a repeat: %+v", r)
	}
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "dup-1") })
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "dup-2") })
	if n := len(accepted(h.APNs.Pushes())); n != 2 {
		t.Errorf("APNs got %d pushes, want 2 (one per distinct event)", n)
	}
	if n := len(accepted(h.FCM.Pushes())); n != 2 {
		t.Errorf("FCM got %d pushes, want 2", n)
	}
}

// TestExpiredNeverSent: an event already past expires_at, and one that
// expires while the provider fails.
func TestExpiredNeverSent(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start()
	defer h.stop(syscall.SIGTERM)
	ios, android := h.registerPhones("acme", "u-1")
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if r := h.post(map[string]any{"id": "old", "workspace": "acme", "user": "u-1", "type": "otp_received", "expires_at": past}); r[0].Status != "accepted" {
		t.Fatalf("%+v", r)
	}
	// The providers fail for longer than this OTP lives.
	h.APNs.Script(ios, relaytest.Rule{Status: 503, Reason: "ServiceUnavailable"})
	h.FCM.Script(android, relaytest.Rule{Status: 503, Reason: "UNAVAILABLE"})
	soon := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
	if r := h.post(map[string]any{"id": "short", "workspace": "acme", "user": "u-1", "type": "otp_received", "expires_at": soon}); r[0].Status != "accepted" {
		t.Fatalf("%+v", r)
	}
	for _, id := range []string{"old", "short"} {
		waitFor(t, 15*time.Second, func() error { return h.settled("acme", id) })
		v, _ := h.event("acme", id)
		for _, d := range v.Deliveries {
			if d.State != "expired" {
				t.Errorf("%s: device %s state %s, want expired", id, d.DeviceID, d.State)
			}
		}
	}
	for _, p := range accepted(append(h.APNs.Pushes(), h.FCM.Pushes()...)) {
		t.Errorf("a push was accepted by a provider: %s", p.String())
	}
}

// TestBadInputKeepsDaemonHealthy sends each kind of bad input and checks the
// error names the field, and that the daemon still delivers afterwards.
func TestBadInputKeepsDaemonHealthy(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start()
	defer h.stop(syscall.SIGTERM)
	h.registerPhones("acme", "u-1")
	tests := []struct {
		name, ctype, body string
		wantCode          int
		wantInError       string
	}{
		{"malformed json", "application/json", `{"id":`, 400, ""},
		{"unknown field", "application/json", `{"id":"a","workspace":"w","user":"u","type":"otp_received","colour":"red"}`, 400, "colour"},
		{"missing field", "application/json", `{"id":"a","workspace":"w","type":"otp_received"}`, 400, "user"},
		{"unknown type", "application/json", `{"id":"a","workspace":"w","user":"u","type":"pizza"}`, 400, "pizza"},
		{"oversize event", "application/json", `{"id":"a","workspace":"w","user":"u","type":"otp_received","body":"` + strings.Repeat("x", 17<<10) + `"}`, 413, ""},
		{"oversize batch", "application/x-ndjson", strings.Repeat(`{"id":"a","workspace":"w","user":"u","type":"otp_received"}`+"\n", 10_001), 413, "10000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.do("POST", "/v1/events", tc.ctype, []byte(tc.body))
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tc.wantCode, body)
			}
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
				t.Fatalf("error body not JSON {error:{code,message}}: %s", body)
			}
			if !strings.Contains(e.Error.Message, tc.wantInError) {
				t.Errorf("message %q does not name %q", e.Error.Message, tc.wantInError)
			}
		})
	}
	if code, _ := h.do("GET", "/healthz", "", nil); code != 200 {
		t.Fatalf("healthz %d after bad input", code)
	}
	if r := h.post(map[string]any{"id": "after", "workspace": "acme", "user": "u-1", "type": "account_shared"}); r[0].Status != "accepted" {
		t.Fatalf("%+v", r)
	}
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "after") })
	if v, _ := h.event("acme", "after"); v.Deliveries[0].State != "delivered" {
		t.Fatalf("not delivered after bad input: %+v", v)
	}
}

// TestSIGTERMDrainsAndRestartLosesNothing: with a slow provider, SIGTERM
// lets in-flight sends finish and closes the store; after a restart every
// accepted event is delivered.
func TestSIGTERMDrainsAndRestartLosesNothing(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.start()
	ios, android := h.registerPhones("acme", "u-1")
	h.APNs.Script(ios, relaytest.Rule{Latency: 300 * time.Millisecond})
	h.FCM.Script(android, relaytest.Rule{Latency: 300 * time.Millisecond})
	const n = 200
	var events []map[string]any
	for i := range n {
		events = append(events, map[string]any{"id": fmt.Sprintf("e-%d", i), "workspace": "acme", "user": "u-1", "type": "account_shared", "title": "shared"})
	}
	for _, r := range h.post(events...) {
		if r.Status != "accepted" {
			t.Fatalf("%+v", r)
		}
	}
	if code := h.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("relayd exit code %d after SIGTERM:\n%s", code, h.logs.String())
	}
	if !strings.Contains(h.logs.String(), "store closed") {
		t.Errorf("store not closed on SIGTERM:\n%s", h.logs.String())
	}
	h.APNs.ClearScript()
	h.FCM.ClearScript()
	h.start()
	defer h.stop(syscall.SIGTERM)
	for i := range n {
		id := fmt.Sprintf("e-%d", i)
		waitFor(t, 30*time.Second, func() error { return h.settled("acme", id) })
		v, _ := h.event("acme", id)
		for _, d := range v.Deliveries {
			if d.State != "delivered" {
				t.Fatalf("%s: device %s state %s after restart", id, d.DeviceID, d.State)
			}
		}
	}
	// Every event reached each provider at least once (at-least-once: an
	// ambiguous send cut by shutdown may repeat, with the same collapse id).
	seen := map[string]bool{}
	for _, p := range accepted(h.APNs.Pushes()) {
		seen[p.Header.Get("apns-collapse-id")] = true
	}
	if len(seen) != n {
		t.Fatalf("APNs saw %d distinct events, want %d", len(seen), n)
	}
}

// accepted keeps the pushes the fake answered with success.
func accepted(pushes []relaytest.Push) []relaytest.Push {
	var out []relaytest.Push
	for _, p := range pushes {
		if p.Status == 200 {
			out = append(out, p)
		}
	}
	return out
}

func collapse(ws, id string) string {
	return pipeline.CollapseID(relay.EventKey{Workspace: ws, ID: id})
}
