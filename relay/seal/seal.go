package seal

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// The sealed-payload format, version 2 (docs/sealed-payloads.md). Changing
// any of these is a new version. Version 1 (no associated data, nothing
// bound to the event) is retired: the relay no longer produces it.
const (
	// Info is the HPKE info string (key schedule context).
	Info = "edgerelay sealed alert v2"
	// Version is the value of DataKeyVersion in a sealed alert.
	Version = "2"
	// DataKeySealed is the alert data key holding base64(enc || ciphertext).
	DataKeySealed = "sealed"
	// DataKeyVersion is the alert data key holding Version.
	DataKeyVersion = "seal_v"
	// DataKeyContent is the alert data key that, set to ContentFetch,
	// tells the app the push carries no content: it fetches it with
	// GET /v1/events/{id} (seal = "required", device without a key).
	DataKeyContent = "content"
	// ContentFetch is the value of DataKeyContent on a generic alert.
	ContentFetch = "fetch"
	// FallbackTitle and FallbackBody are what a sealed or generic alert
	// shows when the app cannot open or fetch it. They say nothing about
	// the alert.
	FallbackTitle = "New security alert"
	FallbackBody  = "Open to view"
	// KeySize is the size of an X25519 public or private key.
	KeySize = 32
	// encSize is the size of the encapsulated key of DHKEM(X25519).
	encSize = 32
	// tagSize is the size of the ChaCha20-Poly1305 tag.
	tagSize = 16
)

// Suite identifiers (RFC 9180 section 7), for the documentation and for
// apps that configure their HPKE library by number.
const (
	KEMID  = 0x0020 // DHKEM(X25519, HKDF-SHA256)
	KDFID  = 0x0001 // HKDF-SHA256
	AEADID = 0x0003 // ChaCha20-Poly1305
)

// Plain is what a sealed alert carries, JSON-encoded, as the HPKE
// plaintext. Besides the content it holds the presentation fields that
// would otherwise travel in clear (category, sound, thread id): the app's
// extension applies them after opening.
type Plain struct {
	Title    string            `json:"title"`
	Body     string            `json:"body"`
	Data     map[string]string `json:"data,omitempty"`
	Category string            `json:"category,omitempty"`
	Sound    string            `json:"sound,omitempty"`
	ThreadID string            `json:"thread_id,omitempty"`
}

// Binding names the alert a ciphertext belongs to. It is the HPKE
// associated data, so a ciphertext opens only with the binding of the
// push it was sealed for: the app builds it from the push's clear
// event_id, type and expires_at and the workspace it registered the
// device in, and a ciphertext moved to another alert does not open.
type Binding struct {
	Workspace string
	EventID   string
	Type      string
	// ExpiresAt is the push's "expires_at" string: RFC 3339 in UTC, whole
	// seconds, or empty when the alert has no expiry.
	ExpiresAt string
}

// BindingOf returns the binding of a, with expires_at formatted as the
// payload builders format it.
func BindingOf(a *relay.Alert) Binding {
	b := Binding{Workspace: a.Workspace, EventID: a.EventID, Type: a.Type}
	if !a.ExpiresAt.IsZero() {
		b.ExpiresAt = a.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return b
}

// AAD encodes b as the HPKE associated data: workspace, event id, type
// and expires_at in that order, each as a 2-byte big-endian length and its
// UTF-8 bytes. Length prefixes make the encoding unambiguous whatever the
// ids contain.
func (b Binding) AAD() ([]byte, error) {
	fields := []struct{ name, v string }{
		{"workspace", b.Workspace}, {"event_id", b.EventID}, {"type", b.Type}, {"expires_at", b.ExpiresAt},
	}
	var out []byte
	for _, f := range fields {
		if len(f.v) > 0xffff {
			return nil, fmt.Errorf("binding %s is %d bytes, limit 65535", f.name, len(f.v))
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(f.v)))
		out = append(out, f.v...)
	}
	return out, nil
}

// ErrOpen is wrapped by Open's errors when the payload does not decrypt
// (wrong key, another alert's binding, tampered or truncated ciphertext).
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

// Seal encrypts p to pub, bound to b, and returns base64(enc ||
// ciphertext) in the standard alphabet with padding. Each call uses a
// fresh ephemeral key, so two seals of the same plaintext differ.
func Seal(pub *ecdh.PublicKey, b Binding, p Plain) (string, error) {
	aad, err := b.AAD()
	if err != nil {
		return "", fmt.Errorf("seal alert: %w", err)
	}
	pt, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("seal alert: %w", err)
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("seal alert: %w", err)
	}
	enc, s, err := hpke.NewSender(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(Info))
	if err != nil {
		return "", fmt.Errorf("seal alert: %w", err)
	}
	ct, err := s.Seal(aad, pt)
	if err != nil {
		return "", fmt.Errorf("seal alert: %w", err)
	}
	return base64.StdEncoding.EncodeToString(append(enc, ct...)), nil
}

// Alert returns a sealed copy of a for the device whose public key is
// devicePublicKeyB64; a itself is not changed. The copy shows
// FallbackTitle and FallbackBody, its Data holds only DataKeySealed and
// DataKeyVersion, its category, sound and thread id are empty (they are
// inside the ciphertext), and MutableContent is set so iOS hands it to
// the app's notification service extension. What stays visible (event
// id, workspace, type, actions, priority, interruption level, collapse
// id, expiry) is what the relay and the providers need; the first four
// and expiry are bound to the ciphertext.
func Alert(a *relay.Alert, devicePublicKeyB64 string) (*relay.Alert, error) {
	if a == nil {
		return nil, errors.New("seal alert: nil alert")
	}
	pub, err := ParsePublicKey(devicePublicKeyB64)
	if err != nil {
		return nil, fmt.Errorf("seal alert %s: %w", a.EventID, err)
	}
	p := Plain{Title: a.Title, Body: a.Body, Data: maps.Clone(a.Data), Category: a.Category, Sound: a.Sound, ThreadID: a.ThreadID}
	sealed, err := Seal(pub, BindingOf(a), p)
	if err != nil {
		return nil, fmt.Errorf("seal alert %s: %w", a.EventID, err)
	}
	out := stripped(a)
	out.Data = map[string]string{DataKeySealed: sealed, DataKeyVersion: Version}
	return out, nil
}

// Generic returns the content-free copy of a sent to a device without a
// public key when the type's seal is "required": fallback text, Data
// holding only DataKeyContent = ContentFetch, no category, sound or thread
// id, and MutableContent so the iOS extension can fetch the content
// (GET /v1/events/{id}) and replace it. a itself is not changed.
func Generic(a *relay.Alert) *relay.Alert {
	out := stripped(a)
	out.Data = map[string]string{DataKeyContent: ContentFetch}
	return out
}

// stripped copies a without its content and presentation fields.
func stripped(a *relay.Alert) *relay.Alert {
	out := *a
	out.Title = FallbackTitle
	out.Body = FallbackBody
	out.Category, out.Sound, out.ThreadID = "", "", ""
	out.Actions = slices.Clone(a.Actions)
	out.MutableContent = true
	return &out
}

// Open is the device side: it decrypts a DataKeySealed value with the
// device's private key and the binding of the push it arrived in (see
// Binding). Errors wrap ErrOpen when the payload does not decrypt,
// including when it was sealed for another alert.
func Open(priv *ecdh.PrivateKey, b Binding, sealed string) (Plain, error) {
	var p Plain
	if priv == nil || priv.Curve() != ecdh.X25519() {
		return p, errors.New("open sealed alert: want an X25519 private key")
	}
	aad, err := b.AAD()
	if err != nil {
		return p, fmt.Errorf("open sealed alert: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return p, fmt.Errorf("open sealed alert: decode base64: %w", err)
	}
	if len(raw) < encSize+tagSize {
		return p, fmt.Errorf("open sealed alert: %d bytes, shorter than enc and tag: %w", len(raw), ErrOpen)
	}
	k, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return p, fmt.Errorf("open sealed alert: %w", err)
	}
	r, err := hpke.NewRecipient(raw[:encSize], k, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(Info))
	if err != nil {
		return p, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	pt, err := r.Open(aad, raw[encSize:])
	if err != nil {
		return p, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	if err := json.Unmarshal(pt, &p); err != nil {
		return Plain{}, fmt.Errorf("open sealed alert: decode plaintext: %w", err)
	}
	return p, nil
}
