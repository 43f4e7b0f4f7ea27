package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// ErrTokenHeld: a push token is registered to a device of another user of
// the workspace; it moves only with proof (TokenProof).
var ErrTokenHeld = errors.New("push token held by another user")

// TokenHeldError is a registration refused because another user's device
// holds the token. It wraps ErrTokenHeld.
type TokenHeldError struct {
	Holder Device // the device that keeps the token
}

func (e *TokenHeldError) Error() string {
	return "push token held by device " + e.Holder.ID + " of another user"
}

func (e *TokenHeldError) Unwrap() error { return ErrTokenHeld }

// TokenProof is a pending proof that the app asking to register a push
// token held by another user holds the device: a one-time code sent by
// silent push to that token, which the app echoes back. It is bound to the
// workspace, the new user, the device id asked for and the token, single
// use and short-lived. Only hashes are kept: the store never holds the
// code.
type TokenProof struct {
	Workspace string    `json:"workspace"`
	User      string    `json:"user"`       // the user the token would move to
	DeviceID  string    `json:"device_id"`  // under this device id
	TokenHash string    `json:"token_hash"` // HashSecret(token)
	CodeHash  string    `json:"code_hash"`  // HashSecret(code)
	ExpiresAt time.Time `json:"expires_at"`
}

// HashSecret is the hex SHA-256 of a token or code, as TokenProof keeps
// them.
func HashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// DataTokenProof is the data key of the silent push that carries a token
// move's one-time code (with "device_id", the device id asked for). Such a
// push is not a withdraw.
const DataTokenProof = "token_proof"

// DeviceMove is what the previous owner of a moved push token is told: its
// device DeviceID lost the token to another user's proven registration at
// MovedAt (GET /v1/devices "moved"). It does not name the new user.
type DeviceMove struct {
	DeviceID string    `json:"device_id"`
	Platform Platform  `json:"platform"`
	App      string    `json:"app"`
	Name     string    `json:"name,omitempty"`
	MovedAt  time.Time `json:"moved_at"`
}
