package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgerelay/edgerelay/relay/config"
)

// fakeIdP serves a JSON Web Key Set that the test can rotate, and counts
// the fetches.
type fakeIdP struct {
	mu      sync.Mutex
	keys    []map[string]string
	fetches int
}

func (f *fakeIdP) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"keys": f.keys})
}

func (f *fakeIdP) publish(keys ...map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = keys
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func ecJWK(kid string, k *ecdsa.PrivateKey) map[string]string {
	raw, _ := k.PublicKey.Bytes() // 0x04 || X || Y
	return map[string]string{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig", "x": b64(raw[1:33]), "y": b64(raw[33:])}
}

func rsaJWK(kid string, k *rsa.PrivateKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func signed(t *testing.T, m jwt.SigningMethod, kid string, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "idp", Audience: jwt.ClaimStrings{"edgerelay"},
		Subject: "u1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now())}, Workspace: "acme", Role: RoleUser})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWKSRotation: tokens are verified with the identity provider's key
// set, chosen by kid; when the provider rotates its key, a token of the
// new key fetches the set again and passes, and the old key is refused.
// A key never verifies a token of another algorithm.
func TestJWKSRotation(t *testing.T) {
	idp := &fakeIdP{}
	srv := httptest.NewServer(idp)
	defer srv.Close()
	keyA, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyB, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	idp.publish(ecJWK("a", keyA), rsaJWK("r", rsaKey))

	v, err := NewVerifier(config.Auth{Issuer: "idp", Audience: "edgerelay", JWKSURL: srv.URL + "/jwks.json", JWKSRefresh: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if c, err := v.Verify(signed(t, jwt.SigningMethodES256, "a", keyA)); err != nil || c.Subject != "u1" {
		t.Fatalf("token of key a: %+v %v", c, err)
	}
	if _, err := v.Verify(signed(t, jwt.SigningMethodRS256, "r", rsaKey)); err != nil {
		t.Fatalf("RS256 token of key r: %v", err)
	}
	// Refused: no kid; a kid naming a key of another type; HS256 with
	// the public key as secret; a key the set does not have.
	for name, tok := range map[string]string{
		"no kid":          signed(t, jwt.SigningMethodES256, "", keyA),
		"wrong key type":  signed(t, jwt.SigningMethodES256, "r", keyA),
		"hs256":           signed(t, jwt.SigningMethodHS256, "a", []byte(strings.Repeat("k", 32))),
		"forged with key": signed(t, jwt.SigningMethodES256, "a", keyB),
	} {
		if _, err := v.Verify(tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// The provider rotates to key b.
	idp.publish(ecJWK("b", keyB))
	if _, err := v.Verify(signed(t, jwt.SigningMethodES256, "b", keyB)); err != nil {
		t.Fatalf("token of the rotated key b: %v", err)
	}
	if _, err := v.Verify(signed(t, jwt.SigningMethodES256, "a", keyA)); err == nil {
		t.Fatal("token of the retired key a still accepted after the set was fetched again")
	}
	idp.mu.Lock()
	fetches := idp.fetches
	idp.mu.Unlock()
	if fetches != 2 {
		t.Errorf("%d fetches of the key set, want 2 (start, unknown kid)", fetches)
	}
}
