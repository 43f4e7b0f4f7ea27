package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

func TestPreferencesLocked(t *testing.T) {
	ts := startServer(t, nil)
	admin := ts.token("acme", "boss", RoleAdmin)
	alice := ts.token("acme", "alice", RoleUser)
	expect(t, ts.do("PUT", "/v1/workspace/settings", admin,
		map[string]string{"identity_verification": "enforced", "account_shared": "disabled"}), 200, "")

	r := ts.do("PUT", "/v1/preferences", alice, map[string]bool{"identity_verification": false, "otp_received": false})
	expect(t, r, 409, CodeLocked)
	if want := "workspace acme enforces identity_verification; it cannot be turned off"; r.errMessage() != want {
		t.Fatalf("message %q, want %q", r.errMessage(), want)
	}
	if p, _ := ts.st.Preferences(t.Context(), "acme", "alice"); len(p) != 0 {
		t.Fatalf("a refused PUT stored %v", p)
	}
	// Turning an enforced type on, and a disabled one off, is fine.
	expect(t, ts.do("PUT", "/v1/preferences", alice, map[string]bool{"identity_verification": true, "account_shared": false, "otp_received": false}), 200, "")

	r = ts.do("GET", "/v1/preferences", alice, nil)
	expect(t, r, 200, "")
	var got Preferences
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]Preference{
		"identity_verification": {Enabled: true, Workspace: relay.SettingEnforced, Locked: true},
		"account_shared":        {Enabled: false, Workspace: relay.SettingDisabled, Locked: true},
		"otp_received":          {Enabled: false, Workspace: relay.SettingEnabled, Locked: false},
		"new_trusted_device":    {Enabled: true, Workspace: relay.SettingEnabled, Locked: false},
	}
	if len(got.Preferences) != len(want) {
		t.Fatalf("preferences %+v", got.Preferences)
	}
	for k, w := range want {
		if got.Preferences[k] != w {
			t.Errorf("%s = %+v, want %+v", k, got.Preferences[k], w)
		}
	}
	if !bytes.Contains(r.body, []byte(`"identity_verification":{"enabled":true,"workspace":"enforced","locked":true}`)) {
		t.Errorf("wire form: %s", r.body)
	}
}

func TestDevices(t *testing.T) {
	box := &proofBox{}
	ts := startServer(t, func(o *Options) { o.MaxDevicesPerUser = 3; o.SendTokenProof = box.send })
	alice := ts.token("acme", "alice", RoleUser)
	bob := ts.token("acme", "bob", RoleUser)
	key := "43EthRoOXXm4McXjSrIrQaGYFx3iCbi4-sojoRxiSFk" // URL alphabet, unpadded
	r := ts.do("PUT", "/v1/devices/phone", alice, map[string]string{
		"platform": "ios", "token": "tok-1", "app": "demo", "name": "Alice's iPhone", "public_key": key})
	expect(t, r, 200, "")
	var d relay.Device
	json.Unmarshal(r.body, &d)
	if d.Workspace != "acme" || d.User != "alice" || d.ID != "phone" || d.Environment != "production" ||
		d.PublicKey != "43EthRoOXXm4McXjSrIrQaGYFx3iCbi4+sojoRxiSFk=" {
		t.Fatalf("registered %+v", d)
	}
	// Re-registering the same id replaces its token.
	expect(t, ts.do("PUT", "/v1/devices/phone", alice, map[string]string{"platform": "ios", "token": "tok-2", "app": "demo"}), 200, "")
	if d, _ := ts.st.Device(t.Context(), "acme", "alice", "phone"); d.Token != "tok-2" || d.PublicKey != "" {
		t.Fatalf("after re-register: %+v", d)
	}
	// Bob registers the same token (the phone changed hands): with the
	// code the phone got (TestTokenMoveNeedsProof), alice loses it.
	expect(t, ts.do("PUT", "/v1/devices/handset", bob, map[string]string{"platform": "ios", "token": "tok-2", "app": "demo"}), 409, CodeTokenProofRequired)
	expect(t, ts.do("PUT", "/v1/devices/handset", bob, map[string]string{"platform": "ios", "token": "tok-2", "app": "demo", "proof": box.last(t).code}), 200, "")
	r = ts.do("GET", "/v1/devices", alice, nil)
	expect(t, r, 200, "")
	if !bytes.Contains(r.body, []byte(`"devices":[]`)) {
		t.Fatalf("alice still has the moved token: %s", r.body)
	}
	r = ts.do("GET", "/v1/devices/handset", bob, nil)
	expect(t, r, 200, "")
	// Device limit.
	for _, id := range []string{"a", "b"} {
		expect(t, ts.do("PUT", "/v1/devices/"+id, bob, map[string]string{"platform": "android", "token": "t-" + id, "app": "demo"}), 200, "")
	}
	expect(t, ts.do("PUT", "/v1/devices/c", bob, map[string]string{"platform": "android", "token": "t-c", "app": "demo"}), 409, CodeTooManyDevices)
	expect(t, ts.do("PUT", "/v1/devices/a", bob, map[string]string{"platform": "android", "token": "t-a2", "app": "demo"}), 200, "")
	// Delete.
	r = ts.do("DELETE", "/v1/devices/a", bob, nil)
	if r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	expect(t, ts.do("DELETE", "/v1/devices/a", bob, nil), 404, CodeNotFound)
}

// TestFirstAnswerWins: 20 concurrent answers from the recipient's two
// devices, exactly one is accepted.
func TestFirstAnswerWins(t *testing.T) {
	hub := NewHub()
	ts := startServer(t, func(o *Options) { o.Hub = hub })
	ts.registerDevice("acme", "alice", "phone", "tok-a")
	ts.registerDevice("acme", "alice", "tablet", "tok-b")
	ts.addEvent("acme", "evt-1", "alice", time.Minute, "phone", "tablet")
	alice := ts.token("acme", "alice", RoleUser)
	wake, _ := hub.wait()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[int]int{}
	)
	for i := range 20 {
		wg.Go(func() {
			dev, act := "phone", "approve"
			if i%2 == 1 {
				dev, act = "tablet", "deny"
			}
			r := ts.do("POST", "/v1/events/evt-1/actions", alice, map[string]string{"action": act, "device_id": dev})
			mu.Lock()
			counts[r.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if counts[200] != 1 || counts[409] != 19 {
		t.Fatalf("statuses %v, want one 200 and nineteen 409", counts)
	}
	select {
	case <-wake:
	default:
		t.Fatal("hub not notified")
	}
	ts.mu.Lock()
	ans := ts.answers
	ts.mu.Unlock()
	if len(ans) != 1 || ans[0].Seq != 1 {
		t.Fatalf("OnAnswer saw %+v", ans)
	}
	rec, err := ts.st.Event(t.Context(), relay.EventKey{Workspace: "acme", ID: "evt-1"})
	if err != nil {
		t.Fatal(err)
	}
	w := WithdrawAlert(rec, ans[0])
	if w == nil || !w.Silent || w.CollapseID != "c-evt-1" || w.EventID != "evt-1" || w.Data["action"] != ans[0].Action || w.Title != "" {
		t.Fatalf("withdraw alert %+v", w)
	}
	other := "tablet"
	if ans[0].DeviceID == "tablet" {
		other = "phone"
	}
	if got := WithdrawDevices(rec, ans[0]); len(got) != 1 || got[0] != other {
		t.Fatalf("withdraw devices %v, want [%s]", got, other)
	}
	if WithdrawAlert(&store.Record{}, ans[0]) != nil {
		t.Fatal("withdraw for an event never rendered")
	}
}

// TestTLSHTTP2: with api.tls the server speaks HTTPS and HTTP/2.
func TestTLSHTTP2(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir)
	ts := startServer(t, func(o *Options) {
		o.Config.API.TLSCertFile, o.Config.API.TLSKeyFile = certFile, keyFile
	})
	if !ts.srv.TLS() {
		t.Fatal("TLS off")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "https://"+ts.srv.Addr().String()+"/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+ts.token("acme", "alice", RoleUser))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("status %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	// Plain HTTP to the TLS port is refused.
	plain, err := http.Get("http://" + ts.srv.Addr().String() + "/healthz")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS port")
		}
	}
}

func writeCert(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestDenialsLoggedWithoutToken: every denial is logged with its reason
// and the token never appears in the logs.
func TestDenialsLoggedWithoutToken(t *testing.T) {
	var buf syncBuffer
	ts := startServer(t, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug})
	})
	good := ts.token("acme", "alice", RoleUser)
	bad := good[:len(good)-4] + "AAAA"
	expect(t, ts.do("GET", "/v1/devices", bad, nil), 401, CodeUnauthorized)
	expect(t, ts.do("GET", "/v1/workspace/settings", good, nil), 403, CodeForbidden)
	logs := buf.String()
	for _, secret := range []string{good, bad, strings.Split(good, ".")[2], string(testSecret)} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain a token or secret:\n%s", logs)
		}
	}
	for _, want := range []string{"reason=\"token refused: token signature is invalid", "reason=\"role user is not an admin role\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPruneLoop(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.AnswerRetention = time.Hour; o.PruneInterval = 20 * time.Millisecond })
	ctx := context.Background()
	old := relay.Answer{Event: relay.EventKey{Workspace: "acme", ID: "old"}, User: "u", DeviceID: "d", Action: "approve", AnsweredAt: ts.clock.Now().Add(-2 * time.Hour)}
	if _, err := ts.st.AnswerAction(ctx, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := ts.st.Answers(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("old answer not pruned")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeviceLimitConcurrent: 20 registrations at once past a limit of 15
// leave 15 devices (the limit was checked before the write: 31 were left).
func TestDeviceLimitConcurrent(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.MaxDevicesPerUser = 15 })
	carol := ts.token("acme", "carol", RoleUser)
	for i := range 11 {
		expect(t, ts.do("PUT", fmt.Sprintf("/v1/devices/old-%d", i), carol, map[string]string{"platform": "android", "token": fmt.Sprintf("o-%d", i), "app": "demo"}), 200, "")
	}
	var wg sync.WaitGroup
	codes := make([]int, 20)
	for i := range 20 {
		wg.Go(func() {
			codes[i] = ts.do("PUT", fmt.Sprintf("/v1/devices/new-%d", i), carol, map[string]string{"platform": "android", "token": fmt.Sprintf("n-%d", i), "app": "demo"}).status
		})
	}
	wg.Wait()
	devs, err := ts.st.Devices(t.Context(), "acme", "carol")
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, c := range codes {
		if c == 200 {
			ok++
		} else if c != 409 {
			t.Errorf("status %d, want 200 or 409", c)
		}
	}
	if len(devs) != 15 || ok != 4 {
		t.Fatalf("%d devices, %d registrations answered 200; want 15 and 4", len(devs), ok)
	}
}
