package daemon_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// signal sends sig to the running relayd.
func (h *harness) signal(sig syscall.Signal) {
	h.t.Helper()
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil {
		h.t.Fatal("relayd is not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		h.t.Fatal(err)
	}
}

// waitLog waits until relayd's output has n lines containing s.
func (h *harness) waitLog(s string, n int) {
	h.t.Helper()
	waitFor(h.t, 10*time.Second, func() error {
		if got := strings.Count(h.logs.String(), s); got < n {
			return fmt.Errorf("%d log lines with %q, want %d", got, s, n)
		}
		return nil
	})
}

// editConfig rewrites config.hcl with each old → new replacement.
func (h *harness) editConfig(pairs ...string) {
	h.t.Helper()
	b, err := os.ReadFile(h.cfgPath)
	if err != nil {
		h.t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			h.t.Fatalf("config has no %q", pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	writeFile(h.t, h.cfgPath, []byte(s))
}

// kidOf returns the key id in the header of a push's provider token.
func kidOf(t *testing.T, auth string) string {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(auth, "bearer "), ".")
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatalf("provider token %q: %v", auth, err)
	}
	var v struct{ Kid string }
	json.Unmarshal(hdr, &v)
	return v.Kid
}

// TestReloadRotatesAPNsKeyAndKeepsOnInvalid rotates the APNs signing key
// by editing config.hcl and sending SIGHUP: the next push is signed with
// the new key (the fake APNs accepts only it from then on), without a
// restart. An invalid file on SIGHUP, or through POST /v1/config/reload,
// keeps the running config (and says why), as does a file that changes
// what only a restart applies.
func TestReloadRotatesAPNsKeyAndKeepsOnInvalid(t *testing.T) {
	h := newHarness(t, harnessOptions{logLevel: "info"})
	h.start()
	defer h.stop(syscall.SIGTERM)
	ios := hexToken("acme/u1")
	h.put("/v1/workspaces/acme/users/u1/devices/iphone", map[string]string{"platform": "ios", "token": ios, "app": "demo", "environment": "production"})
	send := func(id string) {
		t.Helper()
		h.post(map[string]any{"id": id, "workspace": "acme", "user": "u1", "type": "new_trusted_device", "title": "New device", "body": "signed in"})
		waitFor(t, 10*time.Second, func() error {
			v, _ := h.event("acme", id)
			if len(v.Deliveries) != 1 || v.Deliveries[0].State != "delivered" {
				return fmt.Errorf("%s: %+v", id, v.Deliveries)
			}
			return nil
		})
	}
	lastKid := func() string {
		p := h.APNs.Pushes()
		return kidOf(t, p[len(p)-1].Header.Get("Authorization"))
	}
	send("e1")
	if k := lastKid(); k != keyID {
		t.Fatalf("first push signed by %q, want %q", k, keyID)
	}

	// Rotate: a new key file and id in config.hcl; Apple accepts only the
	// new key from now on.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	writeFile(t, filepath.Join(h.dir, "AuthKey2.p8"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	const newKeyID = "KEY7654321"
	h.editConfig(`key_file = "./AuthKey.p8"`, `key_file = "./AuthKey2.p8"`, `key_id = "`+keyID+`"`, `key_id = "`+newKeyID+`"`)
	h.APNs.RotateAuthKey(&key.PublicKey, newKeyID)
	h.signal(syscall.SIGHUP)
	h.waitLog("config reloaded", 1)
	send("e2")
	if k := lastKid(); k != newKeyID {
		t.Fatalf("push after the reload signed by %q, want %q", k, newKeyID)
	}

	// The key file replaced in place (same path, same key id): a change
	// too.
	key3, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der3, _ := x509.MarshalPKCS8PrivateKey(key3)
	writeFile(t, filepath.Join(h.dir, "AuthKey2.p8"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der3}))
	h.APNs.RotateAuthKey(&key3.PublicKey, newKeyID)
	h.signal(syscall.SIGHUP)
	h.waitLog("config reloaded", 2)
	send("e2b") // the fake accepts only key3 now

	// An invalid file: SIGHUP logs why and the running config stays.
	good, _ := os.ReadFile(h.cfgPath)
	h.editConfig(`jitter = 0.2`, `jitter = 7`)
	h.signal(syscall.SIGHUP)
	h.waitLog("config reload failed: the running config stays", 1)
	if !strings.Contains(h.logs.String(), "retry.jitter") {
		t.Errorf("the log does not say what is wrong:\n%s", h.logs.String())
	}
	send("e3")
	if k := lastKid(); k != newKeyID {
		t.Fatalf("push after an invalid reload signed by %q", k)
	}
	code, body := h.do("POST", "/v1/config/reload", "", nil)
	if code != 422 || !strings.Contains(string(body), "retry.jitter") {
		t.Errorf("reload of an invalid file: %d %s", code, body)
	}

	// A change only a restart applies is refused, naming it.
	writeFile(t, h.cfgPath, good)
	h.editConfig(`shutdown_timeout = "5s"`, `shutdown_timeout = "6s"`, `key_id = "`+newKeyID+`"`, `key_id = "`+keyID+`"`)
	code, body = h.do("POST", "/v1/config/reload", "", nil)
	if code != 409 || !strings.Contains(string(body), "shutdown_timeout") {
		t.Errorf("reload changing shutdown_timeout: %d %s", code, body)
	}
	send("e4") // still the new key: nothing of the refused file applied
	if k := lastKid(); k != newKeyID {
		t.Fatalf("push after a refused reload signed by %q", k)
	}
	writeFile(t, h.cfgPath, good)
	if code, body := h.do("POST", "/v1/config/reload", "", nil); code != 200 || !strings.Contains(string(body), `"changed":[]`) {
		t.Errorf("reload of the running file: %d %s", code, body)
	}
}
