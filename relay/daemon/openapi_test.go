package daemon_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/daemon"
	"github.com/edgerelay/edgerelay/relay/ingest"
	"github.com/edgerelay/edgerelay/relay/relaytest/openapitest"
)

// TestOpenAPISocketRoutes runs relayd in process and checks the socket's
// routes against its OpenAPI document both ways, wherever they are
// registered (by ingest itself or by the daemon with Handle): every route
// served is documented, and every documented operation is served (a
// request to it over the socket finds a route), its answer matching the
// document.
func TestOpenAPISocketRoutes(t *testing.T) {
	h := newHarness(t, harnessOptions{logLevel: "error"})
	cfg, diags := config.Load(h.cfgPath)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	d := daemon.New(cfg, hclog.NewNullLogger())
	d.Version = "v0.0.0-openapi"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("relayd not ready after 30s")
	}

	v := openapitest.New(t, "socket", ingest.OpenAPI)
	routes := d.SocketRoutes()
	v.CheckRoutes(t, routes)
	for _, want := range []string{"GET /v1/queue", "GET /v1/deadletters", "GET /v1/plugins", "GET /v1/status"} {
		if !slices.Contains(routes, want) {
			t.Errorf("route %q not registered", want)
		}
	}

	// Every documented operation answers over the socket (h.hc validates
	// each answer). The actions stream is left out: it never ends.
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, op := range v.Operations() {
		method, path, _ := strings.Cut(op, " ")
		if path == "/v1/actions/stream" {
			continue
		}
		path = param.ReplaceAllString(path, "x1")
		var body []byte
		ct := ""
		if method == http.MethodPut || method == http.MethodPost {
			body, ct = []byte("{}"), "application/json"
		}
		code, resp := h.do(method, path, ct, body)
		if code == http.StatusNotFound && strings.Contains(string(resp), "no route") || code == http.StatusMethodNotAllowed {
			t.Errorf("%s: documented but not served: %d %s", op, code, resp)
		}
	}
	if code, body := h.do("GET", "/v1/status", "", nil); code != 200 || !strings.Contains(string(body), `"version":"v0.0.0-openapi"`) {
		t.Errorf("GET /v1/status: %d %s", code, body)
	}
}
