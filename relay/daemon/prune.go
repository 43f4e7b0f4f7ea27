package daemon

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
)

// pruneInterval is how often data past its retention is deleted.
const pruneInterval = time.Hour

// pruner is implemented by stores that delete old data.
type pruner interface {
	PruneEvents(ctx context.Context, before time.Time) (int, error)
	PruneDeadLetters(ctx context.Context, before time.Time) (int, error)
	PruneDevices(ctx context.Context, before time.Time) (int, error)
	PruneAudit(ctx context.Context, before time.Time) (int, error)
}

// retentions is what runPruner keeps for how long (0: kept).
type retentions struct {
	events          time.Duration // store.retention, after the event's expiry
	deadLetters     time.Duration // retention.dead_letters
	inactiveDevices time.Duration // retention.inactive_devices
	audit           time.Duration // audit.retention
}

func retentionsOf(cfg *config.Config) retentions {
	return retentions{events: cfg.Store.Retention, deadLetters: cfg.Retention.DeadLetters,
		inactiveDevices: cfg.Retention.InactiveDevices, audit: cfg.Audit.Retention}
}

// runPruner deletes finished events, dead letters, inactive devices and
// audit entries past their retention, shortly after start and then every pruneInterval, so
// the store does not grow without bound. (Answers: the app API prunes its
// log, retention.answers.)
func runPruner(ctx context.Context, p pruner, r retentions, log hclog.Logger) error {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, step := range []struct {
			what      string
			retention time.Duration
			prune     func(context.Context, time.Time) (int, error)
		}{
			{"events", r.events, p.PruneEvents},
			{"dead letters", r.deadLetters, p.PruneDeadLetters},
			{"inactive devices", r.inactiveDevices, p.PruneDevices},
			{"audit entries", r.audit, p.PruneAudit},
		} {
			if step.retention <= 0 {
				continue
			}
			start := time.Now()
			n, err := step.prune(ctx, start.Add(-step.retention))
			switch {
			case err != nil && ctx.Err() == nil:
				log.Error("prune old "+step.what, relay.LogKeyError, err)
			case n > 0:
				log.Info("pruned old "+step.what, "count", n, "retention", step.retention, "took", time.Since(start))
			}
		}
		t.Reset(pruneInterval)
	}
}
