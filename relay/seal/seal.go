package seal

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edgerelay/edgerelay/relay"
)

// The sealed-payload format, version 1. Changing any of these is a new
// version.
const (
	// Info is the HPKE info string (key schedule context).
	Info = "edgerelay sealed alert v1"
	// Version is the value of DataKeyVersion in a sealed alert.
	Version = "1"
	// DataKeySealed is the alert data key holding base64(enc || ciphertext).
	DataKeySealed = "sealed"
	// DataKeyVersion is the alert data key holding Version.
	DataKeyVersion = "seal_v"
	// FallbackTitle and FallbackBody are what a sealed alert shows when
	// the app cannot open it. They say nothing about the alert.
	FallbackTitle = "New security alert"
	FallbackBody  = "Open to view"
	// KeySize is the size of an X25519 public or private key.
	KeySize = 32
	// encSize is the size of the encapsulated key of DHKEM(X25519).
	encSize = 32
)

// Suite identifiers (RFC 9180 section 7), for the documentation and for
// apps that configure their HPKE library by number.
const (
	KEMID  = 0x0020 // DHKEM(X25519, HKDF-SHA256)
	KDFID  = 0x0001 // HKDF-SHA256
	AEADID = 0x0003 // ChaCha20-Poly1305
)

// Plain is what a sealed alert carries, JSON-encoded, as the HPKE
// plaintext: {"title","body","data"}.
type Plain struct {
	Title string            `json:"title"`
	Body  string            `json:"body"`
	Data  map[string]string `json:"data,omitempty"`
}

// ErrOpen is wrapped by Open's errors when the payload does not decrypt
// (wrong key, tampered or truncated ciphertext).
var ErrOpen = errors.New("open sealed alert")

// KeyError says why a device public key cannot be sealed to. Reason reads
// after the field name: `public_key is not base64`.
type KeyError struct{ Reason string }

func (e *KeyError) Error() string { return "public key " + e.Reason }

// ParsePublicKey decodes a device's public key: 32 bytes of X25519 in
// base64 (standard or URL alphabet, padded or not). It refuses what sealing
// would refuse later (low-order points such as the all-zero key), so a key
// accepted at registration can always be sealed to. Errors are *KeyError.
func ParsePublicKey(b64 string) (*ecdh.PublicKey, error) {
	raw, err := decodeBase64(b64)
	if err != nil || b64 == "" {
		return nil, &KeyError{Reason: "is not base64"}
	}
	if len(raw) != KeySize {
		return nil, &KeyError{Reason: fmt.Sprintf("is %d bytes, want %d (X25519)", len(raw), KeySize)}
	}
	pk, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		return nil, &KeyError{Reason: "is not an X25519 key"}
	}
	// X25519 accepts any 32 bytes but yields no shared secret for a
	// low-order point: try one exchange now rather than at every alert.
	probe, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if _, err := probe.ECDH(pk); err != nil {
		return nil, &KeyError{Reason: "is a low-order X25519 point"}
	}
	return pk, nil
}

// NormalizePublicKey checks a device's public key as ParsePublicKey does
// and returns it in standard base64 with padding, the form devices are
// stored with.
func NormalizePublicKey(b64 string) (string, error) {
	pk, err := ParsePublicKey(b64)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(pk.Bytes()), nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// Seal encrypts p to pub and returns base64(enc || ciphertext) in the
// standard alphabet with padding. Each call uses a fresh ephemeral key, so
// two seals of the same plaintext differ.
func Seal(pub *ecdh.PublicKey, p Plain) (string, error) {
	pt, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("seal alert: %w", err)
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("seal alert: %w", err)
	}
	ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(Info), pt)
	if err != nil {
		return "", fmt.Errorf("seal alert: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// Alert returns a sealed copy of a for the device whose public key is
// devicePublicKeyB64; a itself is not changed. The copy shows
// FallbackTitle and FallbackBody, its Data holds only DataKeySealed and
// DataKeyVersion, and MutableContent is set so iOS hands it to the app's
// notification service extension. Everything else (event id, type,
// category, actions, priority, collapse id, expiry) stays visible: the
// relay and the providers need it, and it carries no secret.
func Alert(a *relay.Alert, devicePublicKeyB64 string) (*relay.Alert, error) {
	if a == nil {
		return nil, errors.New("seal alert: nil alert")
	}
	pub, err := ParsePublicKey(devicePublicKeyB64)
	if err != nil {
		return nil, fmt.Errorf("seal alert %s: %w", a.EventID, err)
	}
	sealed, err := Seal(pub, Plain{Title: a.Title, Body: a.Body, Data: maps.Clone(a.Data)})
	if err != nil {
		return nil, fmt.Errorf("seal alert %s: %w", a.EventID, err)
	}
	out := *a
	out.Title = FallbackTitle
	out.Body = FallbackBody
	out.Data = map[string]string{DataKeySealed: sealed, DataKeyVersion: Version}
	out.Actions = slices.Clone(a.Actions)
	out.MutableContent = true
	return &out, nil
}

// Open is the device side: it decrypts a DataKeySealed value with the
// device's private key. Errors wrap ErrOpen when the payload does not
// decrypt.
func Open(priv *ecdh.PrivateKey, sealed string) (Plain, error) {
	var p Plain
	if priv == nil || priv.Curve() != ecdh.X25519() {
		return p, errors.New("open sealed alert: want an X25519 private key")
	}
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return p, fmt.Errorf("open sealed alert: decode base64: %w", err)
	}
	if len(raw) < encSize+16 {
		return p, fmt.Errorf("open sealed alert: %d bytes, shorter than enc and tag: %w", len(raw), ErrOpen)
	}
	k, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return p, fmt.Errorf("open sealed alert: %w", err)
	}
	pt, err := hpke.Open(k, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(Info), raw)
	if err != nil {
		return p, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	if err := json.Unmarshal(pt, &p); err != nil {
		return Plain{}, fmt.Errorf("open sealed alert: decode plaintext: %w", err)
	}
	return p, nil
}
