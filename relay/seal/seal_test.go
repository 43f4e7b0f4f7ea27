package seal_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/seal"
)

// The v2 test vector of docs/sealed-payloads.md (TestDocVector checks the
// doc shows these values).
const (
	vectorPrivateKeyHex = "a8abababababababababababababababababababababababababababababab6b"
	vectorPublicKeyB64  = "43EthRoOXXm4McXjSrIrQaGYFx3iCbi4+sojoRxiSFk="
	vectorAADHex        = "000461636d6500066576742d3432000c6f74705f72656365697665640014323032362d31322d30365431303a30353a30305a"
	vectorPlainJSON     = `{"title":"Code for GitHub","body":"Your code is 123456","data":{"account":"github","otp":"123456"},"category":"OTP","sound":"default","thread_id":"github"}`
	vectorSealed        = "ZC1KPdsNS2QaCxREbxzsF5HhpQTXkeaU88G8FpcUq2knm1waypftYvSsi9yVM4gaVtnqUaiZXKSJKNYThsA35Ld/iRZco7JH3JpUx1vOqt2BdFpOVETreCM3bQ35/uveWUxgBnNFQIUTN+XA9eMSrMkCY12V7lbWmGLlzMNIPRW7dEXutViIDbLkHCgyXY221xIM4Wn1Fvpt8elPUl+oenB4sXSXr/dMwRrSCuiJTpw+HC6trMyqViFaftOp4i4/reNrkgu8xvGIIyA="
	// vectorSeed is the testing/cryptotest seed that reproduces
	// vectorSealed (the ephemeral key is the only randomness).
	vectorSeed = 2
)

var (
	vectorBinding = seal.Binding{Workspace: "acme", EventID: "evt-42", Type: relay.TypeOTPReceived, ExpiresAt: "2026-12-06T10:05:00Z"}
	vectorPlain   = seal.Plain{Title: "Code for GitHub", Body: "Your code is 123456", Data: map[string]string{"account": "github", "otp": "123456"},
		Category: "OTP", Sound: "default", ThreadID: "github"}
)

func vectorKey(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	raw, err := hex.DecodeString(vectorPrivateKeyHex)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVector(t *testing.T) {
	k := vectorKey(t)
	if got := base64.StdEncoding.EncodeToString(k.PublicKey().Bytes()); got != vectorPublicKeyB64 {
		t.Fatalf("public key = %s, want %s", got, vectorPublicKeyB64)
	}
	aad, err := vectorBinding.AAD()
	if err != nil || hex.EncodeToString(aad) != vectorAADHex {
		t.Fatalf("aad = %x, %v; want %s", aad, err, vectorAADHex)
	}
	if pt, _ := json.Marshal(vectorPlain); string(pt) != vectorPlainJSON {
		t.Fatalf("plaintext = %s, want %s", pt, vectorPlainJSON)
	}
	p, err := seal.Open(k, vectorBinding, vectorSealed)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, vectorPlain) {
		t.Fatalf("opened %+v, want %+v", p, vectorPlain)
	}
	// The vector is reproducible: the same seed gives the same bytes.
	cryptotest.SetGlobalRandom(t, vectorSeed)
	if s, err := seal.Seal(k.PublicKey(), vectorBinding, vectorPlain); err != nil || s != vectorSealed {
		t.Fatalf("sealing with seed %d = %s, %v; want the vector", vectorSeed, s, err)
	}
}

// TestDocVector: docs/sealed-payloads.md shows the vector TestVector
// checks, so an app developer copying it tests against the real format.
func TestDocVector(t *testing.T) {
	doc, err := os.ReadFile("../../docs/sealed-payloads.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"private key": vectorPrivateKeyHex, "public key": vectorPublicKeyB64, "aad": vectorAADHex,
		"plaintext": vectorPlainJSON, "sealed": vectorSealed, "info": seal.Info,
		"workspace": vectorBinding.Workspace, "event id": vectorBinding.EventID, "expires_at": vectorBinding.ExpiresAt} {
		if !strings.Contains(string(doc), v) {
			t.Errorf("the doc does not show the vector's %s %q", name, v)
		}
	}
}

func alert() *relay.Alert {
	return &relay.Alert{
		EventID: "evt-1", Workspace: "acme", Type: relay.TypeIdentityVerification,
		Title: "Confirm sign-in", Body: "From Berlin, Firefox", Data: map[string]string{"ip": "203.0.113.9"},
		Category: "APPROVE_DENY", Actions: []string{"approve", "deny"}, Priority: relay.PriorityHigh,
		Sound: "chime", ThreadID: "otp 445566", InterruptionLevel: "time-sensitive",
		CollapseID: "c0ffee", ExpiresAt: time.Date(2026, 11, 27, 10, 2, 0, 0, time.UTC),
	}
}

func TestAlertRoundTrip(t *testing.T) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := alert()
	orig := *a
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		s, err := seal.Alert(a, enc.EncodeToString(k.PublicKey().Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*a, orig) {
			t.Fatal("Alert changed its input")
		}
		if s.Title != seal.FallbackTitle || s.Body != seal.FallbackBody || !s.MutableContent {
			t.Fatalf("sealed alert shows %q / %q, mutable %v", s.Title, s.Body, s.MutableContent)
		}
		if len(s.Data) != 2 || s.Data[seal.DataKeyVersion] != "2" {
			t.Fatalf("sealed data = %v", s.Data)
		}
		if s.Category != "" || s.Sound != "" || s.ThreadID != "" {
			t.Fatalf("presentation fields in clear: category %q sound %q thread %q", s.Category, s.Sound, s.ThreadID)
		}
		for _, secret := range []string{"Berlin", "203.0.113.9", "Confirm", "445566"} {
			if strings.Contains(s.Data[seal.DataKeySealed], secret) || strings.Contains(s.Title+s.Body, secret) {
				t.Fatalf("%q visible in the sealed alert", secret)
			}
		}
		if s.EventID != a.EventID || s.Workspace != a.Workspace || s.Type != a.Type || s.CollapseID != a.CollapseID ||
			!s.ExpiresAt.Equal(a.ExpiresAt) || !reflect.DeepEqual(s.Actions, a.Actions) {
			t.Fatalf("routing fields changed: %+v", s)
		}
		p, err := seal.Open(k, seal.BindingOf(s), s.Data[seal.DataKeySealed])
		if err != nil {
			t.Fatal(err)
		}
		want := seal.Plain{Title: a.Title, Body: a.Body, Data: a.Data, Category: a.Category, Sound: a.Sound, ThreadID: a.ThreadID}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("opened %+v, want %+v", p, want)
		}
	}
}

// TestMovedCiphertext: a ciphertext does not open under the binding of
// any other alert (what Apple or Google would do to make the user read
// one prompt and approve another).
func TestMovedCiphertext(t *testing.T) {
	k := vectorKey(t)
	moved := map[string]func(*seal.Binding){
		"other event id":   func(b *seal.Binding) { b.EventID = "evt-43" },
		"other workspace":  func(b *seal.Binding) { b.Workspace = "globex" },
		"other type":       func(b *seal.Binding) { b.Type = relay.TypeIdentityVerification },
		"other expires_at": func(b *seal.Binding) { b.ExpiresAt = "2026-12-06T10:06:00Z" },
		"no expires_at":    func(b *seal.Binding) { b.ExpiresAt = "" },
		// Length prefixes: shifting bytes between fields changes the AAD.
		"shifted fields": func(b *seal.Binding) { b.Workspace, b.EventID = "acmeevt-", "42" },
	}
	for name, change := range moved {
		t.Run(name, func(t *testing.T) {
			b := vectorBinding
			change(&b)
			_, err := seal.Open(k, b, vectorSealed)
			if !errors.Is(err, seal.ErrOpen) {
				t.Fatalf("opened under %+v: %v", b, err)
			}
		})
	}
}

func TestGeneric(t *testing.T) {
	a := alert()
	orig := *a
	g := seal.Generic(a)
	if !reflect.DeepEqual(*a, orig) {
		t.Fatal("Generic changed its input")
	}
	if g.Title != seal.FallbackTitle || g.Body != seal.FallbackBody || !g.MutableContent ||
		!reflect.DeepEqual(g.Data, map[string]string{seal.DataKeyContent: seal.ContentFetch}) ||
		g.Category != "" || g.Sound != "" || g.ThreadID != "" {
		t.Fatalf("generic alert %+v", g)
	}
	if g.EventID != a.EventID || g.Type != a.Type || !g.ExpiresAt.Equal(a.ExpiresAt) {
		t.Fatalf("generic alert lost its routing fields: %+v", g)
	}
}

func TestOpenFailures(t *testing.T) {
	k := vectorKey(t)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	raw, _ := base64.StdEncoding.DecodeString(vectorSealed)
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)-1] ^= 1
	tests := []struct {
		name   string
		key    *ecdh.PrivateKey
		sealed string
		isOpen bool
	}{
		{"wrong key", other, vectorSealed, true},
		{"tampered", k, base64.StdEncoding.EncodeToString(flipped), true},
		{"truncated", k, base64.StdEncoding.EncodeToString(raw[:40]), true},
		{"not base64", k, "!!!", false},
		{"nil key", nil, vectorSealed, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := seal.Open(tc.key, vectorBinding, tc.sealed)
			if err == nil {
				t.Fatal("opened")
			}
			if errors.Is(err, seal.ErrOpen) != tc.isOpen {
				t.Fatalf("err = %v; wraps ErrOpen = %v, want %v", err, !tc.isOpen, tc.isOpen)
			}
		})
	}
	long := vectorBinding
	long.EventID = strings.Repeat("x", 70000)
	if _, err := seal.Open(k, long, vectorSealed); err == nil || !strings.Contains(err.Error(), "event_id") {
		t.Fatalf("oversized binding: %v", err)
	}
}

func TestBadPublicKeys(t *testing.T) {
	for _, key := range []string{"", "abc", base64.StdEncoding.EncodeToString(make([]byte, 31)), "%%%%",
		base64.StdEncoding.EncodeToString(make([]byte, 32))} { // all-zero: a low-order point
		if _, err := seal.Alert(alert(), key); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
	if _, err := seal.Alert(nil, vectorPublicKeyB64); err == nil {
		t.Error("nil alert accepted")
	}
}

// FuzzOpen: the device-side decoder never panics, and whatever opens
// opened only under the vector's binding.
func FuzzOpen(f *testing.F) {
	f.Add(vectorSealed, vectorBinding.Workspace, vectorBinding.EventID, vectorBinding.Type, vectorBinding.ExpiresAt)
	f.Add("", "", "", "", "")
	f.Add("AAAA", "acme", "e", "t", "x")
	k := vectorKey(f)
	f.Fuzz(func(t *testing.T, sealed, ws, id, typ, exp string) {
		b := seal.Binding{Workspace: ws, EventID: id, Type: typ, ExpiresAt: exp}
		p, err := seal.Open(k, b, sealed)
		if err == nil && (b != vectorBinding || !reflect.DeepEqual(p, vectorPlain)) {
			t.Fatalf("opened %+v under %+v", p, b)
		}
	})
}
