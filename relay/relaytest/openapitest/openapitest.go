// Package openapitest checks HTTP answers against an OpenAPI 3.1 document,
// for the tests of relayd's socket and app APIs: a client transport that
// validates every response it carries, and a check that every route a
// server registers is documented.
//
// It is for tests only (it pulls in an OpenAPI validator that relayd's
// binaries do not need); nothing outside _test.go files may import it.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Validator checks answers against one document.
type Validator struct {
	name   string
	doc    *openapi3.T
	router routers.Router
	errSch *openapi3.Schema // components.schemas.Error
}

// New loads and validates doc (an OpenAPI 3.1 document in JSON); name
// appears in failures. It fails tb when the document is invalid. A
// document is loaded once per test binary: later calls with the same name
// share the first Validator (which is safe for concurrent use).
func New(tb testing.TB, name string, doc []byte) *Validator {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if v, ok := loaded[name]; ok {
		return v
	}
	v, err := load(name, doc)
	if err != nil {
		tb.Fatal(err)
	}
	loaded[name] = v
	return v
}

var (
	mu     sync.Mutex
	loaded = map[string]*Validator{}
)

func load(name string, data []byte) (*Validator, error) {
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load %s OpenAPI document: %w", name, err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("%s OpenAPI document: version %q, want 3.1", name, doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s OpenAPI document is invalid: %w", name, err)
	}
	// Route on paths alone: tests reach the servers under any host name.
	doc.Servers = nil
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("%s OpenAPI document: %w", name, err)
	}
	v := &Validator{name: name, doc: doc, router: r}
	if ref := doc.Components.Schemas["Error"]; ref != nil {
		v.errSch = ref.Value
	}
	if v.errSch == nil {
		return nil, fmt.Errorf("%s OpenAPI document: no components.schemas.Error", name)
	}
	return v, nil
}

// Operations returns every documented operation as a Go 1.22 ServeMux
// pattern ("GET /v1/events/{workspace}/{id}"), sorted.
func (v *Validator) Operations() []string {
	var ops []string
	for path, item := range v.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

// Undocumented returns the patterns (http.ServeMux syntax) that no
// operation of the document matches: a different method, path or path
// parameter name all count as missing.
func (v *Validator) Undocumented(patterns []string) []string {
	ops := v.Operations()
	var missing []string
	for _, p := range patterns {
		if !slices.Contains(ops, normalize(p)) {
			missing = append(missing, p)
		}
	}
	return missing
}

// CheckRoutes fails tb for every pattern the document lacks.
func (v *Validator) CheckRoutes(tb testing.TB, patterns []string) {
	tb.Helper()
	if len(patterns) == 0 {
		tb.Fatalf("%s: no routes to check", v.name)
	}
	for _, p := range v.Undocumented(patterns) {
		tb.Errorf("%s OpenAPI document: route %q is served but not documented", v.name, p)
	}
}

// normalize turns a ServeMux pattern into "METHOD /path" as Operations
// spells it: "{name...}" and "{$}" wildcards become OpenAPI's forms.
func normalize(pattern string) string {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "*", pattern
	}
	path = strings.ReplaceAll(path, "...}", "}")
	path = strings.TrimSuffix(path, "{$}")
	return method + " " + path
}

// CheckResponse validates one answer to req. An answer to a request the
// document has no operation for (no route: 404 or 405; a route a test
// registered itself) must be a JSON error.
func (v *Validator) CheckResponse(req *http.Request, status int, header http.Header, body []byte) error {
	if req.Method == http.MethodHead {
		return nil
	}
	route, params, err := v.router.FindRoute(routable(req))
	if err != nil {
		// No route (404, 405) or one a test added itself: only a JSON
		// error is a valid answer.
		if status < 400 {
			return fmt.Errorf("%s %s is not in the document but was answered %d", req.Method, req.URL.Path, status)
		}
		return v.checkError(header, body)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if isEventStream(header) {
		in.Options.ExcludeResponseBody = true
	} else {
		in.SetBodyBytes(body)
	}
	return openapi3filter.ValidateResponse(req.Context(), in)
}

// routable returns req with its path as sent, escapes kept, so that an
// id holding "%2F" is one path segment, as http.ServeMux routes it.
func routable(req *http.Request) *http.Request {
	if req.URL.RawPath == "" {
		return req
	}
	r := req.Clone(req.Context())
	r.URL.Path = req.URL.RawPath
	r.URL.RawPath = ""
	return r
}

func (v *Validator) checkError(header http.Header, body []byte) error {
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != "application/json" {
		return fmt.Errorf("error answer with Content-Type %q, want application/json", header.Get("Content-Type"))
	}
	var val any
	if err := json.Unmarshal(body, &val); err != nil {
		return fmt.Errorf("error answer is not JSON: %w", err)
	}
	if err := v.errSch.VisitJSON(val, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("error answer does not match the Error schema: %w", err)
	}
	return nil
}

func isEventStream(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "text/event-stream"
}

// Transport returns a RoundTripper that sends requests with base and
// checks every response against the document, reporting a mismatch with
// tb.Errorf (safe from any goroutine). Bodies are read in full and handed
// on unchanged, except Server-Sent Event streams, which are passed through
// unread (their status and headers are checked).
func (v *Validator) Transport(tb testing.TB, base http.RoundTripper) http.RoundTripper {
	return &transport{v: v, tb: tb, base: base}
}

type transport struct {
	v    *Validator
	tb   testing.TB
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if isEventStream(resp.Header) {
		if err := t.v.CheckResponse(req, resp.StatusCode, resp.Header, nil); err != nil {
			t.tb.Errorf("%s OpenAPI: %s %s answered %d: %v", t.v.name, req.Method, req.URL.Path, resp.StatusCode, err)
		}
		return resp, nil
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		// Hand the client the same failure; there is nothing to check.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{rerr}))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := t.v.CheckResponse(req, resp.StatusCode, resp.Header, body); err != nil {
		t.tb.Errorf("%s OpenAPI: %s %s answered %d: %v\nbody: %s", t.v.name, req.Method, req.URL.Path, resp.StatusCode, err, truncate(body))
	}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach base.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func truncate(b []byte) string {
	const max = 2048
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
