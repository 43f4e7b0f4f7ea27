package daemon

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
)

// pruneInterval is how often finished events past their retention are
// deleted.
const pruneInterval = time.Hour

// eventPruner is implemented by stores that can delete old events.
type eventPruner interface {
	PruneEvents(ctx context.Context, before time.Time) (int, error)
}

// runPruner deletes finished events once they are retention past their
// expiry, shortly after start and then every pruneInterval, so the store
// does not grow without bound.
func runPruner(ctx context.Context, p eventPruner, retention time.Duration, log hclog.Logger) error {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		start := time.Now()
		n, err := p.PruneEvents(ctx, start.Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("prune old events", relay.LogKeyError, err)
		case n > 0:
			log.Info("pruned old events", "events", n, "retention", retention, "took", time.Since(start))
		}
		t.Reset(pruneInterval)
	}
}
