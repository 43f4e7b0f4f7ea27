package apns_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/delivery/apns"
	"github.com/edgerelay/edgerelay/relay/relaytest"
	"github.com/edgerelay/edgerelay/relay/seal"
)

// deviceBinding is what the app's extension does with a push it received:
// the binding from the push's clear fields and the workspace the app
// registered the device in.
func deviceBinding(p *relaytest.Push, workspace string) seal.Binding {
	d := p.Data()
	return seal.Binding{Workspace: workspace, EventID: d["event_id"], Type: d["type"], ExpiresAt: d["expires_at"]}
}

func sealedAlert(t *testing.T, id string, key *ecdh.PrivateKey) *relay.Alert {
	t.Helper()
	a := alertFor(relay.TypeIdentityVerification, time.Minute)
	a.EventID, a.CollapseID = id, "acme/"+id
	a.Title = "Confirm sign-in " + id
	a.ThreadID, a.Sound = "otp 445566", "chime"
	s, err := seal.Alert(a, base64.StdEncoding.EncodeToString(key.PublicKey().Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSealedPayloadAtTheFake: what APNs receives for a sealed alert
// carries no category, sound or thread id, and its ciphertext moved onto
// another event's push does not open on the device.
func TestSealedPayloadAtTheFake(t *testing.T) {
	e := setup(t, apns.Options{})
	key, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for _, id := range []string{"evt-a", "evt-b"} {
		if err := e.client.Notify(t.Context(), device, sealedAlert(t, id, key)); err != nil {
			t.Fatal(err)
		}
	}
	ps := e.fake.Pushes()
	if len(ps) != 2 {
		t.Fatalf("%d pushes", len(ps))
	}
	pa, pb := &ps[0], &ps[1]
	for _, p := range []*relaytest.Push{pa, pb} {
		raw := string(p.Body)
		for _, clear := range []string{"thread-id", "category", "sound", "445566", "chime", "APPROVE_DENY", "Confirm sign-in"} {
			if strings.Contains(raw, clear) {
				t.Fatalf("%q in clear: %s", clear, raw)
			}
		}
		if !strings.Contains(raw, `"mutable-content":1`) || p.Data()[seal.DataKeyVersion] != seal.Version {
			t.Fatalf("sealed push %s", raw)
		}
		plain, err := seal.Open(key, deviceBinding(p, "acme"), p.Data()[seal.DataKeySealed])
		if err != nil {
			t.Fatalf("own push does not open: %v", err)
		}
		if plain.Category != "APPROVE_DENY" || plain.ThreadID != "otp 445566" || plain.Sound != "chime" ||
			plain.Title != "Confirm sign-in "+p.Data()["event_id"] {
			t.Fatalf("opened %+v", plain)
		}
	}
	// The relaying provider swaps A's ciphertext into B's push.
	var body map[string]any
	if err := json.Unmarshal(pb.Body, &body); err != nil {
		t.Fatal(err)
	}
	body[seal.DataKeySealed] = pa.Data()[seal.DataKeySealed]
	forged := relaytest.Push{Provider: "apns"}
	forged.Body, _ = json.Marshal(body)
	forged.Payload = body
	if _, err := seal.Open(key, deviceBinding(&forged, "acme"), forged.Data()[seal.DataKeySealed]); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("A's ciphertext opened on event B: %v", err)
	}
	// Nor in another workspace with the same event id.
	if _, err := seal.Open(key, deviceBinding(pa, "globex"), pa.Data()[seal.DataKeySealed]); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("opened under another workspace: %v", err)
	}
}

// TestSilentPushCarriesNoPresentation: the withdraw push repeats none of
// the alert's thread id, category or sound.
func TestSilentPushCarriesNoPresentation(t *testing.T) {
	a := alertFor(relay.TypeIdentityVerification, time.Minute)
	a.Silent, a.ThreadID, a.Sound = true, "otp 445566", "chime"
	b, err := apns.Payload(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{"thread-id", "category", "sound", "445566"} {
		if strings.Contains(string(b), clear) {
			t.Fatalf("%q in the silent push: %s", clear, b)
		}
	}
}

// TestMutableContentFlag: an alert asking for mutable-content gets it even
// with no category, actions or data.
func TestMutableContentFlag(t *testing.T) {
	a := alertFor(relay.TypeAccountShared, time.Minute)
	a.MutableContent = true
	b, err := apns.Payload(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"mutable-content":1`) {
		t.Fatalf("payload %s", b)
	}
}
