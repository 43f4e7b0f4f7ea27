package httpjson

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestUnmatched(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/things/{id}", func(http.ResponseWriter, *http.Request) {})
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/things/1", 0, ""},
		{"DELETE", "/v1/things/1", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"GET", "/v1/other", http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		status, allow := Unmatched(mux, httptest.NewRequest(tc.method, tc.path, nil))
		if status != tc.status || allow != tc.allow {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, status, allow, tc.status, tc.allow)
		}
	}
}

func TestError(t *testing.T) {
	w := httptest.NewRecorder()
	Error(w, http.StatusConflict, "locked", "workspace enforces it")
	var body ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusConflict || body.Error.Code != "locked" || body.Error.Message != "workspace enforces it" {
		t.Fatalf("answer %d %+v", w.Code, body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestWriteUnencodable(t *testing.T) {
	w := httptest.NewRecorder()
	Write(w, http.StatusOK, map[string]any{"bad": make(chan int)})
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
}
