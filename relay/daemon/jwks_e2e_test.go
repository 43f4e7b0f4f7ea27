package daemon_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// idp is a fake identity provider publishing one EC key set at a time.
type idp struct {
	mu  sync.Mutex
	set []byte
}

func (p *idp) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(p.set)
}

func (p *idp) publish(kid string, k *ecdsa.PrivateKey) {
	raw, _ := k.PublicKey.Bytes()
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(raw[1:33]), "y": base64.RawURLEncoding.EncodeToString(raw[33:])}}})
	p.mu.Lock()
	p.set = b
	p.mu.Unlock()
}

func idpToken(t *testing.T, kid string, k *ecdsa.PrivateKey) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": "upstream", "aud": "edgerelay", "sub": "u1", "ws": "acme", "role": "user",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuthReloadToJWKSAndRotation: relayd verifies app API tokens with an
// HS256 secret; config.hcl is changed to an identity provider's key set
// (auth.jwks_url) and reloaded with SIGHUP: the secret's tokens are
// refused and the provider's accepted, without a restart. When the
// provider rotates its key, the new key's tokens pass and the old key's
// are refused.
func TestAuthReloadToJWKSAndRotation(t *testing.T) {
	h, a := startWithAPI(t)
	defer h.stop(syscall.SIGTERM)
	a.must(200, "GET", "/v1/devices", a.token("acme", "u1", "user"), nil)

	provider := &idp{}
	srv := httptest.NewServer(provider)
	defer srv.Close()
	keyA, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyB, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	provider.publish("a", keyA)
	h.editConfig(`hs256_secret_file = "./jwt.secret"`, `jwks_url = "`+srv.URL+`/.well-known/jwks.json"`)
	h.signal(syscall.SIGHUP)
	h.waitLog("config reloaded", 1)

	a.must(401, "GET", "/v1/devices", a.token("acme", "u1", "user"), nil)
	a.must(200, "GET", "/v1/devices", idpToken(t, "a", keyA), nil)

	provider.publish("b", keyB)
	a.must(200, "GET", "/v1/devices", idpToken(t, "b", keyB), nil)
	a.must(401, "GET", "/v1/devices", idpToken(t, "a", keyA), nil)
}
