package ingest

import (
	"net/http"

	"github.com/edgerelay/edgerelay/relay/httpjson"
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
	// application/json), and on a batch that stopped early: the results of
	// the lines handed to the Acceptor before it stopped.
	Results []Result `json:"results,omitempty"`
}

// ErrorDetail is the "error" object of an ErrorBody.
type ErrorDetail = httpjson.ErrorDetail

func writeJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	httpjson.Error(w, status, code, msg)
}
