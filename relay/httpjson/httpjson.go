// Package httpjson writes the JSON answers shared by relayd's HTTP servers
// (the socket API and the app API): bodies, the
// {"error":{"code","message"}} error shape, JSON 404/405 answers for
// requests no route matches, and Mux, a ServeMux that remembers its
// patterns (the OpenAPI tests check each one is documented).
package httpjson

import (
	"encoding/json"
	"net/http"
	"strconv"
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
	// A handler may flush the answer before it returns (ingest, for the
	// work after it): with the length known it is not sent chunked.
	h.Set("Content-Length", strconv.Itoa(len(b)))
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
func Unmatched(mux Router, r *http.Request) (status int, allow string) {
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

// Router is what Unmatched needs of a mux: *http.ServeMux and *Mux.
type Router interface {
	Handler(r *http.Request) (h http.Handler, pattern string)
}

// Mux is an http.ServeMux that remembers the patterns registered on it, in
// order. Register routes before serving, as with http.ServeMux.
type Mux struct {
	*http.ServeMux
	patterns []string
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern (see http.ServeMux.Handle).
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

// HandleFunc registers f for pattern (see http.ServeMux.HandleFunc).
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Patterns returns the registered patterns, in order.
func (m *Mux) Patterns() []string { return append([]string(nil), m.patterns...) }

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
