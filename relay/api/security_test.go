package api

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
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

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

// claims returns valid claims at now; edit changes them.
func claims(now time.Time, edit func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "alice", "ws": "acme", "role": "user",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func TestAuthHS256(t *testing.T) {
	ts := startServer(t, nil)
	now := ts.clock.Now()
	hs := func(edit func(jwt.MapClaims)) string {
		return mint(t, jwt.SigningMethodHS256, testSecret, claims(now, edit))
	}
	valid := hs(nil)
	parts := strings.Split(valid, ".")
	tampered := func() string {
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		payload = []byte(strings.Replace(string(payload), `"role":"user"`, `"role":"owner"`, 1))
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	}()
	none := func() string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(now, nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	hs384 := mint(t, jwt.SigningMethodHS384, testSecret, claims(now, nil))
	tests := []struct {
		name   string
		header string // full Authorization header; "" means none
		status int
	}{
		{"valid", "Bearer " + valid, 200},
		{"lowercase scheme", "bearer " + valid, 200},
		{"no header", "", 401},
		{"basic scheme", "Basic " + valid, 401},
		{"empty bearer", "Bearer ", 401},
		{"garbage", "Bearer not.a.jwt", 401},
		{"forged signature", "Bearer " + mint(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims(now, nil)), 401},
		{"tampered payload", "Bearer " + tampered, 401},
		{"signature stripped", "Bearer " + parts[0] + "." + parts[1] + ".", 401},
		{"alg none", "Bearer " + none, 401},
		{"alg HS384 with the right secret", "Bearer " + hs384, 401},
		{"wrong issuer", "Bearer " + hs(func(c jwt.MapClaims) { c["iss"] = "evil" }), 401},
		{"wrong audience", "Bearer " + hs(func(c jwt.MapClaims) { c["aud"] = "other" }), 401},
		{"audience list with ours", "Bearer " + hs(func(c jwt.MapClaims) { c["aud"] = []string{"other", testAudience} }), 200},
		{"expired", "Bearer " + hs(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), 401},
		{"expired within leeway", "Bearer " + hs(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }), 200},
		{"not yet valid", "Bearer " + hs(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), 401},
		{"nbf within leeway", "Bearer " + hs(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Second).Unix() }), 200},
		{"missing exp", "Bearer " + hs(func(c jwt.MapClaims) { delete(c, "exp") }), 401},
		{"missing iss", "Bearer " + hs(func(c jwt.MapClaims) { delete(c, "iss") }), 401},
		{"missing aud", "Bearer " + hs(func(c jwt.MapClaims) { delete(c, "aud") }), 401},
		{"missing sub", "Bearer " + hs(func(c jwt.MapClaims) { delete(c, "sub") }), 401},
		{"missing ws", "Bearer " + hs(func(c jwt.MapClaims) { delete(c, "ws") }), 401},
		{"missing role", "Bearer " + hs(func(c jwt.MapClaims) { delete(c, "role") }), 401},
		{"unknown role", "Bearer " + hs(func(c jwt.MapClaims) { c["role"] = "root" }), 401},
		{"ws with a bidi override", "Bearer " + hs(func(c jwt.MapClaims) { c["ws"] = "acme\u202eother" }), 401},
		{"sub not a string", "Bearer " + hs(func(c jwt.MapClaims) { c["sub"] = 42 }), 401},
		{"huge token", "Bearer " + strings.Repeat("a", 9000), 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := must(t, ts, "GET", "/v1/devices", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := ts.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 401 {
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if strings.Contains(string(body), "signature") || strings.Contains(string(body), "secret") {
					t.Errorf("401 body leaks details: %s", body)
				}
			}
		})
	}
}

// TestAuthPublicKeys: EdDSA and RS256 keys accept their own algorithm and
// refuse the others, including an HS256 token signed with the public key
// bytes as the secret (key confusion).
func TestAuthPublicKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	rsaPEM, edPEM := pemOf(&rsaKey.PublicKey), pemOf(edPub)
	withKey := func(p []byte) func(*Options) {
		return func(o *Options) {
			f := filepath.Join(t.TempDir(), "pub.pem")
			if err := os.WriteFile(f, p, 0o600); err != nil {
				t.Fatal(err)
			}
			o.Config.Auth.HS256SecretFile = ""
			o.Config.Auth.PublicKeyFile = f
		}
	}
	rs := startServer(t, withKey(rsaPEM))
	ed := startServer(t, withKey(edPEM))
	now := rs.clock.Now()
	c := claims(now, nil)
	get := func(ts *testServer, tok string) int { return ts.do("GET", "/v1/devices", tok, nil).status }

	if got := get(rs, mint(t, jwt.SigningMethodRS256, rsaKey, c)); got != 200 {
		t.Errorf("RS256 on RS256 key: %d", got)
	}
	if got := get(rs, mint(t, jwt.SigningMethodHS256, rsaPEM, c)); got != 401 {
		t.Errorf("HS256 signed with the RSA public key PEM: %d, want 401", got)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if got := get(rs, mint(t, jwt.SigningMethodHS256, der, c)); got != 401 {
		t.Errorf("HS256 signed with the RSA public key DER: %d, want 401", got)
	}
	if got := get(rs, mint(t, jwt.SigningMethodPS256, rsaKey, c)); got != 401 {
		t.Errorf("PS256 on RS256 key: %d, want 401", got)
	}
	if got := get(rs, mint(t, jwt.SigningMethodEdDSA, edPriv, c)); got != 401 {
		t.Errorf("EdDSA on RS256 key: %d, want 401", got)
	}
	if got := get(ed, mint(t, jwt.SigningMethodEdDSA, edPriv, c)); got != 200 {
		t.Errorf("EdDSA on EdDSA key: %d", got)
	}
	if got := get(ed, mint(t, jwt.SigningMethodHS256, []byte(edPub), c)); got != 401 {
		t.Errorf("HS256 signed with the Ed25519 public key: %d, want 401", got)
	}
	if got := get(ed, mint(t, jwt.SigningMethodRS256, rsaKey, c)); got != 401 {
		t.Errorf("RS256 on EdDSA key: %d, want 401", got)
	}
}

func TestNewRefusesWeakKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort\n"), 0o600)
	cfg.Auth.HS256SecretFile = short
	if _, err := New(Options{Config: cfg, Store: bolttest.Open(t)}); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short secret: %v", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	f := filepath.Join(dir, "small.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	cfg.Auth = config.Auth{Issuer: "i", Audience: "a", PublicKeyFile: f}
	if _, err := New(Options{Config: cfg, Store: bolttest.Open(t)}); err == nil || !strings.Contains(err.Error(), "2048") {
		t.Fatalf("1024-bit RSA key: %v", err)
	}
}

func TestWorkspaceAndUserIsolation(t *testing.T) {
	ts := startServer(t, nil)
	ts.registerDevice("beta", "alice", "phone", "tok-beta") // same user name, other workspace
	ts.registerDevice("acme", "bob", "bobphone", "tok-bob")
	aliceA := ts.token("acme", "alice", RoleUser)
	adminA := ts.token("acme", "admin1", RoleAdmin)

	// Devices: another workspace's and another user's are not found.
	expect(t, ts.do("GET", "/v1/devices/phone", aliceA, nil), 404, CodeNotFound)
	expect(t, ts.do("GET", "/v1/devices/bobphone", aliceA, nil), 404, CodeNotFound)
	expect(t, ts.do("DELETE", "/v1/devices/bobphone", aliceA, nil), 404, CodeNotFound)
	r := ts.do("GET", "/v1/devices", aliceA, nil)
	expect(t, r, 200, "")
	if !strings.Contains(string(r.body), `"devices":[]`) {
		t.Fatalf("alice in acme sees devices: %s", r.body)
	}
	// PUT to bob's device id registers alice's own device; bob's stays.
	expect(t, ts.do("PUT", "/v1/devices/bobphone", aliceA, map[string]string{"platform": "android", "token": "tok-alice", "app": "demo"}), 200, "")
	if d, err := ts.st.Device(t.Context(), "acme", "bob", "bobphone"); err != nil || d.Token != "tok-bob" {
		t.Fatalf("bob's device changed: %+v %v", d, err)
	}

	// Settings: an admin of acme changes acme only.
	expect(t, ts.do("PUT", "/v1/workspace/settings", adminA, map[string]string{"otp_received": "disabled"}), 200, "")
	if s, _ := ts.st.Settings(t.Context(), "beta"); len(s) != 0 {
		t.Fatalf("beta settings changed: %v", s)
	}
	// Preferences: alice's PUT changes only her own.
	expect(t, ts.do("PUT", "/v1/preferences", aliceA, map[string]bool{"account_shared": false}), 200, "")
	for _, u := range [][2]string{{"acme", "bob"}, {"beta", "alice"}} {
		if p, _ := ts.st.Preferences(t.Context(), u[0], u[1]); len(p) != 0 {
			t.Fatalf("%v preferences changed: %v", u, p)
		}
	}

	// Events: a beta event is not found with an acme token, even for
	// its recipient's name.
	ts.addEvent("beta", "evt-b", "alice", time.Minute, "phone")
	expect(t, ts.do("POST", "/v1/events/evt-b/actions", aliceA, map[string]string{"action": "approve", "device_id": "bobphone"}), 404, CodeNotFound)
}

func TestSettingsNeedAdmin(t *testing.T) {
	ts := startServer(t, nil)
	user := ts.token("acme", "alice", RoleUser)
	expect(t, ts.do("GET", "/v1/workspace/settings", user, nil), 403, CodeForbidden)
	expect(t, ts.do("PUT", "/v1/workspace/settings", user, map[string]string{"otp_received": "disabled"}), 403, CodeForbidden)
	if s, _ := ts.st.Settings(t.Context(), "acme"); len(s) != 0 {
		t.Fatalf("settings changed by a user: %v", s)
	}
	for _, role := range []string{RoleOwner, RoleSuperAdmin, RoleAdmin} {
		r := ts.do("PUT", "/v1/workspace/settings", ts.token("acme", "boss", role), map[string]string{"otp_received": "enforced"})
		expect(t, r, 200, "")
		if !strings.Contains(string(r.body), `"otp_received":"enforced"`) || !strings.Contains(string(r.body), `"workspace":"acme"`) {
			t.Fatalf("%s: %s", role, r.body)
		}
	}
	expect(t, ts.do("PUT", "/v1/workspace/settings", ts.token("acme", "boss", RoleAdmin), map[string]string{"otp_received": "maybe"}), 400, CodeBadRequest)
	expect(t, ts.do("PUT", "/v1/workspace/settings", ts.token("acme", "boss", RoleAdmin), map[string]string{"nope": "enabled"}), 400, CodeBadRequest)
}

func TestActionsDenials(t *testing.T) {
	ts := startServer(t, nil)
	ts.registerDevice("acme", "alice", "phone", "tok-a")
	ts.registerDevice("acme", "mallory", "mphone", "tok-m")
	ts.addEvent("acme", "evt-1", "alice", 2*time.Minute, "phone")
	alice := ts.token("acme", "alice", RoleUser)
	mallory := ts.token("acme", "mallory", RoleUser)
	answer := func(tok, ev, action, dev string) response {
		return ts.do("POST", "/v1/events/"+ev+"/actions", tok, map[string]string{"action": action, "device_id": dev})
	}

	expect(t, answer(mallory, "evt-1", "approve", "mphone"), 403, CodeForbidden)                                // someone else's alert
	expect(t, answer(ts.token("acme", "mallory", RoleOwner), "evt-1", "approve", "mphone"), 403, CodeForbidden) // roles do not help
	expect(t, answer(alice, "evt-1", "approve", "mphone"), 403, CodeForbidden)                                  // a device not hers
	expect(t, answer(alice, "evt-1", "approve", "nodevice"), 403, CodeForbidden)                                // unknown device
	expect(t, answer(alice, "evt-1", "delete_account", "phone"), 400, CodeActionNotOffered)                     // not offered
	expect(t, answer(alice, "evt-404", "approve", "phone"), 404, CodeNotFound)                                  // no event
	expect(t, ts.do("POST", "/v1/events/evt-1/actions", alice, `{"action":"approve"}`), 400, CodeBadRequest)    // missing device
	expect(t, ts.do("POST", "/v1/events/evt-1/actions", alice, `{"action":"approve","device_id":"phone","x":1}`), 400, CodeBadRequest)

	// Expiry: 409 expired, and nothing stored.
	ts.addEvent("acme", "evt-old", "alice", time.Minute, "phone")
	ts.clock.Add(90 * time.Second)
	expect(t, answer(alice, "evt-old", "approve", "phone"), 409, CodeExpired)
	if a, _ := ts.st.Answers(t.Context(), 0, 10); len(a) != 0 {
		t.Fatalf("answers stored after denials: %+v", a)
	}

	// Not decided yet (it may still be suppressed, e.g. by the
	// push-bombing guard): 409 not_delivered.
	undecided := relay.Event{ID: "evt-new", Workspace: "acme", User: "alice", Type: relay.TypeIdentityVerification,
		Actions: []string{"approve", "deny"}, ExpiresAt: ts.clock.Now().Add(time.Hour)}
	ts.st.AddEvents(t.Context(), []relay.Event{undecided}, ts.clock.Now())
	expect(t, answer(alice, "evt-new", "approve", "phone"), 409, CodeNotDelivered)
	// Suppressed by a plugin: 409 not_delivered.
	ts.st.Decide(t.Context(), undecided.Key(), relay.Decision{Verdict: relay.VerdictSuppress, Reason: "push_bombing_guard"}, nil, nil)
	expect(t, answer(alice, "evt-new", "approve", "phone"), 409, CodeNotDelivered)
	// Cancelled by the upstream (stored as the first answer): 409 cancelled.
	ts.addEvent("acme", "evt-cancelled", "alice", time.Hour, "phone")
	if _, err := ts.st.AnswerAction(t.Context(), relay.Answer{Event: relay.EventKey{Workspace: "acme", ID: "evt-cancelled"}, User: "alice",
		DeviceID: relay.CancelDevice, Action: relay.CancelAction, AnsweredAt: ts.clock.Now(), Cancelled: true}); err != nil {
		t.Fatal(err)
	}
	expect(t, answer(alice, "evt-cancelled", "approve", "phone"), 409, CodeCancelled)

	// A non-actionable event.
	ev := relay.Event{ID: "evt-info", Workspace: "acme", User: "alice", Type: relay.TypeAccountShared, ExpiresAt: ts.clock.Now().Add(time.Hour)}
	ts.st.AddEvents(t.Context(), []relay.Event{ev}, ts.clock.Now())
	expect(t, answer(alice, "evt-info", "approve", "phone"), 400, CodeActionNotOffered)

	// The recipient answers; a second answer (any device, any action) is 409.
	r := answer(alice, "evt-1", "deny", "phone")
	expect(t, r, 200, "")
	expect(t, answer(alice, "evt-1", "approve", "phone"), 409, CodeAlreadyAnswered)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.answers) != 1 || ts.answers[0].Action != "deny" {
		t.Fatalf("OnAnswer calls: %+v", ts.answers)
	}
}

func TestBodies(t *testing.T) {
	ts := startServer(t, nil)
	tok := ts.token("acme", "alice", RoleUser)
	big := `{"platform":"ios","token":"t","app":"demo","name":"` + strings.Repeat("x", 17<<10) + `"}`
	tests := []struct {
		name, method, path, body string
		status                   int
		code, message            string
	}{
		{"oversize", "PUT", "/v1/devices/d1", big, 413, CodePayloadTooLarge, ""},
		{"not json", "PUT", "/v1/devices/d1", `platform=ios`, 400, CodeBadRequest, "invalid JSON"},
		{"array", "PUT", "/v1/devices/d1", `[1]`, 400, CodeBadRequest, "expected a JSON object, got array"},
		{"empty", "PUT", "/v1/preferences", ``, 400, CodeBadRequest, "unexpected end"},
		{"truncated", "PUT", "/v1/preferences", `{"otp_received":`, 400, CodeBadRequest, "invalid JSON"},
		{"trailing", "PUT", "/v1/preferences", `{"otp_received":true} {}`, 400, CodeBadRequest, "after the JSON object"},
		{"unknown field", "PUT", "/v1/devices/d1", `{"platform":"ios","token":"t","app":"demo","admin":true}`, 400, CodeBadRequest, `field "admin": unknown field`},
		{"wrong type", "PUT", "/v1/devices/d1", `{"platform":"ios","token":7,"app":"demo"}`, 400, CodeBadRequest, `field "token": expected string, got number`},
		{"duplicate key", "PUT", "/v1/devices/d1", `{"platform":"ios","token":"a","token":"b","app":"demo"}`, 400, CodeBadRequest, `field "token": appears more than once`},
		{"missing field", "PUT", "/v1/devices/d1", `{"platform":"ios","app":"demo"}`, 400, CodeBadRequest, `field "token": is required`},
		{"bad platform", "PUT", "/v1/devices/d1", `{"platform":"symbian","token":"t","app":"demo"}`, 400, CodeBadRequest, `field "platform"`},
		{"unknown app", "PUT", "/v1/devices/d1", `{"platform":"ios","token":"t","app":"other"}`, 400, CodeBadRequest, `unknown app`},
		{"bad key", "PUT", "/v1/devices/d1", `{"platform":"ios","token":"t","app":"demo","public_key":"abc"}`, 400, CodeBadRequest, `field "public_key"`},
		{"bad device id", "PUT", "/v1/devices/a%0Ab", `{"platform":"ios","token":"t","app":"demo"}`, 400, CodeBadRequest, "device_id"},
		{"pref null", "PUT", "/v1/preferences", `{"otp_received":null}`, 400, CodeBadRequest, `field "otp_received": expected boolean, got null`},
		{"pref unknown type", "PUT", "/v1/preferences", `{"sms":true}`, 400, CodeBadRequest, `field "sms": unknown notification type`},
		{"action not string", "POST", "/v1/events/e/actions", `{"action":["approve"],"device_id":"d"}`, 400, CodeBadRequest, `field "action": expected string, got array`},
		{"no route", "GET", "/v1/nothing", ``, 404, CodeNotFound, ""},
		{"wrong method", "PATCH", "/v1/preferences", ``, 405, CodeMethodNotAllowed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := ts.do(tc.method, tc.path, tok, body)
			expect(t, r, tc.status, tc.code)
			if !strings.Contains(r.errMessage(), tc.message) {
				t.Fatalf("message %q does not contain %q", r.errMessage(), tc.message)
			}
		})
	}
}

// TestSlowLorisHeaders: a client that never finishes its headers is cut off
// by ReadHeaderTimeout.
func TestSlowLorisHeaders(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.ReadHeaderTimeout = 300 * time.Millisecond })
	c := ts.dialRaw()
	if _, err := io.WriteString(c, "GET /v1/devices HTTP/1.1\r\nHost: relay\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Keep trickling a byte at a time, as a slow loris does; the server
	// must close the connection anyway.
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(bufio.NewReader(c))
		done <- err
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after %v", time.Since(start))
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("closed only after %v", el)
			}
			return
		case <-tick.C:
			c.Write([]byte("a"))
		}
	}
}

func TestRateLimits(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.UserRate, o.UserBurst = 1, 3 })
	alice := ts.token("acme", "alice", RoleUser)
	bob := ts.token("acme", "bob", RoleUser)
	for i := range 3 {
		expect(t, ts.do("GET", "/v1/devices", alice, nil), 200, "")
		_ = i
	}
	r := ts.do("GET", "/v1/devices", alice, nil)
	expect(t, r, 429, CodeRateLimited)
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After = %q, want 1", ra)
	}
	expect(t, ts.do("GET", "/v1/devices", bob, nil), 200, "") // another user is served
	ts.clock.Add(time.Second)
	expect(t, ts.do("GET", "/v1/devices", alice, nil), 200, "")

	addr := startServer(t, func(o *Options) { o.AddrRate, o.AddrBurst = 0.5, 2 })
	for range 2 {
		expect(t, addr.do("GET", "/v1/devices", "", nil), 401, "")
	}
	r = addr.do("GET", "/v1/devices", addr.token("acme", "carol", RoleUser), nil)
	expect(t, r, 429, CodeRateLimited)
	if ra := r.header.Get("Retry-After"); ra != "2" {
		t.Fatalf("address Retry-After = %q, want 2", ra)
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9:5555":           "203.0.113.9",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:1":   "2001:db8:1:2::/64",
		"[::ffff:203.0.113.9]:80":    "203.0.113.9",
		"@":                          "@",
	} {
		if got := addrKey(in); got != want {
			t.Errorf("addrKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// must builds a request to ts.
func must(t *testing.T, ts *testServer, method, path string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestVerifierHardening: iat in the future (beyond Leeway), an unknown crit
// header (RFC 7515 section 4.1.11) and a token living longer than
// auth.max_token_lifetime are refused.
func TestVerifierHardening(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(secretFile, testSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	v, err := NewVerifier(config.Auth{Issuer: testIssuer, Audience: testAudience, HS256SecretFile: secretFile, MaxTokenLifetime: 24 * time.Hour}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	hs := func(edit func(jwt.MapClaims)) string {
		return mint(t, jwt.SigningMethodHS256, testSecret, claims(now, edit))
	}
	withHeader := func(k string, val any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(now, nil))
		tok.Header[k] = val
		s, err := tok.SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"valid", hs(nil), true},
		{"iat in the future", hs(func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Minute).Unix() }), false},
		{"iat within leeway", hs(func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Second).Unix() }), true},
		{"crit header", withHeader("crit", []string{"exp"}), false},
		{"empty crit header", withHeader("crit", []string{}), false},
		{"other header", withHeader("kid", "k1"), true},
		{"lifetime 24h", hs(func(c jwt.MapClaims) { c["exp"] = now.Add(24 * time.Hour).Unix() }), true},
		{"lifetime over 24h", hs(func(c jwt.MapClaims) { c["exp"] = now.Add(25 * time.Hour).Unix() }), false},
		{"old iat, long exp", hs(func(c jwt.MapClaims) {
			c["iat"] = now.Add(-20 * time.Hour).Unix()
			c["exp"] = now.Add(5 * time.Hour).Unix()
		}), false},
		{"no iat, exp too far", hs(func(c jwt.MapClaims) {
			delete(c, "iat")
			c["exp"] = now.Add(48 * time.Hour).Unix()
		}), false},
		{"no iat, exp near", hs(func(c jwt.MapClaims) { delete(c, "iat") }), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.tok)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
		})
	}

	// Without a maximum (max_token_lifetime = "off"), long tokens pass.
	off, err := NewVerifier(config.Auth{Issuer: testIssuer, Audience: testAudience, HS256SecretFile: secretFile}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.Verify(hs(func(c jwt.MapClaims) { c["exp"] = now.Add(90 * 24 * time.Hour).Unix() })); err != nil {
		t.Fatalf("no maximum: %v", err)
	}
}

// A refused token never reaches the logs, whatever the reason: expired,
// issued in the future, with a crit header, living too long, forged.
func TestRefusedTokensNotLogged(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	ts := startServer(t, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: lockedWriter{&mu, &logs}, Level: hclog.Trace})
	})
	now := ts.clock.Now()
	hs := func(edit func(jwt.MapClaims)) string {
		return mint(t, jwt.SigningMethodHS256, testSecret, claims(now, edit))
	}
	crit := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(now, nil))
	crit.Header["crit"] = []string{"x"}
	critTok, _ := crit.SignedString(testSecret)
	toks := []string{
		hs(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }),
		hs(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }),
		hs(func(c jwt.MapClaims) { c["exp"] = now.Add(48 * time.Hour).Unix() }),
		critTok,
		mint(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims(now, nil)),
		"not.a.jwt",
	}
	for _, tok := range toks {
		req := must(t, ts, "GET", "/v1/devices", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := ts.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "request denied") {
		t.Fatalf("no denial logged:\n%s", out)
	}
	for _, tok := range toks {
		for _, part := range strings.Split(tok, ".") {
			if len(part) > 8 && strings.Contains(out, part) {
				t.Fatalf("the log holds part of a token (%q):\n%s", part, out)
			}
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
