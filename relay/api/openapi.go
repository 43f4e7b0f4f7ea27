package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 document of the app API (openapi.json),
// served without a token at GET /openapi.json. App developers generate
// clients from it; the tests check that every route is in it and that the
// answers they see match it.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes returns the patterns of every route the server serves.
func (s *Server) Routes() []string { return s.mux.Patterns() }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(OpenAPI)
}
