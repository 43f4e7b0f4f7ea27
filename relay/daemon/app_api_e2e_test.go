// End-to-end tests of the app API (issue 4): relayd serves it on
// api.address, streams answers on the socket's GET /v1/actions/stream,
// sends withdraw pushes and seals alerts.

package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgerelay/edgerelay/relay/api"
	"github.com/edgerelay/edgerelay/relay/relaytest/openapitest"
	"github.com/edgerelay/edgerelay/relay/seal"
)

var e2eSecret = []byte("e2e-secret-e2e-secret-e2e-secret-0123456789")

// appAPI is a client of relayd's app API.
type appAPI struct {
	t    testing.TB
	base string
	hc   *http.Client
}

// startWithAPI configures the app API on a free loopback port, starts
// relayd and waits for the API to answer.
func startWithAPI(t *testing.T) (*harness, *appAPI) {
	t.Helper()
	return startWithAPIConfig(t, "")
}

// startWithAPIConfig is startWithAPI with extra config appended.
func startWithAPIConfig(t *testing.T, extra string) (*harness, *appAPI) {
	t.Helper()
	return startWithAPIAfter(t, extra, nil)
}

// startWithAPIAfter is startWithAPIConfig with setup run on the harness
// before relayd starts (plugins to install).
func startWithAPIAfter(t *testing.T, extra string, setup func(h *harness)) (*harness, *appAPI) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := newHarness(t, harnessOptions{extraConfig: fmt.Sprintf(`
api {
  address = %q
}
auth {
  issuer = "upstream"
  audience = "edgerelay"
  hs256_secret_file = "./jwt.secret"
}
%s
`, addr, extra)})
	writeFile(t, filepath.Join(h.dir, "jwt.secret"), e2eSecret)
	if setup != nil {
		setup(h)
	}
	h.start()
	// Every answer of the app API must match its OpenAPI document.
	a := &appAPI{t: t, base: "http://" + addr, hc: &http.Client{Timeout: 10 * time.Second,
		Transport: openapitest.New(t, "app", api.OpenAPI).Transport(t, &http.Transport{})}}
	t.Cleanup(a.hc.CloseIdleConnections)
	waitFor(t, 10*time.Second, func() error {
		resp, err := a.hc.Get(a.base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return h, a
}

func (a *appAPI) token(ws, user, role string) string {
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "upstream", "aud": "edgerelay", "sub": user, "ws": ws, "role": role,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString(e2eSecret)
	if err != nil {
		a.t.Fatal(err)
	}
	return s
}

func (a *appAPI) do(method, path, tok string, body any) (int, []byte) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (a *appAPI) must(status int, method, path, tok string, body any) []byte {
	a.t.Helper()
	code, b := a.do(method, path, tok, body)
	if code != status {
		a.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, status)
	}
	return b
}

// actionStream reads the socket's actions stream.
type actionStream struct {
	t      testing.TB
	cancel context.CancelFunc
	sc     *bufio.Scanner
}

func (h *harness) openActions(lastID string) *actionStream {
	h.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", h.sock)
	}}}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://relayd/v1/actions/stream", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		cancel()
		h.t.Fatalf("open actions stream: %v %v", err, resp)
	}
	s := &actionStream{t: h.t, cancel: func() { cancel(); resp.Body.Close() }, sc: bufio.NewScanner(resp.Body)}
	h.t.Cleanup(s.cancel)
	return s
}

// next returns the next answer, failing after 20s.
func (s *actionStream) next() api.AnswerEvent {
	s.t.Helper()
	timer := time.AfterFunc(20*time.Second, s.cancel)
	defer timer.Stop()
	var id, data string
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && data != "":
			var a api.AnswerEvent
			if err := json.Unmarshal([]byte(data), &a); err != nil || fmt.Sprint(a.Seq) != id {
				s.t.Fatalf("bad event id=%s data=%s", id, data)
			}
			return a
		}
	}
	s.t.Fatalf("actions stream ended: %v", s.sc.Err())
	return api.AnswerEvent{}
}

func (h *harness) mfaEvent(id string) map[string]any {
	return map[string]any{"id": id, "workspace": "acme", "user": "alice", "type": "identity_verification",
		"title": "Confirm sign-in", "body": "Firefox in Berlin", "actions": []string{"approve", "deny"}}
}

// TestAppAPIStory is issue 4's story: enforced type, locked preference,
// delivery anyway, an answer from the phone reaching the upstream reader,
// a refused second answer, a withdraw push to the other device, and a
// reader that reconnects with Last-Event-ID and misses nothing.
func TestAppAPIStory(t *testing.T) {
	h, a := startWithAPI(t)
	defer h.stop(syscall.SIGTERM)
	admin := a.token("acme", "boss", "admin")
	alice := a.token("acme", "alice", "user")

	a.must(200, "PUT", "/v1/workspace/settings", admin, map[string]string{"identity_verification": "enforced"})
	a.must(200, "PUT", "/v1/devices/phone", alice, map[string]string{"platform": "ios", "token": hexToken("phone"), "app": "demo", "environment": "sandbox"})
	a.must(200, "PUT", "/v1/devices/tablet", alice, map[string]string{"platform": "android", "token": hexToken("tablet"), "app": "demo"})

	code, body := a.do("PUT", "/v1/preferences", alice, map[string]bool{"identity_verification": false})
	if code != 409 || !strings.Contains(string(body), `"code":"locked"`) ||
		!strings.Contains(string(body), "workspace acme enforces identity_verification; it cannot be turned off") {
		t.Fatalf("turning an enforced type off: %d %s", code, body)
	}
	body = a.must(200, "GET", "/v1/preferences", alice, nil)
	if !strings.Contains(string(body), `"identity_verification":{"enabled":true,"workspace":"enforced","locked":true}`) {
		t.Fatalf("preferences: %s", body)
	}

	reader := h.openActions("")
	if r := h.post(h.mfaEvent("evt-1")); r[0].Status != "accepted" {
		t.Fatalf("post: %+v", r)
	}
	waitFor(t, 20*time.Second, func() error { return h.settled("acme", "evt-1") })
	v, _ := h.event("acme", "evt-1")
	if v.Decision.Reason != "enforced" || len(v.Deliveries) != 2 {
		t.Fatalf("evt-1: %+v", v)
	}
	for _, d := range v.Deliveries {
		if d.State != "delivered" {
			t.Fatalf("evt-1 delivery %+v", d)
		}
	}

	res := a.must(200, "POST", "/v1/events/evt-1/actions", alice, map[string]string{"action": "approve", "device_id": "phone"})
	var ar api.ActionResult
	json.Unmarshal(res, &ar)
	got := reader.next()
	if got.Seq != ar.Seq || got.EventID != "evt-1" || got.Action != "approve" || got.DeviceID != "phone" || got.User != "alice" {
		t.Fatalf("stream got %+v, answer %+v", got, ar)
	}
	code, body = a.do("POST", "/v1/events/evt-1/actions", alice, map[string]string{"action": "deny", "device_id": "tablet"})
	if code != 409 || !strings.Contains(string(body), "already_answered") {
		t.Fatalf("second answer: %d %s", code, body)
	}

	// The tablet gets a silent withdraw push with the same collapse key.
	waitFor(t, 20*time.Second, func() error {
		for _, p := range h.FCM.Pushes() {
			if p.Token == hexToken("tablet") && p.Data()["withdraw"] == "true" && p.Data()["event_id"] == "evt-1" && p.PushType() == "data" {
				return nil
			}
		}
		return fmt.Errorf("no withdraw push to the tablet")
	})
	for _, p := range h.APNs.Pushes() {
		if p.Data()["withdraw"] == "true" {
			t.Fatalf("the answering phone got a withdraw push: %s", p.String())
		}
	}

	// The reader drops; two answers happen meanwhile; it resumes.
	reader.cancel()
	for _, id := range []string{"evt-2", "evt-3"} {
		h.post(h.mfaEvent(id))
		waitFor(t, 20*time.Second, func() error { return h.settled("acme", id) })
		a.must(200, "POST", "/v1/events/"+id+"/actions", alice, map[string]string{"action": "deny", "device_id": "tablet"})
	}
	reader = h.openActions(fmt.Sprint(got.Seq))
	for _, want := range []string{"evt-2", "evt-3"} {
		if g := reader.next(); g.EventID != want || g.Seq <= got.Seq {
			t.Fatalf("after resume got %+v, want %s", g, want)
		} else {
			got = g
		}
	}
	h.post(h.mfaEvent("evt-4"))
	waitFor(t, 20*time.Second, func() error { return h.settled("acme", "evt-4") })
	a.must(200, "POST", "/v1/events/evt-4/actions", alice, map[string]string{"action": "approve", "device_id": "phone"})
	if g := reader.next(); g.EventID != "evt-4" || g.Seq != got.Seq+1 {
		t.Fatalf("live after resume: %+v", g)
	}
}

// TestSealedPayloads: a device with a public key gets only ciphertext and
// fallback text at the fakes, which opens to the original; a device
// without one gets the plain alert.
func TestSealedPayloads(t *testing.T) {
	h, a := startWithAPI(t)
	defer h.stop(syscall.SIGTERM)
	alice := a.token("acme", "alice", "user")
	iosKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	androidKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	b64 := func(k *ecdh.PrivateKey) string { return base64.StdEncoding.EncodeToString(k.PublicKey().Bytes()) }
	a.must(200, "PUT", "/v1/devices/phone", alice, map[string]string{"platform": "ios", "token": hexToken("sphone"), "app": "demo", "environment": "sandbox", "public_key": b64(iosKey)})
	a.must(200, "PUT", "/v1/devices/pixel", alice, map[string]string{"platform": "android", "token": hexToken("spixel"), "app": "demo", "public_key": b64(androidKey)})
	a.must(200, "PUT", "/v1/devices/plain", alice, map[string]string{"platform": "android", "token": hexToken("splain"), "app": "demo"})

	ev := h.mfaEvent("evt-s")
	ev["data"] = map[string]string{"ip": "203.0.113.9"}
	h.post(ev)
	waitFor(t, 20*time.Second, func() error { return h.settled("acme", "evt-s") })

	pushes := append(h.APNs.Pushes(), h.FCM.Pushes()...)
	check := func(token string, key *ecdh.PrivateKey) {
		t.Helper()
		for _, p := range pushes {
			if p.Token != token {
				continue
			}
			raw := string(p.Body)
			if key == nil {
				if p.Title() != "Confirm sign-in" || p.Data()["ip"] != "203.0.113.9" {
					t.Fatalf("plain device got %s", raw)
				}
				return
			}
			for _, secret := range []string{"Confirm sign-in", "Berlin", "203.0.113.9"} {
				if strings.Contains(raw, secret) {
					t.Fatalf("%q visible at the provider: %s", secret, raw)
				}
			}
			if p.Title() != seal.FallbackTitle || p.Data()[seal.DataKeyVersion] != seal.Version {
				t.Fatalf("sealed push %s", raw)
			}
			if p.Provider == "apns" && !strings.Contains(raw, `"mutable-content":1`) {
				t.Fatalf("sealed APNs push without mutable-content: %s", raw)
			}
			for _, clear := range []string{"thread", "category", "sound", "APPROVE_DENY"} {
				if strings.Contains(raw, clear) {
					t.Fatalf("%q in clear beside the ciphertext: %s", clear, raw)
				}
			}
			d := p.Data()
			b := seal.Binding{Workspace: "acme", EventID: d["event_id"], Type: d["type"], ExpiresAt: d["expires_at"]}
			plain, err := seal.Open(key, b, d[seal.DataKeySealed])
			if err != nil {
				t.Fatal(err)
			}
			if plain.Title != "Confirm sign-in" || plain.Body != "Firefox in Berlin" || plain.Data["ip"] != "203.0.113.9" {
				t.Fatalf("opened %+v", plain)
			}
			return
		}
		t.Fatalf("no push for token %s", token)
	}
	check(hexToken("sphone"), iosKey)
	check(hexToken("spixel"), androidKey)
	check(hexToken("splain"), nil)
}
