package daemon_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay/api"
	"github.com/edgerelay/edgerelay/relay/seal"
)

// TestSealRequired: with seal = "required" a device without a public key
// gets a generic push with no content on either platform, a keyed device
// gets the v2 ciphertext, and the content is fetched over the app API by
// the recipient only, and only until the alert expires.
func TestSealRequired(t *testing.T) {
	h, a := startWithAPIConfig(t, `notification "otp_received" { seal = "required" }`)
	defer h.stop(syscall.SIGTERM)
	alice := a.token("acme", "alice", "user")
	key, _ := ecdh.X25519().GenerateKey(rand.Reader)
	a.must(200, "PUT", "/v1/devices/keyed", alice, map[string]string{"platform": "ios", "token": hexToken("rkeyed"), "app": "demo", "environment": "sandbox",
		"public_key": base64.StdEncoding.EncodeToString(key.PublicKey().Bytes())})
	a.must(200, "PUT", "/v1/devices/bare-ios", alice, map[string]string{"platform": "ios", "token": hexToken("rbareios"), "app": "demo", "environment": "sandbox"})
	a.must(200, "PUT", "/v1/devices/bare-android", alice, map[string]string{"platform": "android", "token": hexToken("rbareand"), "app": "demo"})

	// Short-lived, so the test can see the content go without waiting long.
	expires := time.Now().Add(3 * time.Second).UTC()
	h.post(map[string]any{"id": "evt-r", "workspace": "acme", "user": "alice", "type": "otp_received",
		"title": "Code for GitHub", "body": "Your code is 445566", "data": map[string]string{"otp": "445566"},
		"expires_at": expires.Format(time.RFC3339Nano)})
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "evt-r") })

	pushes := append(h.APNs.Pushes(), h.FCM.Pushes()...)
	seen := map[string]bool{}
	for _, p := range pushes {
		raw := string(p.Body)
		for _, clear := range []string{"445566", "GitHub", "thread", "category", "sound"} {
			if strings.Contains(raw, clear) {
				t.Fatalf("%q in clear at %s: %s", clear, p.Provider, raw)
			}
		}
		d := p.Data()
		if p.Title() != seal.FallbackTitle || d["event_id"] != "evt-r" {
			t.Fatalf("push %s", raw)
		}
		if p.Provider == "apns" && !strings.Contains(raw, `"mutable-content":1`) {
			t.Fatalf("APNs push without mutable-content: %s", raw)
		}
		switch p.Token {
		case hexToken("rkeyed"):
			b := seal.Binding{Workspace: "acme", EventID: d["event_id"], Type: d["type"], ExpiresAt: d["expires_at"]}
			plain, err := seal.Open(key, b, d[seal.DataKeySealed])
			if err != nil || plain.Body != "Your code is 445566" {
				t.Fatalf("keyed device opened %+v, %v", plain, err)
			}
		case hexToken("rbareios"), hexToken("rbareand"):
			want := map[string]string{seal.DataKeyContent: seal.ContentFetch, "event_id": "evt-r", "type": "otp_received", "expires_at": expires.Format(time.RFC3339)}
			for k, v := range want {
				if d[k] != v {
					t.Fatalf("keyless push data %v, want %v", d, want)
				}
			}
			if _, ok := d[seal.DataKeySealed]; ok {
				t.Fatalf("keyless push carries a ciphertext: %s", raw)
			}
		}
		seen[p.Token] = true
	}
	if len(seen) != 3 {
		t.Fatalf("pushes reached %d of 3 devices", len(seen))
	}

	// The recipient fetches the content; a colleague (even an admin) cannot.
	var c api.EventContent
	if err := json.Unmarshal(a.must(200, "GET", "/v1/events/evt-r", alice, nil), &c); err != nil {
		t.Fatal(err)
	}
	if c.Title != "Code for GitHub" || c.Body != "Your code is 445566" || c.Data["otp"] != "445566" {
		t.Fatalf("fetched %+v", c)
	}
	a.must(404, "GET", "/v1/events/evt-r", a.token("acme", "bob", "admin"), nil)
	a.must(404, "GET", "/v1/events/evt-r", a.token("globex", "alice", "user"), nil)

	// After expires_at the content is gone.
	time.Sleep(time.Until(expires) + 50*time.Millisecond)
	var e api.ErrorBody
	if err := json.Unmarshal(a.must(404, "GET", "/v1/events/evt-r", alice, nil), &e); err != nil || e.Error.Code != api.CodeExpired {
		t.Fatalf("after expiry: %+v %v", e, err)
	}
}
