package daemon

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// failingCollector is a collector whose scrape fails, as the queue's does
// when the store cannot answer its lane statistics in time (seen on a
// three-replica JetStream cluster under load).
type failingCollector struct{ desc *prometheus.Desc }

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("lane stats: context deadline exceeded"))
}

// TestMetricsServeWhatTheyCanWhenACollectorFails: one failed collector
// made /metrics answer 500 with the error as its whole body, so the
// operator's Prometheus lost every metric exactly when the relay was under
// stress. Now the others are served, the failure is logged and counted.
func TestMetricsServeWhatTheyCanWhenACollectorFails(t *testing.T) {
	m := newMetrics()
	m.reg.MustRegister(failingCollector{prometheus.NewDesc("edgerelay_queue_depth", "test", nil, nil)})
	var logs bytes.Buffer
	srv := httptest.NewServer(metricsHandler(m.reg, hclog.New(&hclog.LoggerOptions{Output: &logs})))
	defer srv.Close()
	get := func() (int, string) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	code, body := get()
	if code != http.StatusOK || !strings.Contains(body, "go_memstats_alloc_bytes_total") || !strings.Contains(body, "process_cpu_seconds_total") {
		t.Fatalf("GET /metrics with a failing collector: %d\n%.300s", code, body)
	}
	if !strings.Contains(logs.String(), "lane stats: context deadline exceeded") {
		t.Errorf("the collector's error was not logged: %q", logs.String())
	}
	if _, body := get(); !strings.Contains(body, `promhttp_metric_handler_errors_total{cause="gathering"} 1`) {
		t.Errorf("the failure is not counted:\n%s", body)
	}
}
