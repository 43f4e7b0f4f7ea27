package ingest

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 document of the socket API (openapi.json),
// served at GET /openapi.json. It describes every route of the socket,
// those the daemon adds with Handle (queue, dead letters, plugins, the
// actions stream, status) included; the tests check that every registered
// route is in it and that the answers they see match it.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes returns the patterns of every route the server serves: its own
// and those added with Handle.
func (s *Server) Routes() []string { return s.mux.Patterns() }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(OpenAPI)
}
