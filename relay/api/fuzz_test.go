package api

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
)

var fuzzTypes = map[string]bool{
	relay.TypeOTPReceived: true, relay.TypeIdentityVerification: true,
	relay.TypeNewTrustedDevice: true, relay.TypeAccountShared: true,
}

func fuzzKnown(t string) bool { return fuzzTypes[t] }

// checkFieldError fails unless err is a *FieldError with a reason.
func checkFieldError(t *testing.T, err error) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Reason == "" || len(fe.Field) > 80 {
		t.Fatalf("error %v (%T) is not a FieldError with a reason and a short field", err, err)
	}
}

func seed(f *testing.F, seeds ...string) {
	for _, s := range append(seeds, ``, `{}`, `[]`, `null`, `{"a":1}`, `{"a":1}{}`, `{"a":1,"a":2}`, "{\"\xff\":1}",
		`{"a":`, `"str"`, `{"a":{"b":[1,2,{"c":null}]}}`) {
		f.Add([]byte(s))
	}
}

func FuzzDecodeDevice(f *testing.F) {
	seed(f,
		`{"platform":"ios","token":"abc","app":"demo"}`,
		`{"platform":"android","token":"abc","app":"demo","environment":"sandbox","name":"Pixel","public_key":"43EthRoOXXm4McXjSrIrQaGYFx3iCbi4+sojoRxiSFk="}`,
		`{"platform":"ios","token":"a b","app":"demo"}`,
		`{"platform":"ios","token":"abc","app":"demo","public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
		`{"platform":"ios","token":"abc","app":"demo","name":"\u0007"}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := decodeDevice(body, func(a string) bool { return a == "demo" })
		if err != nil {
			checkFieldError(t, err)
			return
		}
		if !d.Platform.Valid() || d.Token == "" || len(d.Token) > MaxTokenLen || d.App != "demo" {
			t.Fatalf("accepted %+v", d)
		}
		if d.PublicKey != "" {
			if _, err := publicKey(d.PublicKey); err != nil {
				t.Fatalf("accepted public key %q that does not decode again: %v", d.PublicKey, err)
			}
		}
		if d.Platform == relay.PlatformIOS && d.Environment == "" {
			t.Fatal("ios device without environment")
		}
	})
}

func FuzzDecodePreferences(f *testing.F) {
	seed(f, `{"otp_received":false}`, `{"otp_received":true,"account_shared":false}`, `{"otp_received":"no"}`, `{"sms":true}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodePreferences(body, fuzzKnown)
		if err != nil {
			checkFieldError(t, err)
			return
		}
		for k := range p {
			if !fuzzTypes[k] {
				t.Fatalf("accepted unknown type %q", k)
			}
		}
	})
}

func FuzzDecodeSettings(f *testing.F) {
	seed(f, `{"otp_received":"enforced"}`, `{"otp_received":"disabled","account_shared":"enabled"}`, `{"otp_received":true}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := decodeSettings(body, fuzzKnown)
		if err != nil {
			checkFieldError(t, err)
			return
		}
		for k, v := range s {
			if !fuzzTypes[k] || !v.Valid() {
				t.Fatalf("accepted %q: %q", k, v)
			}
		}
	})
}

func FuzzDecodeAction(f *testing.F) {
	seed(f, `{"action":"approve","device_id":"phone"}`, `{"action":"","device_id":"phone"}`, `{"action":"deny","device_id":"a/b"}`, `{"device_id":"x"}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := decodeAction(body)
		if err != nil {
			checkFieldError(t, err)
			return
		}
		if a.Action == "" || len(a.Action) > relay.MaxActionLen || checkID("device_id", a.DeviceID) != nil {
			t.Fatalf("accepted %+v", a)
		}
	})
}

// FuzzVerifyToken: the token verifier never panics, and whatever it accepts
// meets the checks (signed with the key, not issued in the future, within
// the lifetime, no crit header).
func FuzzVerifyToken(f *testing.F) {
	dir := f.TempDir()
	secretFile := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(secretFile, testSecret, 0o600); err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	v, err := NewVerifier(config.Auth{Issuer: testIssuer, Audience: testAudience, HS256SecretFile: secretFile, MaxTokenLifetime: time.Hour}, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mint(f, jwt.SigningMethodHS256, testSecret, claims(now, nil)))
	f.Add(mint(f, jwt.SigningMethodHS256, testSecret, claims(now, func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })))
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			return
		}
		if c.IssuedAt != nil && c.IssuedAt.After(now.Add(Leeway)) {
			t.Fatalf("accepted iat in the future: %v", c.IssuedAt)
		}
		from := now
		if c.IssuedAt != nil {
			from = c.IssuedAt.Time
		}
		if c.ExpiresAt.Sub(from) > time.Hour {
			t.Fatalf("accepted a token living %s", c.ExpiresAt.Sub(from))
		}
	})
}
