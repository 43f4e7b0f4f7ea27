package daemon_test

import (
	"bufio"
	"fmt"
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
	h := newHarness(t, harnessOptions{logLevel: "warn", metrics: true})
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
		if f := families["edgerelay_deliveries_total"]; f == nil || len(f.Metric) == 0 {
			return fmt.Errorf("no android delivery counted yet")
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
	// And every edgerelay_ metric exported is documented.
	for name := range families {
		if strings.HasPrefix(name, "edgerelay_") && !slices.ContainsFunc(doc, func(m documentedMetric) bool { return m.name == name }) {
			t.Errorf("%s: exported, not in docs/metrics.md", name)
		}
	}
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
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
