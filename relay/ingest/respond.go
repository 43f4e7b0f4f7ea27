package ingest

import (
	"encoding/json"
	"net/http"
)

// Error codes of the `{"error":{"code","message"}}` answers. They are
// stable: clients may switch on them.
const (
	CodeBadRequest           = "bad_request"            // 400
	CodeNotFound             = "not_found"              // 404
	CodeMethodNotAllowed     = "method_not_allowed"     // 405
	CodePayloadTooLarge      = "payload_too_large"      // 413
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	CodeInternal             = "internal"               // 500
	CodeUnavailable          = "unavailable"            // 503
)

// ErrorBody is the JSON error answer of every route.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
	// Results is set on a rejected single event (POST /v1/events with
	// application/json).
	Results []Result `json:"results,omitempty"`
}

// ErrorDetail is the "error" object of an ErrorBody.
type ErrorDetail struct {
	// Code is stable: bad_request, not_found, method_not_allowed,
	// payload_too_large, unsupported_media_type, unavailable, internal.
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encode response"}}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}
