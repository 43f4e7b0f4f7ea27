package daemon

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/policy"
	"github.com/edgerelay/edgerelay/relay/store/jetstream"
)

// recentCounts is where the plugins' user.recent counts live: in memory
// (one relay), or in the cluster store, shared by every relay so that a
// load balancer cannot split the push-bombing guard's counts.
type recentCounts interface {
	policy.RecentSource
	Record(ws, user, typ string, t time.Time)
}

// sharedRecent keeps user.recent in the JetStream store. An event is
// counted when it is decided, just before the plugins see the counts (so
// each decision counts itself, whichever relay took the events before
// it); the compare-and-set this costs runs in the deciders, off the accept
// path.
type sharedRecent struct {
	st  *jetstream.Store
	log hclog.Logger
}

func newSharedRecent(st *jetstream.Store, log hclog.Logger) *sharedRecent {
	return &sharedRecent{st: st, log: log}
}

func (r *sharedRecent) Record(ws, user, typ string, t time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.st.RecordRecent(ctx, ws, user, typ, t); err != nil {
		r.log.Warn("count event for user.recent: not counted", relay.LogKeyWorkspace, ws, relay.LogKeyUser, user, relay.LogKeyError, err)
	}
}

func (r *sharedRecent) Lookup(ws, user string, now time.Time) map[string]abi.Recent {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := r.st.Recent(ctx, ws, user, now)
	if err != nil {
		r.log.Warn("read user.recent: plugins see no counts for this event", relay.LogKeyWorkspace, ws, relay.LogKeyUser, user, relay.LogKeyError, err)
		return nil
	}
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]abi.Recent, len(m))
	for t, c := range m {
		out[t] = abi.Recent{M1: c.M1, M10: c.M10, H1: c.H1}
	}
	return out
}
