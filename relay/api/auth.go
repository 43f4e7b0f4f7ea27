package api

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
)

// Roles a token may carry in its "role" claim.
const (
	RoleOwner      = "owner"
	RoleSuperAdmin = "super_admin"
	RoleAdmin      = "admin"
	RoleUser       = "user"
)

// Auth limits.
const (
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway = 30 * time.Second
	// MinHS256SecretBytes is the shortest HS256 secret accepted.
	MinHS256SecretBytes = 32
	// MinRSABits is the smallest RSA key accepted.
	MinRSABits = 2048
	// maxTokenLen bounds a bearer token.
	maxTokenLen = 8 << 10
)

// Claims are the app API's token claims: the registered ones (iss, aud,
// exp, nbf, sub) plus the workspace and the role.
type Claims struct {
	jwt.RegisteredClaims
	Workspace string `json:"ws"`
	Role      string `json:"role"`
}

// User returns the caller's user id (the sub claim).
func (c *Claims) User() string { return c.Subject }

// Admin reports whether the role may change workspace settings.
func (c *Claims) Admin() bool {
	return c.Role == RoleOwner || c.Role == RoleSuperAdmin || c.Role == RoleAdmin
}

// Validate checks the claims the app API adds; jwt calls it after the
// registered claims pass.
func (c *Claims) Validate() error {
	for _, f := range []struct{ name, v string }{{"sub", c.Subject}, {"ws", c.Workspace}} {
		if err := checkID(f.name, f.v); err != nil {
			return fmt.Errorf("claim %w", err)
		}
	}
	switch c.Role {
	case RoleOwner, RoleSuperAdmin, RoleAdmin, RoleUser:
		return nil
	case "":
		return errors.New("claim role: missing")
	}
	return fmt.Errorf("claim role %q: want owner, super_admin, admin or user", truncate(c.Role))
}

// Verifier checks app API bearer tokens against the configured key.
type Verifier struct {
	parser      *jwt.Parser
	key         any
	alg         string
	now         func() time.Time
	maxLifetime time.Duration // 0: no maximum
	// With auth.jwks_url: the key set (fetched and refreshed in the
	// background until Close), instead of key.
	jwks keyfunc.Keyfunc
	stop context.CancelFunc
}

// jwksAlgs are the algorithms accepted with a key set, each checked
// against the type of the key the token's kid names.
var jwksAlgs = []string{"RS256", "ES256", "EdDSA"}

// NewVerifier reads the key file named by a (auth.hs256_secret_file or
// auth.public_key_file) and returns a verifier that accepts only tokens
// signed with that key's algorithm (HS256, EdDSA or RS256), from a.Issuer
// for a.Audience, with an exp, at now (with Leeway), not issued in the
// future, without critical header extensions (crit: none is understood),
// and valid for at most a.MaxTokenLifetime (0: no maximum). now nil means
// time.Now.
func NewVerifier(a config.Auth, now func() time.Time) (*Verifier, error) {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{now: now, maxLifetime: a.MaxTokenLifetime}
	switch {
	case a.HS256SecretFile != "" && a.PublicKeyFile != "":
		return nil, errors.New("auth: set exactly one of hs256_secret_file and public_key_file")
	case a.HS256SecretFile != "":
		b, err := os.ReadFile(a.HS256SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.hs256_secret_file: %w", err)
		}
		b = bytes.TrimSpace(b)
		if len(b) < MinHS256SecretBytes {
			return nil, fmt.Errorf("auth.hs256_secret_file %s: secret is %d bytes, want at least %d", a.HS256SecretFile, len(b), MinHS256SecretBytes)
		}
		v.key, v.alg = b, jwt.SigningMethodHS256.Alg()
	case a.PublicKeyFile != "":
		key, alg, err := readPublicKey(a.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.public_key_file %s: %w", a.PublicKeyFile, err)
		}
		v.key, v.alg = key, alg
	case a.JWKSURL != "":
		ctx, stop := context.WithCancel(context.Background())
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{a.JWKSURL}, keyfunc.Override{
			RefreshInterval: cmp.Or(a.JWKSRefresh, time.Hour),
			HTTPTimeout:     10 * time.Second,
			// An identity provider down at start must not keep relayd
			// down: tokens are refused until the set is fetched.
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(context.Context, error) {} // logged by Verify's error
			},
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("auth.jwks_url %s: %w", a.JWKSURL, err)
		}
		v.jwks, v.stop, v.alg = kf, stop, strings.Join(jwksAlgs, ",")
	default:
		return nil, errors.New("auth: set hs256_secret_file, public_key_file or jwks_url")
	}
	if a.Issuer == "" || a.Audience == "" {
		v.Close()
		return nil, errors.New("auth: issuer and audience must be set")
	}
	methods := []string{v.alg}
	if v.jwks != nil {
		methods = jwksAlgs
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(methods),
		jwt.WithIssuer(a.Issuer),
		jwt.WithAudience(a.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), // iat in the future (beyond Leeway) is refused
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(now),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// Algorithm returns the JWT algorithm the verifier accepts (with a key
// set, the list).
func (v *Verifier) Algorithm() string { return v.alg }

// Close stops fetching the key set (auth.jwks_url); other verifiers hold
// nothing. Safe to call more than once.
func (v *Verifier) Close() {
	if v.stop != nil {
		v.stop()
	}
}

// jwksKey returns the key of the set named by t's kid, if its type fits
// t's algorithm (an RSA key never meets ES256, an HMAC secret never
// anything).
func (v *Verifier) jwksKey(t *jwt.Token) (any, error) {
	if _, ok := t.Header["kid"].(string); !ok {
		return nil, errors.New("token has no kid: with auth.jwks_url the key is chosen by kid")
	}
	key, err := v.jwks.Keyfunc(t)
	if err != nil {
		return nil, err
	}
	var fits bool
	switch key.(type) {
	case *rsa.PublicKey:
		fits = t.Method.Alg() == "RS256"
	case *ecdsa.PublicKey:
		fits = t.Method.Alg() == "ES256"
	case ed25519.PublicKey:
		fits = t.Method.Alg() == "EdDSA"
	}
	if !fits {
		return nil, fmt.Errorf("key %v of the key set is a %T, not a key for %s", t.Header["kid"], key, t.Method.Alg())
	}
	return key, nil
}

// Verify parses and checks a token. The error says why it was refused (for
// logs; never show it the token).
func (v *Verifier) Verify(raw string) (*Claims, error) {
	if len(raw) > maxTokenLen {
		return nil, fmt.Errorf("token is %d bytes, longer than %d", len(raw), maxTokenLen)
	}
	c := &Claims{}
	_, err := v.parser.ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused every other alg; check again
		// so the key can never meet another algorithm.
		if t.Method == nil || (v.jwks == nil && t.Method.Alg() != v.alg) {
			return nil, fmt.Errorf("algorithm %v not allowed", t.Header["alg"])
		}
		// RFC 7515 section 4.1.11: a recipient must refuse a token whose
		// crit lists an extension it does not understand; we understand
		// none (and an empty crit is invalid too).
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("critical header extensions (crit) not supported")
		}
		if v.jwks != nil {
			return v.jwksKey(t)
		}
		return v.key, nil
	})
	if err != nil {
		return nil, err
	}
	if v.maxLifetime > 0 {
		from := v.now()
		if c.IssuedAt != nil {
			from = c.IssuedAt.Time
		}
		if life := c.ExpiresAt.Sub(from); life > v.maxLifetime {
			return nil, fmt.Errorf("token valid for %s, longer than auth.max_token_lifetime (%s)", life.Round(time.Second), v.maxLifetime)
		}
	}
	return c, nil
}

// bearer extracts the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Values("Authorization")
	switch len(h) {
	case 0:
		return "", errors.New("no authorization header")
	case 1:
	default:
		return "", errors.New("more than one authorization header")
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New("authorization header is not a Bearer token")
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", errors.New("empty bearer token")
	}
	return tok, nil
}

// readPublicKey reads a PEM public key (PKIX "PUBLIC KEY", PKCS#1 "RSA
// PUBLIC KEY" or a "CERTIFICATE") and returns it with its algorithm.
func readPublicKey(path string) (any, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, "", errors.New("no PEM block")
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, "", fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, "", fmt.Errorf("parse %s: %w", block.Type, err)
	}
	switch k := key.(type) {
	case ed25519.PublicKey:
		return k, jwt.SigningMethodEdDSA.Alg(), nil
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return nil, "", fmt.Errorf("RSA key is %d bits, want at least %d", k.N.BitLen(), MinRSABits)
		}
		return k, jwt.SigningMethodRS256.Alg(), nil
	}
	return nil, "", fmt.Errorf("key type %T: want Ed25519 (EdDSA) or RSA (RS256)", key)
}

// checkID checks a workspace, user, device or event id (path parameter,
// claim, body): the grammar of relay.CheckID, shared with the socket.
func checkID(field, s string) error {
	if err := relay.CheckID(s); err != nil {
		return &FieldError{Field: field, Reason: err.Error()}
	}
	return nil
}
