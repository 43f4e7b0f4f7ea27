package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// storeOps are the store operations watched on the delivery path: the
// writes every event and every send makes (lease: errors only).
var storeOps = []string{"add_events", "decide", "lease", "settle"}

// timedStore times the delivery path's store writes and counts their
// failures (edgerelay_store_commit_seconds, edgerelay_store_errors_total).
// Only the pipeline and the queue use it; the rest of relayd uses the
// store itself (its concrete type stays visible there).
type timedStore struct {
	store.Backend
	m *metrics
}

func (t timedStore) observe(op string, start time.Time, err error) {
	if err != nil {
		t.m.storeErrs.WithLabelValues(op).Inc()
		return
	}
	t.m.storeTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (t timedStore) AddEvents(ctx context.Context, events []relay.Event, receivedAt time.Time) ([]error, error) {
	start := time.Now()
	res, err := t.Backend.AddEvents(ctx, events, receivedAt)
	t.observe("add_events", start, err)
	return res, err
}

// AddDecided is timed as add_events too: it is how events are accepted
// (with the decisions made on accept in the same write).
func (t timedStore) AddDecided(ctx context.Context, events []relay.Event, decided []*store.Decided, receivedAt time.Time) ([]error, error) {
	start := time.Now()
	res, err := t.Backend.AddDecided(ctx, events, decided, receivedAt)
	t.observe("add_events", start, err)
	return res, err
}

// pipelineStore is the store the pipeline writes through: timed, and a
// store.AcceptLeaser only when the backend is one. The pipeline reserves
// send slots for an accept's leases when its store can lease (a backend
// that cannot, JetStream, would hold a batch's slots through its write and
// give them all back).
func pipelineStore(t timedStore) store.Backend {
	if al, ok := t.Backend.(store.AcceptLeaser); ok {
		return timedLeasingStore{t, al}
	}
	return t
}

// timedLeasingStore is a timedStore over a store.AcceptLeaser.
type timedLeasingStore struct {
	timedStore
	al store.AcceptLeaser // the backend
}

// AddDecidedLeasing times an accept that leases as AddDecided.
func (t timedLeasingStore) AddDecidedLeasing(ctx context.Context, events []relay.Event, decided []*store.Decided, receivedAt time.Time, lease store.AcceptLease) ([]error, error) {
	start := time.Now()
	res, err := t.al.AddDecidedLeasing(ctx, events, decided, receivedAt, lease)
	t.observe("add_events", start, err)
	return res, err
}

func (t timedStore) Decide(ctx context.Context, key relay.EventKey, d relay.Decision, alert *relay.Alert, jobs []relay.Job) error {
	start := time.Now()
	err := t.Backend.Decide(ctx, key, d, alert, jobs)
	if errorsIsConflict(err) {
		t.observe("decide", start, nil) // decided first elsewhere: the store worked
	} else {
		t.observe("decide", start, err)
	}
	return err
}

// ReadUsers passes store.UsersReader through (the embedded interface hides
// it), or says the backend cannot.
func (t timedStore) ReadUsers(ctx context.Context, workspace string, users []string) ([]map[string]bool, [][]relay.Device, error) {
	if r, ok := t.Backend.(store.UsersReader); ok {
		return r.ReadUsers(ctx, workspace, users)
	}
	return nil, nil, errors.ErrUnsupported
}

func (t timedStore) Lease(ctx context.Context, req store.LeaseRequest) ([]store.Leased, time.Time, error) {
	start := time.Now()
	jobs, next, err := t.Backend.Lease(ctx, req)
	// Not timed: a backend may wait for work (LeaseRequest.Wait).
	if err != nil && ctx.Err() == nil { // a shutdown is not a store error
		t.observe("lease", start, err)
	}
	return jobs, next, err
}

func (t timedStore) Settle(ctx context.Context, l store.Leased, j relay.Job) error {
	start := time.Now()
	err := t.Backend.Settle(ctx, l, j)
	if errorsIsLeaseLost(err) {
		t.observe("settle", start, nil) // another relay has the job: the store worked
	} else {
		t.observe("settle", start, err)
	}
	return err
}

func errorsIsConflict(err error) bool  { return err != nil && errors.Is(err, relay.ErrConflict) }
func errorsIsLeaseLost(err error) bool { return err != nil && errors.Is(err, store.ErrLeaseLost) }

// groupCommitter is a backend with a group commit (bolt).
type groupCommitter interface {
	CommitStats() bolt.CommitStats
}

// commitCollector exports a group commit's work: the rate of
// edgerelay_store_commit_busy_seconds_total is the share of time the
// store's one writer is busy; near 1, writes queue behind the disk.
type commitCollector struct {
	gc                    groupCommitter
	commits, writes, busy *prometheus.Desc
}

func newCommitCollector(gc groupCommitter) *commitCollector {
	return &commitCollector{
		gc:      gc,
		commits: prometheus.NewDesc("edgerelay_store_commits_total", "Group commits the store ran (each one transaction and its fsyncs).", nil, nil),
		writes:  prometheus.NewDesc("edgerelay_store_commit_writes_total", "Store writes the group commits carried (writes / commits: writes per commit).", nil, nil),
		busy:    prometheus.NewDesc("edgerelay_store_commit_busy_seconds_total", "Time the store's writer spent committing, fsyncs included (rate near 1: the writer never rests).", nil, nil),
	}
}

func (c *commitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.commits
	ch <- c.writes
	ch <- c.busy
}

func (c *commitCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.gc.CommitStats()
	ch <- prometheus.MustNewConstMetric(c.commits, prometheus.CounterValue, float64(st.Commits))
	ch <- prometheus.MustNewConstMetric(c.writes, prometheus.CounterValue, float64(st.Writes))
	ch <- prometheus.MustNewConstMetric(c.busy, prometheus.CounterValue, st.Busy.Seconds())
}
