package daemon_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// documentedMetric is one row of docs/metrics.md's table.
type documentedMetric struct {
	name, typ string
	labels    []string
}

// readMetricsDoc parses the catalogue table of docs/metrics.md.
func readMetricsDoc(t *testing.T) []documentedMetric {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `(edgerelay_[a-z_]+)` \\| ([a-z]+) \\|([^|]*)\\|")
	var out []documentedMetric
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		out = append(out, documentedMetric{name: m[1], typ: m[2], labels: labels})
	}
	if len(out) < 10 {
		t.Fatalf("docs/metrics.md: %d metrics found in the table", len(out))
	}
	return out
}

// TestMetricsCatalogue runs relayd end to end — deliveries on both
// platforms, a policy plugin, an APNs breaker opened by rejected
// credentials — scrapes /metrics and finds every metric of docs/metrics.md
// with its type and exactly its labels.
func TestMetricsCatalogue(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm plugin")
	}
	doc := readMetricsDoc(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := l.Addr().String()
	l.Close()
	h := newHarness(t, harnessOptions{logLevel: "warn", metrics: true, extraConfig: fmt.Sprintf(`
api {
  address = %q
}
auth {
  issuer = "upstream"
  audience = "edgerelay"
  hs256_secret_file = "./jwt.secret"
}
`, apiAddr)})
	writeFile(t, filepath.Join(h.dir, "jwt.secret"), e2eSecret)
	wasm := filepath.Join(t.TempDir(), "scripted.wasm")
	buildPlugin(t, "testdata/scripted", wasm)
	data, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(h.dir, "plugins", "allow_all.wasm"), data)
	h.start()
	defer h.stop(syscall.SIGTERM)
	h.registerPhones("acme", "u-1")
	// App API traffic: a route with a path parameter, an error, no route.
	a := &appAPI{t: t, base: "http://" + apiAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	defer a.hc.CloseIdleConnections()
	waitFor(t, 10*time.Second, func() error {
		resp, err := a.hc.Get(a.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	tok := a.token("acme", "u-1", "user")
	a.must(http.StatusOK, "GET", "/v1/devices/"+"iphone", tok, nil)
	a.must(http.StatusForbidden, "PUT", "/v1/workspace/settings", tok, map[string]string{"otp_received": "enforced"})
	a.must(http.StatusNotFound, "GET", "/v1/nowhere", tok, nil)
	h.APNs.Script("", relaytest.Rule{Reason: "InvalidProviderToken"})
	var events []map[string]any
	for i := range 5 {
		events = append(events, map[string]any{"id": fmt.Sprintf("m-%d", i), "workspace": "acme", "user": "u-1", "type": relay.TypeAccountShared})
	}
	h.post(events...)
	h.post(events[0]) // a duplicate
	waitFor(t, 15*time.Second, func() error {
		for _, l := range func() []map[string]any { _, l := h.queueState(); return l }() {
			if l["lane"] == "demo/ios" && l["breaker"] == "open" {
				return nil
			}
		}
		return fmt.Errorf("breaker not open")
	})
	var families map[string]*dto.MetricFamily
	waitFor(t, 15*time.Second, func() error {
		families = scrape(t, h.metricsAddr)
		// A delivery's outcome is observed in three families one after
		// the other, and a scrape collects them concurrently, not at one
		// instant: one that lands mid-outcome can hold some of them.
		for _, name := range []string{"edgerelay_deliveries_total", "edgerelay_send_seconds", "edgerelay_accept_to_deliver_seconds"} {
			if f := families[name]; f == nil || len(f.Metric) == 0 {
				return fmt.Errorf("no android delivery in %s yet", name)
			}
		}
		return nil
	})
	for _, m := range doc {
		f := families[m.name]
		if f == nil {
			t.Errorf("%s: documented, not exported", m.name)
			continue
		}
		if got := strings.ToLower(f.GetType().String()); got != m.typ {
			t.Errorf("%s: type %s, documented %s", m.name, got, m.typ)
		}
		if len(f.Metric) == 0 {
			t.Errorf("%s: no series", m.name)
		}
		for _, s := range f.Metric {
			var labels []string
			for _, l := range s.Label {
				labels = append(labels, l.GetName())
			}
			slices.Sort(labels)
			if !slices.Equal(labels, m.labels) {
				t.Errorf("%s: labels %q, documented %q", m.name, labels, m.labels)
			}
		}
	}
	// Label values stay bounded: no ids, no free text.
	values := func(name, label string) []string {
		var out []string
		for _, s := range families[name].GetMetric() {
			for _, l := range s.Label {
				if l.GetName() == label {
					out = append(out, l.GetValue())
				}
			}
		}
		return out
	}
	bounded := map[string]*regexp.Regexp{
		"edgerelay_decisions_total/reason":             regexp.MustCompile(`^(enabled|enforced|workspace_disabled|user_opt_out|no_devices|expired|unknown_type|other|plugin:[A-Za-z0-9_.-]+)$`),
		"edgerelay_decisions_total/type":               regexp.MustCompile(`^(identity_verification|new_trusted_device|account_shared|otp_received|other)$`),
		"edgerelay_accept_to_deliver_seconds/platform": regexp.MustCompile(`^(ios|android)$`),
		"edgerelay_api_requests_total/route":           regexp.MustCompile(`^(unmatched|(GET|PUT|POST|DELETE) /[a-z0-9/_{}.]*)$`),
		"edgerelay_api_requests_total/status":          regexp.MustCompile(`^[1-5][0-9][0-9]$`),
		"edgerelay_store_commit_seconds/op":            regexp.MustCompile(`^(add_events|decide|settle)$`),
	}
	for key, re := range bounded {
		name, label, _ := strings.Cut(key, "/")
		vals := values(name, label)
		if len(vals) == 0 {
			t.Errorf("%s: no %s label values", name, label)
		}
		for _, v := range vals {
			if !re.MatchString(v) || strings.Contains(v, "iphone") {
				t.Errorf("%s{%s=%q}: not a bounded value (%s)", name, label, v, re)
			}
		}
	}
	for _, want := range []string{"GET /v1/devices/{device_id}", "PUT /v1/workspace/settings", "unmatched"} {
		if !slices.Contains(values("edgerelay_api_requests_total", "route"), want) {
			t.Errorf("edgerelay_api_requests_total: no route %q in %q", want, values("edgerelay_api_requests_total", "route"))
		}
	}
	// Accepting the events (decided in the same write) is timed: the
	// operator's view of accept latency.
	if !slices.Contains(values("edgerelay_store_commit_seconds", "op"), "add_events") {
		t.Errorf("edgerelay_store_commit_seconds: ops %q, want add_events", values("edgerelay_store_commit_seconds", "op"))
	}
	if !slices.Contains(values("edgerelay_decisions_total", "reason"), "enabled") {
		t.Errorf("edgerelay_decisions_total: reasons %q, want enabled", values("edgerelay_decisions_total", "reason"))
	}
	// Every metric the shipped dashboard and alert rules use is exported,
	// and its series carry the labels they rely on.
	for name, labels := range usedMetrics(t, deployQueries(t), doc) {
		f := families[name]
		if f == nil || len(f.Metric) == 0 {
			t.Errorf("%s: used in deploy/, no series in the scrape", name)
			continue
		}
		for _, l := range labels {
			if slices.Contains(targetLabels, l) || l == "le" {
				continue
			}
			for _, s := range f.Metric {
				if !slices.ContainsFunc(s.Label, func(p *dto.LabelPair) bool { return p.GetName() == l }) {
					t.Errorf("%s: deploy/ relies on label %q, a scraped series lacks it", name, l)
					break
				}
			}
		}
	}
	// And every edgerelay_ metric exported is documented.
	for name := range families {
		if strings.HasPrefix(name, "edgerelay_") && !slices.ContainsFunc(doc, func(m documentedMetric) bool { return m.name == name }) {
			t.Errorf("%s: exported, not in docs/metrics.md", name)
		}
	}
}

func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}
