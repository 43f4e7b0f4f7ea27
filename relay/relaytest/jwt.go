package relaytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// jws is a parsed compact JWT, not yet verified.
type jws struct {
	header  map[string]any
	claims  map[string]any
	signed  []byte // header.claims, the signing input
	sig     []byte
	algName string
}

func parseJWT(s string) (*jws, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWT")
	}
	var t jws
	for i, dst := range []*map[string]any{&t.header, &t.claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, fmt.Errorf("decode JWT part %d: %w", i, err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return nil, fmt.Errorf("parse JWT part %d: %w", i, err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("decode JWT signature: %w", err)
	}
	t.sig = sig
	t.signed = []byte(parts[0] + "." + parts[1])
	t.algName, _ = t.header["alg"].(string)
	return &t, nil
}

func (t *jws) str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// num returns a numeric claim, and whether it was a number.
func (t *jws) num(k string) (int64, bool) {
	f, ok := t.claims[k].(float64)
	return int64(f), ok
}

func (t *jws) verifyES256(pub *ecdsa.PublicKey) error {
	if t.algName != "ES256" {
		return fmt.Errorf("alg %q, want ES256", t.algName)
	}
	if len(t.sig) != 64 {
		return errors.New("ES256 signature is not 64 bytes")
	}
	h := sha256.Sum256(t.signed)
	r := new(big.Int).SetBytes(t.sig[:32])
	s := new(big.Int).SetBytes(t.sig[32:])
	if !ecdsa.Verify(pub, h[:], r, s) {
		return errors.New("bad ES256 signature")
	}
	return nil
}

func (t *jws) verifyRS256(pub *rsa.PublicKey) error {
	if t.algName != "RS256" {
		return fmt.Errorf("alg %q, want RS256", t.algName)
	}
	h := sha256.Sum256(t.signed)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], t.sig); err != nil {
		return fmt.Errorf("bad RS256 signature: %w", err)
	}
	return nil
}
