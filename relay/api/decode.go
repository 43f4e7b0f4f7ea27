package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/seal"
)

// Limits on request bodies.
const (
	// DefaultMaxBodyBytes caps a request body (Options.MaxBodyBytes).
	DefaultMaxBodyBytes = 16 << 10
	// MaxTokenLen bounds a push token (printable ASCII).
	MaxTokenLen = 4096
	// MaxDeviceNameLen bounds a device's name.
	MaxDeviceNameLen = 256
)

// FieldError is a request the API refuses, naming the field and the
// reason. Field is empty for the body as a whole.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "body: " + e.Reason
	}
	return "field " + strconv.Quote(e.Field) + ": " + e.Reason
}

// truncate shortens a caller-supplied string echoed in a message.
func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func quote(s string) string { return strconv.Quote(truncate(s)) }

// readObject decodes a body that must be one JSON object into its members,
// in key order, refusing duplicate keys and trailing data.
func readObject(body []byte) (map[string]json.RawMessage, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, syntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, &FieldError{Reason: "expected a JSON object, got " + kind(tok)}
	}
	m := map[string]json.RawMessage{}
	keys := []string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, syntaxError(err)
		}
		k, ok := tok.(string)
		if !ok {
			return nil, nil, &FieldError{Reason: "invalid JSON: object key is not a string"}
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, syntaxError(err)
		}
		if _, dup := m[k]; dup {
			return nil, nil, &FieldError{Field: k, Reason: "appears more than once"}
		}
		m[k] = v
		keys = append(keys, k)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, syntaxError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, &FieldError{Reason: "unexpected data after the JSON object"}
	}
	slices.Sort(keys)
	return m, keys, nil
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &FieldError{Reason: fmt.Sprintf("invalid JSON at offset %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Reason: "invalid JSON: unexpected end of input"}
	}
	return &FieldError{Reason: "invalid JSON"}
}

// kind names a JSON token's type for messages.
func kind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "array"
		}
		return "object"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "unknown"
}

func rawKind(raw json.RawMessage) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// str decodes a member that must be a string (null is refused).
func str(field string, raw json.RawMessage) (string, error) {
	var s string
	if rawKind(raw) != "string" || json.Unmarshal(raw, &s) != nil {
		return "", &FieldError{Field: field, Reason: "expected string, got " + rawKind(raw)}
	}
	return s, nil
}

// checkText bounds a visible text: valid UTF-8, no control characters.
func checkText(field, s string, maxRunes int) error {
	if !utf8.ValidString(s) {
		return &FieldError{Field: field, Reason: "is not valid UTF-8"}
	}
	if utf8.RuneCountInString(s) > maxRunes {
		return &FieldError{Field: field, Reason: fmt.Sprintf("is longer than %d characters", maxRunes)}
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return &FieldError{Field: field, Reason: fmt.Sprintf("contains control character %U", r)}
		}
	}
	return nil
}

// deviceRequest is the body of PUT /v1/devices/{device_id}.
type deviceRequest struct {
	Platform    relay.Platform
	Token       string
	App         string
	Environment string
	Name        string
	PublicKey   string // normalized: standard base64 with padding
	Proof       string // the one-time code of a token move, or ""
}

// maxProofLen bounds the "proof" member (the codes are 26 base32 letters).
const maxProofLen = 64

// decodeDevice decodes and checks a device registration. knownApp nil
// accepts any app name that is a valid id.
func decodeDevice(body []byte, knownApp func(string) bool) (deviceRequest, error) {
	var d deviceRequest
	m, keys, err := readObject(body)
	if err != nil {
		return d, err
	}
	seen := map[string]bool{}
	for _, k := range keys {
		var dst *string
		var platform string
		switch k {
		case "platform":
			dst = &platform
		case "token":
			dst = &d.Token
		case "app":
			dst = &d.App
		case "environment":
			dst = &d.Environment
		case "name":
			dst = &d.Name
		case "public_key":
			dst = &d.PublicKey
		case "proof":
			dst = &d.Proof
		default:
			return d, &FieldError{Field: truncate(k), Reason: "unknown field"}
		}
		v, err := str(k, m[k])
		if err != nil {
			return d, err
		}
		*dst, seen[k] = v, true
		if k == "platform" {
			d.Platform = relay.Platform(platform)
		}
	}
	for _, k := range []string{"platform", "token", "app"} {
		if !seen[k] {
			return d, &FieldError{Field: k, Reason: "is required"}
		}
	}
	if !d.Platform.Valid() {
		return d, &FieldError{Field: "platform", Reason: `must be "ios" or "android", got ` + quote(string(d.Platform))}
	}
	if d.Token == "" {
		return d, &FieldError{Field: "token", Reason: "must not be empty"}
	}
	if len(d.Token) > MaxTokenLen {
		return d, &FieldError{Field: "token", Reason: fmt.Sprintf("is longer than %d characters", MaxTokenLen)}
	}
	for i := 0; i < len(d.Token); i++ {
		if c := d.Token[i]; c <= ' ' || c >= 0x7f {
			return d, &FieldError{Field: "token", Reason: "must be printable ASCII without spaces"}
		}
	}
	if err := checkID("app", d.App); err != nil {
		return d, err
	}
	if knownApp != nil && !knownApp(d.App) {
		return d, &FieldError{Field: "app", Reason: "unknown app " + quote(d.App)}
	}
	switch d.Environment {
	case relay.EnvironmentProduction, relay.EnvironmentSandbox:
	case "":
		if d.Platform == relay.PlatformIOS {
			d.Environment = relay.EnvironmentProduction
		}
	default:
		return d, &FieldError{Field: "environment", Reason: `must be "production" or "sandbox", got ` + quote(d.Environment)}
	}
	if err := checkText("name", d.Name, MaxDeviceNameLen); err != nil {
		return d, err
	}
	if seen["proof"] {
		if d.Proof == "" || len(d.Proof) > maxProofLen {
			return d, &FieldError{Field: "proof", Reason: fmt.Sprintf("must be 1 to %d characters", maxProofLen)}
		}
		for i := 0; i < len(d.Proof); i++ {
			if c := d.Proof[i]; c <= ' ' || c >= 0x7f {
				return d, &FieldError{Field: "proof", Reason: "must be printable ASCII without spaces"}
			}
		}
	}
	if d.PublicKey != "" {
		key, err := publicKey(d.PublicKey)
		if err != nil {
			return d, err
		}
		d.PublicKey = key
	}
	return d, nil
}

// publicKey checks a device's X25519 public key the way sealing will use
// it (relay/seal) and returns it normalized to standard base64.
func publicKey(b64 string) (string, error) {
	key, err := seal.NormalizePublicKey(b64)
	var ke *seal.KeyError
	if errors.As(err, &ke) {
		return "", &FieldError{Field: "public_key", Reason: ke.Reason}
	}
	return key, err
}

// decodePreferences decodes PUT /v1/preferences: {"type": bool, …}, each
// type known.
func decodePreferences(body []byte, known func(string) bool) (map[string]bool, error) {
	m, keys, err := readObject(body)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(m))
	for _, k := range keys {
		if !known(k) {
			return nil, &FieldError{Field: truncate(k), Reason: "unknown notification type"}
		}
		var v bool
		if rawKind(m[k]) != "boolean" || json.Unmarshal(m[k], &v) != nil {
			return nil, &FieldError{Field: k, Reason: "expected boolean, got " + rawKind(m[k])}
		}
		out[k] = v
	}
	return out, nil
}

// decodeSettings decodes PUT /v1/workspace/settings: {"type":
// "enabled|disabled|enforced", …}, each type known.
func decodeSettings(body []byte, known func(string) bool) (map[string]relay.Setting, error) {
	m, keys, err := readObject(body)
	if err != nil {
		return nil, err
	}
	out := make(map[string]relay.Setting, len(m))
	for _, k := range keys {
		if !known(k) {
			return nil, &FieldError{Field: truncate(k), Reason: "unknown notification type"}
		}
		v, err := str(k, m[k])
		if err != nil {
			return nil, err
		}
		if !relay.Setting(v).Valid() {
			return nil, &FieldError{Field: k, Reason: "must be enabled, disabled or enforced, got " + quote(v)}
		}
		out[k] = relay.Setting(v)
	}
	return out, nil
}

// actionRequest is the body of POST /v1/events/{id}/actions.
type actionRequest struct {
	Action   string
	DeviceID string
}

// decodeAction decodes an answer: {"action": "...", "device_id": "..."}.
func decodeAction(body []byte) (actionRequest, error) {
	var a actionRequest
	m, keys, err := readObject(body)
	if err != nil {
		return a, err
	}
	for _, k := range keys {
		var dst *string
		switch k {
		case "action":
			dst = &a.Action
		case "device_id":
			dst = &a.DeviceID
		default:
			return a, &FieldError{Field: truncate(k), Reason: "unknown field"}
		}
		if *dst, err = str(k, m[k]); err != nil {
			return a, err
		}
	}
	if _, ok := m["action"]; !ok {
		return a, &FieldError{Field: "action", Reason: "is required"}
	}
	if _, ok := m["device_id"]; !ok {
		return a, &FieldError{Field: "device_id", Reason: "is required"}
	}
	if a.Action == "" {
		return a, &FieldError{Field: "action", Reason: "must not be empty"}
	}
	if len(a.Action) > relay.MaxActionLen {
		return a, &FieldError{Field: "action", Reason: fmt.Sprintf("is longer than %d characters", relay.MaxActionLen)}
	}
	if err := checkID("device_id", a.DeviceID); err != nil {
		return a, err
	}
	return a, nil
}
