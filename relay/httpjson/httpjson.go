// Package httpjson writes the JSON answers shared by relayd's HTTP servers
// (the socket API and the app API): bodies, the
// {"error":{"code","message"}} error shape, and JSON 404/405 answers for
// requests no route matches. It holds no routes and no state.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// ErrorDetail is the "error" object of an error answer.
type ErrorDetail struct {
	// Code is stable: clients may switch on it.
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
}

// ErrorBody is the JSON error answer: {"error":{"code","message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// Write answers v as JSON with status. A value that cannot be encoded
// becomes a 500 with an "internal" error.
func Write(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Error answers {"error":{"code","message"}} with status.
func Error(w http.ResponseWriter, status int, code, msg string) {
	Write(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// Unmatched reports why mux has no route for r: 0 when a route matches,
// http.StatusMethodNotAllowed (with the Allow header the mux would send)
// when another method would, http.StatusNotFound otherwise. Servers use it
// to answer in JSON instead of the mux's plain text.
func Unmatched(mux *http.ServeMux, r *http.Request) (status int, allow string) {
	h, pattern := mux.Handler(r)
	if pattern != "" {
		return 0, ""
	}
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		return http.StatusMethodNotAllowed, rec.header.Get("Allow")
	}
	return http.StatusNotFound, ""
}

// statusRecorder captures the mux's 404 or 405 answer.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(b), nil
}
