package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/relay/relaytest/openapitest"
)

// TestOpenAPIRoutes checks that every route the app API registers is in
// its OpenAPI document, and every documented operation is served.
func TestOpenAPIRoutes(t *testing.T) {
	v := openapitest.New(t, "app", OpenAPI)
	ts := startServer(t, nil)
	routes := ts.srv.Routes()
	v.CheckRoutes(t, routes)
	for _, op := range v.Operations() {
		if !slices.Contains(routes, op) {
			t.Errorf("documented operation %q is not served", op)
		}
	}
	// The check itself catches a route missing from the document.
	if missing := v.Undocumented(append(routes, "POST /v1/devices/{device_id}/undocumented")); len(missing) != 1 {
		t.Fatalf("Undocumented = %q, want the added route only", missing)
	}
}

// TestOpenAPIServed checks GET /openapi.json answers the embedded document
// without a token.
func TestOpenAPIServed(t *testing.T) {
	ts := startServer(t, nil)
	r := ts.do(http.MethodGet, "/openapi.json", "", nil)
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
	if doc.OpenAPI != "3.1.0" || doc.Paths["/v1/devices"] == nil {
		t.Fatalf("served document: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
}
