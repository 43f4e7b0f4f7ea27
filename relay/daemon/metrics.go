package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/pipeline"
	"github.com/edgerelay/edgerelay/relay/policy"
	"github.com/edgerelay/edgerelay/relay/queue"
	"github.com/edgerelay/edgerelay/relay/store"
)

// metrics are relayd's Prometheus series.
type metrics struct {
	reg        *prometheus.Registry
	events     *prometheus.CounterVec   // result: accepted | duplicate | rejected
	deliveries *prometheus.CounterVec   // platform, state
	sendTime   *prometheus.HistogramVec // platform
	breaker    *prometheus.GaugeVec     // lane: 1 while open
	breakerOps *prometheus.CounterVec   // lane: times opened
	offered    *prometheus.CounterVec   // lane: jobs leased in their accept's write
	latency    *prometheus.HistogramVec // type, platform: accepted to delivered
	decisions  *prometheus.CounterVec   // type, verdict, reason
	pluginTime *prometheus.HistogramVec // plugin
	apiReqs    *prometheus.CounterVec   // route, status
	apiTime    *prometheus.HistogramVec // route
	storeTime  *prometheus.HistogramVec // op
	storeErrs  *prometheus.CounterVec   // op

	// knownType reports a configured notification type: other types are
	// counted as "other", so labels stay bounded.
	knownType func(string) bool
}

func newMetrics() *metrics {
	m := &metrics{
		knownType: func(string) bool { return true },
		reg:       prometheus.NewRegistry(),
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
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgerelay_breaker_open", Help: "1 while a lane's circuit breaker is open (provider configuration error or outage).",
		}, []string{"lane"}),
		breakerOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgerelay_breaker_opened_total", Help: "Times a lane's circuit breaker opened.",
		}, []string{"lane"}),
		offered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgerelay_accept_leases_total", Help: "Jobs leased in their event's accept write and sent before it was on disk, by lane (bolt).",
		}, []string{"lane"}),
	}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "edgerelay_accept_to_deliver_seconds", Help: "Time from an event's acceptance on the socket to the provider's acceptance of its push, per delivered job.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16), // 10 ms to 5.5 min
	}, []string{"type", "platform"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgerelay_decisions_total", Help: "Decisions recorded by this relay, by notification type, verdict and reason (plugin:NAME when a policy plugin decided).",
	}, []string{"type", "verdict", "reason"})
	m.pluginTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "edgerelay_plugin_eval_seconds", Help: "Duration of policy plugin evaluations, failed ones included.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14), // 100 µs to 0.8 s
	}, []string{"plugin"})
	m.apiReqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgerelay_api_requests_total", Help: "App API requests by route pattern and status.",
	}, []string{"route", "status"})
	m.apiTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "edgerelay_api_request_seconds", Help: "App API request durations by route pattern.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms to 4 s
	}, []string{"route"})
	m.storeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "edgerelay_store_commit_seconds", Help: "Duration of the store's durable writes on the delivery path, by operation.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100 µs to 3.3 s
	}, []string{"op"})
	m.storeErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgerelay_store_errors_total", Help: "Store operations on the delivery path that failed, by operation.",
	}, []string{"op"})
	for _, op := range storeOps {
		m.storeErrs.WithLabelValues(op) // every op has a series from the start: rate() sees the first error
	}
	m.reg.MustRegister(m.latency, m.decisions, m.pluginTime, m.apiReqs, m.apiTime, m.storeTime, m.storeErrs)
	m.reg.MustRegister(m.events, m.deliveries, m.sendTime, m.breaker, m.breakerOps, m.offered,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) onBreaker(lane string, open bool, _ string) {
	if open {
		m.breaker.WithLabelValues(lane).Set(1)
		m.breakerOps.WithLabelValues(lane).Inc()
		return
	}
	m.breaker.WithLabelValues(lane).Set(0)
}

// acceptLeases counts jobs sent before their accept was on disk.
func (m *metrics) acceptLeases(lane string, n int) { m.offered.WithLabelValues(lane).Add(float64(n)) }

func (m *metrics) outcome(j relay.Job, took time.Duration) {
	m.deliveries.WithLabelValues(string(j.Platform), string(j.State)).Inc()
	if took > 0 {
		m.sendTime.WithLabelValues(string(j.Platform)).Observe(took.Seconds())
	}
}

// typeLabel bounds the type label to configured types.
func (m *metrics) typeLabel(t string) string {
	if m.knownType(t) {
		return t
	}
	return "other"
}

// final observes the accept-to-deliver latency of a delivered job.
func (m *metrics) final(lj store.Leased, j relay.Job) {
	if j.State != relay.StateDelivered || lj.AcceptedAt.IsZero() || lj.Alert == nil {
		return
	}
	m.latency.WithLabelValues(m.typeLabel(lj.Alert.Type), string(j.Platform)).Observe(max(j.UpdatedAt.Sub(lj.AcceptedAt), 0).Seconds())
}

// decided counts a decision.
func (m *metrics) decided(ev relay.Event, d relay.Decision) {
	m.decisions.WithLabelValues(m.typeLabel(ev.Type), string(d.Verdict), decisionReason(d)).Inc()
}

// decisionReason is a decision's reason as a bounded label: the baseline's
// reasons as they are, "plugin:NAME" when a policy plugin suppressed or
// deferred (or failed with on_error = suppress), "other" otherwise. A
// plugin's own reason text never becomes a label.
func decisionReason(d relay.Decision) string {
	if d.Verdict != relay.VerdictDeliver {
		for i := len(d.Plugins) - 1; i >= 0; i-- {
			p := d.Plugins[i]
			if !p.Shadow && (p.Verdict == string(d.Verdict) || p.Verdict == policy.DecisionError) {
				return "plugin:" + p.Name
			}
		}
	}
	switch d.Reason {
	case relay.ReasonEnabled, relay.ReasonEnforced, relay.ReasonWorkspaceDisabled, relay.ReasonUserOptOut,
		relay.ReasonNoDevices, relay.ReasonExpired, pipeline.ReasonUnknownType:
		return d.Reason
	}
	return "other"
}

// apiRequest counts an app API request.
func (m *metrics) apiRequest(route string, status int, took time.Duration) {
	m.apiReqs.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.apiTime.WithLabelValues(route).Observe(took.Seconds())
}

// pluginCollector exports each loaded plugin's counters at scrape time.
type pluginCollector struct {
	list                           func() []policy.PluginInfo
	calls, failures, timeouts, brk *prometheus.Desc
	info                           *prometheus.Desc
}

func newPluginCollector(list func() []policy.PluginInfo) *pluginCollector {
	l := []string{"plugin"}
	return &pluginCollector{
		list:     list,
		calls:    prometheus.NewDesc("edgerelay_plugin_calls_total", "Evaluations per policy plugin (current version).", l, nil),
		failures: prometheus.NewDesc("edgerelay_plugin_failures_total", "Failed evaluations per policy plugin: traps, timeouts, bad output (current version).", l, nil),
		timeouts: prometheus.NewDesc("edgerelay_plugin_timeouts_total", "Evaluations killed by plugins.timeout (current version).", l, nil),
		brk:      prometheus.NewDesc("edgerelay_plugin_breaker_open", "1 while the plugin's circuit breaker is open.", l, nil),
		info:     prometheus.NewDesc("edgerelay_plugin_info", "Loaded policy plugin version.", []string{"plugin", "hash", "mode"}, nil),
	}
}

func (c *pluginCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.calls, c.failures, c.timeouts, c.brk, c.info} {
		ch <- d
	}
}

func (c *pluginCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.list() {
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(p.Calls), p.Name)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(p.Failures), p.Name)
		ch <- prometheus.MustNewConstMetric(c.timeouts, prometheus.CounterValue, float64(p.Timeouts), p.Name)
		open := 0.0
		if p.BreakerOpen {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(c.brk, prometheus.GaugeValue, open, p.Name)
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, p.Name, p.Hash, p.Mode)
	}
}

// metricsHandler serves reg. A collector that fails (the queue's lane
// statistics when the store cannot answer in time) is logged and counted
// (promhttp_metric_handler_errors_total) and the other metrics are still
// served: answering 500 for one would blind the operator's monitoring
// exactly when the relay is under stress.
func metricsHandler(reg *prometheus.Registry, log hclog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      scrapeLogger{log},
		Registry:      reg,
	})
}

// scrapeLogger logs promhttp's errors.
type scrapeLogger struct{ log hclog.Logger }

func (l scrapeLogger) Println(v ...any) {
	l.log.Warn("metrics scrape: " + strings.TrimSpace(fmt.Sprintln(v...)))
}

// queueCollector exports the queue's backlog at scrape time.
type queueCollector struct {
	q                                  *queue.Queue
	open, depth, inFlight, due, dueAge *prometheus.Desc
	jobAge, expired                    *prometheus.Desc
}

func newQueueCollector(q *queue.Queue) *queueCollector {
	l := []string{"lane"}
	return &queueCollector{
		q:        q,
		open:     prometheus.NewDesc("edgerelay_queue_open_jobs", "Open delivery jobs in the schedule (all relays).", nil, nil),
		depth:    prometheus.NewDesc("edgerelay_queue_depth", "Open jobs per lane (app/platform) in the schedule, leased ones included.", l, nil),
		inFlight: prometheus.NewDesc("edgerelay_queue_in_flight", "This relay's sends in flight per lane.", l, nil),
		due:      prometheus.NewDesc("edgerelay_queue_due", "Jobs due now per lane.", l, nil),
		dueAge:   prometheus.NewDesc("edgerelay_queue_oldest_due_seconds", "Age of the oldest due job per lane.", l, nil),
		jobAge:   prometheus.NewDesc("edgerelay_queue_oldest_job_seconds", "Time the lane's longest-open job has waited since its event was accepted (due, retrying or parked behind an open breaker).", l, nil),
		expired:  prometheus.NewDesc("edgerelay_queue_expired_jobs", "Open jobs per lane whose event expired: they will end expired, unsent.", l, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.depth, c.inFlight, c.due, c.dueAge, c.jobAge, c.expired} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(c.q.Open()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.q.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.depth, err)
		return
	}
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.High+s.Normal), s.Lane)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.InFlight), s.Lane)
		ch <- prometheus.MustNewConstMetric(c.due, prometheus.GaugeValue, float64(s.Due), s.Lane)
		ch <- prometheus.MustNewConstMetric(c.dueAge, prometheus.GaugeValue, s.OldestDueAge.Seconds(), s.Lane)
		ch <- prometheus.MustNewConstMetric(c.jobAge, prometheus.GaugeValue, s.OldestAge.Seconds(), s.Lane)
		ch <- prometheus.MustNewConstMetric(c.expired, prometheus.GaugeValue, float64(s.Expired), s.Lane)
	}
}
