package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
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
	CodeExpired          = "expired"            // 409 the event expired
	CodeNotDelivered     = "not_delivered"      // 409 the event was suppressed
	CodeTooManyDevices   = "too_many_devices"   // 409 MaxDevicesPerUser reached
	CodePayloadTooLarge  = "payload_too_large"  // 413
	CodeRateLimited      = "rate_limited"       // 429 (with Retry-After)
	CodeInternal         = "internal"           // 500
	CodeUnavailable      = "unavailable"        // 503
)

// ErrorBody is the JSON error answer of every route.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the "error" object of an ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// retryAfter formats a wait as whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}
