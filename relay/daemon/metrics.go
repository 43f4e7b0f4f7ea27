package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edgerelay/edgerelay/relay"
)

// metrics are relayd's Prometheus series.
type metrics struct {
	reg        *prometheus.Registry
	events     *prometheus.CounterVec   // result: accepted | duplicate | rejected
	deliveries *prometheus.CounterVec   // platform, state
	sendTime   *prometheus.HistogramVec // platform
	queueDepth *prometheus.GaugeVec     // lane
	dueAge     *prometheus.GaugeVec     // lane
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgerelay_events_total", Help: "Events received on the socket, by result.",
		}, []string{"result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgerelay_deliveries_total", Help: "Delivery jobs that reached a final state, by platform and state.",
		}, []string{"platform", "state"}),
		sendTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "edgerelay_send_seconds", Help: "Duration of provider sends that reached a final state.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"platform"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgerelay_queue_depth", Help: "Open delivery jobs per lane (app/platform).",
		}, []string{"lane"}),
		dueAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgerelay_queue_oldest_due_seconds", Help: "Age of the oldest due job per lane.",
		}, []string{"lane"}),
	}
	m.reg.MustRegister(m.events, m.deliveries, m.sendTime, m.queueDepth, m.dueAge,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) outcome(j relay.Job, took time.Duration) {
	m.deliveries.WithLabelValues(string(j.Platform), string(j.State)).Inc()
	if took > 0 {
		m.sendTime.WithLabelValues(string(j.Platform)).Observe(took.Seconds())
	}
}
