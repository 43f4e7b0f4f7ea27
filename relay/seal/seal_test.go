package seal_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/seal"
)

// The test vector of docs/sealed-payloads.md.
const (
	vectorPrivateKeyHex = "a8abababababababababababababababababababababababababababababab6b"
	vectorPublicKeyB64  = "43EthRoOXXm4McXjSrIrQaGYFx3iCbi4+sojoRxiSFk="
	vectorSealed        = "u71CeNnyaANU1ZNIVFbocCq5AGr6gA0TTy/zBGQ9i135FBL2kpIoRLHpCgrNh0YcDtwjg/QlDMzWhko6TfIbhPKhRN3h6g9l89L+umyIZLN+W90KMSSGytYQS4LMhfgusxPRgJmvWSNv01OlDfZVJD0VogOP39RYwtaQSi7PjhWU26Hd/f1y4nOfCS7bfQXzbQvz"
)

var vectorPlain = seal.Plain{Title: "Code for GitHub", Body: "Your code is 123456", Data: map[string]string{"account": "github", "otp": "123456"}}

func vectorKey(t *testing.T) *ecdh.PrivateKey {
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
	p, err := seal.Open(k, vectorSealed)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, vectorPlain) {
		t.Fatalf("opened %+v, want %+v", p, vectorPlain)
	}
}

func alert() *relay.Alert {
	return &relay.Alert{
		EventID: "evt-1", Workspace: "acme", Type: relay.TypeIdentityVerification,
		Title: "Confirm sign-in", Body: "From Berlin, Firefox", Data: map[string]string{"ip": "203.0.113.9"},
		Category: "APPROVE_DENY", Actions: []string{"approve", "deny"}, Priority: relay.PriorityHigh,
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
		if len(s.Data) != 2 || s.Data[seal.DataKeyVersion] != "1" {
			t.Fatalf("sealed data = %v", s.Data)
		}
		for _, secret := range []string{"Berlin", "203.0.113.9", "Confirm"} {
			if strings.Contains(s.Data[seal.DataKeySealed], secret) || strings.Contains(s.Title+s.Body, secret) {
				t.Fatalf("%q visible in the sealed alert", secret)
			}
		}
		if s.EventID != a.EventID || s.CollapseID != a.CollapseID || s.Category != a.Category || !reflect.DeepEqual(s.Actions, a.Actions) {
			t.Fatalf("routing fields changed: %+v", s)
		}
		p, err := seal.Open(k, s.Data[seal.DataKeySealed])
		if err != nil {
			t.Fatal(err)
		}
		if p.Title != a.Title || p.Body != a.Body || !reflect.DeepEqual(p.Data, a.Data) {
			t.Fatalf("opened %+v", p)
		}
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
			_, err := seal.Open(tc.key, tc.sealed)
			if err == nil {
				t.Fatal("opened")
			}
			if errors.Is(err, seal.ErrOpen) != tc.isOpen {
				t.Fatalf("err = %v; wraps ErrOpen = %v, want %v", err, !tc.isOpen, tc.isOpen)
			}
		})
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
