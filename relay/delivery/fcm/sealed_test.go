package fcm_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/delivery/fcm"
	"github.com/edgerelay/edgerelay/relay/seal"
)

// TestSealedMessageAtTheFake: what FCM receives for a sealed alert, on
// Android and iOS devices, actionable or not, carries no category, sound
// or thread id, and opens on the device under its own binding.
func TestSealedMessageAtTheFake(t *testing.T) {
	e := setup(t, fcm.Options{})
	key, _ := ecdh.X25519().GenerateKey(rand.Reader)
	ios := android
	ios.Platform, ios.Token = relay.PlatformIOS, "ios-token-1"
	for _, typ := range []string{relay.TypeIdentityVerification, relay.TypeOTPReceived} {
		for _, d := range []relay.Device{android, ios} {
			a := alertFor(typ, time.Minute)
			a.ThreadID, a.Sound, a.Category = "otp 445566", "chime", "APPROVE_DENY"
			s, err := seal.Alert(a, base64.StdEncoding.EncodeToString(key.PublicKey().Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.client.Notify(t.Context(), d, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	ps := e.fake.Pushes()
	if len(ps) != 4 {
		t.Fatalf("%d pushes", len(ps))
	}
	for _, p := range ps {
		raw := string(p.Body)
		for _, clear := range []string{"thread", "category", "sound", "445566", "chime", "APPROVE_DENY", "Title "} {
			if strings.Contains(raw, clear) {
				t.Fatalf("%q in clear: %s", clear, raw)
			}
		}
		d := p.Data()
		b := seal.Binding{Workspace: "acme", EventID: d["event_id"], Type: d["type"], ExpiresAt: d["expires_at"]}
		plain, err := seal.Open(key, b, d[seal.DataKeySealed])
		if err != nil || plain.ThreadID != "otp 445566" || plain.Category != "APPROVE_DENY" {
			t.Fatalf("opened %+v, %v", plain, err)
		}
	}
}

// TestSilentMessageCarriesNoPresentation: the withdraw push repeats none
// of the alert's thread id, category or sound, on either platform.
func TestSilentMessageCarriesNoPresentation(t *testing.T) {
	e := setup(t, fcm.Options{})
	ios := android
	ios.Platform = relay.PlatformIOS
	for _, d := range []relay.Device{android, ios} {
		a := alertFor(relay.TypeIdentityVerification, time.Minute)
		a.Silent, a.ThreadID, a.Sound = true, "otp 445566", "chime"
		if err := e.client.Notify(t.Context(), d, a); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range e.fake.Pushes() {
		for _, clear := range []string{"thread", "category", "sound", "445566"} {
			if strings.Contains(string(p.Body), clear) {
				t.Fatalf("%q in the silent push: %s", clear, p.Body)
			}
		}
	}
}
