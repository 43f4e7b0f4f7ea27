package openapitest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const doc = `{
  "openapi": "3.1.0",
  "info": {"title": "t", "version": "1"},
  "paths": {
    "/things/{id}": {"get": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {
        "200": {"description": "ok", "content": {"application/json": {"schema": {
          "type": "object", "required": ["id", "n"],
          "properties": {"id": {"type": "string"}, "n": {"type": ["integer", "null"]}},
          "additionalProperties": false}}}},
        "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}}
  },
  "components": {"schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}}
}`

// recorder is a testing.TB that records Errorf calls.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) { r.errs = append(r.errs, format) }

// TestTransport serves answers that do and do not match the document and
// checks that exactly the mismatches are reported.
func TestTransport(t *testing.T) {
	mux := http.NewServeMux()
	answer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	mux.Handle("GET /things/good", answer(200, `{"id":"good","n":null}`))
	mux.Handle("GET /things/{id...}", answer(200, `{"id":"x","n":1}`))
	mux.Handle("GET /things/extra", answer(200, `{"id":"extra","n":1,"other":true}`))
	mux.Handle("GET /things/wrongtype", answer(200, `{"id":"w","n":"one"}`))
	mux.Handle("GET /things/badstatus", answer(503, `{"oops":1}`))
	mux.Handle("GET /things/err", answer(404, `{"error":{"code":"not_found","message":"no"}}`))
	mux.Handle("GET /other", answer(200, `{}`))
	mux.Handle("GET /nowhere", answer(404, `{"error":{"code":"not_found","message":"no route"}}`))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		path string
		bad  bool
	}{
		{"/things/good", false},
		{"/things/a%2Fb", false}, // one segment, as the mux sees it
		{"/things/err", false},
		{"/nowhere", false},
		{"/things/extra", true},
		{"/things/wrongtype", true},
		{"/things/badstatus", true},
		{"/other", true}, // undocumented, answered 200
	}
	v := New(t, "test", []byte(doc))
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			rec := &recorder{TB: t}
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: v.Transport(rec, tr)}
			resp, err := hc.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if len(b) == 0 {
				t.Error("body not handed on")
			}
			if got := len(rec.errs) > 0; got != tc.bad {
				t.Errorf("reported %v, want %v", rec.errs, tc.bad)
			}
		})
	}
}

func TestUndocumented(t *testing.T) {
	v := New(t, "test", []byte(doc))
	got := v.Undocumented([]string{"GET /things/{id}", "GET /things/{id...}", "PUT /things/{id}", "GET /things/{name}"})
	want := []string{"PUT /things/{id}", "GET /things/{name}"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Undocumented = %q, want %q", got, want)
	}
}
