package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/edgerelay/edgerelay/relay/httpjson"
)

// Error codes of the `{"error":{"code","message"}}` answers. They are
// stable: apps may switch on them.
const (
	CodeBadRequest       = "bad_request"        // 400 malformed body or path
	CodeActionNotOffered = "action_not_offered" // 400 the event does not offer that action
	CodeUnauthorized     = "unauthorized"       // 401 missing or invalid token
	CodeForbidden        = "forbidden"          // 403 role or ownership
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeLocked           = "locked"             // 409 the workspace enforces the type
	CodeAlreadyAnswered  = "already_answered"   // 409 first answer won
	CodeExpired          = "expired"            // 409 answer after expiry; 404 content fetched after expiry
	CodeNotDelivered     = "not_delivered"      // 409 the event was suppressed or is not decided yet
	CodeCancelled        = "cancelled"          // 409 the upstream cancelled the event
	CodeTooManyDevices   = "too_many_devices"   // 409 MaxDevicesPerUser reached
	// CodeTokenProofRequired: the push token is another user's; a one-time
	// code went to the device by silent push (PUT again with "proof").
	CodeTokenProofRequired = "token_proof_required" // 409
	// CodeTokenProofInvalid: the proof is wrong, expired, used or for
	// another token or device id (PUT without "proof" for a new code).
	CodeTokenProofInvalid = "token_proof_invalid" // 409
	CodePayloadTooLarge   = "payload_too_large"   // 413
	CodeRateLimited       = "rate_limited"        // 429 (with Retry-After)
	CodeInternal          = "internal"            // 500
	CodeUnavailable       = "unavailable"         // 503
)

// ErrorBody is the JSON error answer of every route.
type ErrorBody = httpjson.ErrorBody

// ErrorDetail is the "error" object of an ErrorBody.
type ErrorDetail = httpjson.ErrorDetail

// writeJSON answers v; the app API's answers are per user, so never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, status, v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Error(w, status, code, msg)
}

// retryAfter formats a wait as whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}
