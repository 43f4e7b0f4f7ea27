package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// deployQuery is one PromQL expression of the shipped dashboard or alert
// rules, with where it is.
type deployQuery struct {
	where, expr string
}

// deployQueries reads every expression of deploy/grafana/edgerelay.json
// and deploy/prometheus/alerts.yml, checking their shape on the way.
func deployQueries(t *testing.T) []deployQuery {
	t.Helper()
	root := filepath.Join("..", "..", "deploy")
	var out []deployQuery

	raw, err := os.ReadFile(filepath.Join(root, "grafana", "edgerelay.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type, Title string
			Targets     []struct{ Expr string }
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q: no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, deployQuery{"dashboard panel " + p.Title, tg.Expr})
		}
	}

	raw, err = os.ReadFile(filepath.Join(root, "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert rule %q: want alert, expr, labels.severity and annotations.summary", r.Alert)
			}
			out = append(out, deployQuery{"alert " + r.Alert, r.Expr})
		}
	}
	if len(out) < 10 {
		t.Fatalf("%d queries in deploy/", len(out))
	}
	return out
}

var (
	metricRE   = regexp.MustCompile(`\b(edgerelay_[a-z_]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)`)
	groupingRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// targetLabels are added by Prometheus at scrape time, not by relayd.
var targetLabels = []string{"instance", "job"}

// usedMetrics maps each metric a query uses (a histogram's _bucket, _sum
// and _count to the histogram) to the labels it relies on: those of its
// selectors, and of the query's by (...) clauses.
func usedMetrics(t *testing.T, queries []deployQuery, doc []documentedMetric) map[string][]string {
	t.Helper()
	documented := map[string]documentedMetric{}
	for _, m := range doc {
		documented[m.name] = m
	}
	out := map[string][]string{}
	for _, q := range queries {
		var grouping []string
		for _, g := range groupingRE.FindAllStringSubmatch(q.expr, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" {
					grouping = append(grouping, l)
				}
			}
		}
		refs := metricRE.FindAllStringSubmatch(q.expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: uses no edgerelay_ metric: %s", q.where, q.expr)
		}
		for _, ref := range refs {
			name := ref[1]
			if _, ok := documented[name]; !ok {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(name, suffix); ok && documented[base].typ == "histogram" {
						name = base
					}
				}
			}
			labels := out[name]
			for _, m := range matcherRE.FindAllStringSubmatch(ref[2], -1) {
				labels = append(labels, m[1])
			}
			labels = append(labels, grouping...)
			slices.Sort(labels)
			out[name] = slices.Compact(labels)
		}
	}
	return out
}

// TestDeployMetrics checks that the shipped Grafana dashboard and alert
// rules use only metrics of docs/metrics.md, with their documented labels,
// and that the alerts the operators' runbook names exist. (The scrape in
// TestMetricsCatalogue checks them against a running relayd.)
func TestDeployMetrics(t *testing.T) {
	doc := readMetricsDoc(t)
	queries := deployQueries(t)
	used := usedMetrics(t, queries, doc)
	for name, labels := range used {
		i := slices.IndexFunc(doc, func(m documentedMetric) bool { return m.name == name })
		if i < 0 {
			t.Errorf("%s: used in deploy/, not in docs/metrics.md", name)
			continue
		}
		for _, l := range labels {
			if !slices.Contains(doc[i].labels, l) && !slices.Contains(targetLabels, l) && !(l == "le" && doc[i].typ == "histogram") {
				t.Errorf("%s: deploy/ uses label %q, documented labels %q", name, l, doc[i].labels)
			}
		}
	}
	// The alerts issue 12 asks for: provider breaker, jobs past their TTL,
	// plugin failures, store errors.
	for _, want := range []string{"edgerelay_breaker_open", "edgerelay_queue_expired_jobs", "edgerelay_plugin_failures_total", "edgerelay_store_errors_total"} {
		if !slices.ContainsFunc(queries, func(q deployQuery) bool {
			return strings.HasPrefix(q.where, "alert ") && strings.Contains(q.expr, want)
		}) {
			t.Errorf("no alert rule on %s", want)
		}
	}
	// The check itself catches an unknown metric and an undocumented label.
	bad := usedMetrics(t, []deployQuery{{"x", `sum by (zone) (rate(edgerelay_nope_total[5m])) + edgerelay_breaker_open{app="x"}`}}, doc)
	if _, ok := bad["edgerelay_nope_total"]; !ok || !slices.Contains(bad["edgerelay_breaker_open"], "app") {
		t.Fatalf("usedMetrics missed an unknown metric or label: %v", bad)
	}
}
