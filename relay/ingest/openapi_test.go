package ingest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/relay/relaytest/openapitest"
)

// TestOpenAPIRoutes checks that every route the socket server registers
// is in the socket API's OpenAPI document. The routes the daemon adds with
// Handle are checked by relay/daemon's TestOpenAPISocketRoutes.
func TestOpenAPIRoutes(t *testing.T) {
	v := openapitest.New(t, "socket", OpenAPI)
	s := New(Options{})
	v.CheckRoutes(t, s.Routes())

	// The check itself catches a route missing from the document.
	s.Handle("GET /v1/undocumented/{x}", http.NotFoundHandler())
	if missing := v.Undocumented(s.Routes()); !slices.Equal(missing, []string{"GET /v1/undocumented/{x}"}) {
		t.Fatalf("Undocumented = %q, want the added route only", missing)
	}
}

// TestOpenAPIServed checks GET /openapi.json answers the embedded document.
func TestOpenAPIServed(t *testing.T) {
	ts := startServer(t, nil)
	r := ts.do(t, "GET", "/openapi.json", "", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", r.status, r.header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" || doc.Paths["/v1/events"] == nil {
		t.Fatalf("served document: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
}
