package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
)

// healthInterval is how often the store is probed for /readyz.
const healthInterval = 2 * time.Second

// health tracks what /readyz reports: the store taking writes (a probe
// every healthInterval) and the providers' circuit breakers.
type health struct {
	ping     func(context.Context) error
	breakers func() map[string]string
	log      hclog.Logger
	every    time.Duration         // probe interval; 0: healthInterval
	storeErr atomic.Pointer[error] // last probe's failure; nil: fine
}

// run probes the store until ctx is done.
func (h *health) run(ctx context.Context) error {
	if h.every <= 0 {
		h.every = healthInterval
	}
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		h.probe(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *health) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, max(h.every, healthInterval))
	err := h.ping(pctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	was := h.storeErr.Load()
	switch {
	case err != nil:
		err = fmt.Errorf("store cannot take writes: %w", err)
		h.storeErr.Store(&err)
		if was == nil {
			h.log.Error("store probe failed: not ready", relay.LogKeyError, err)
		}
	case was != nil:
		h.storeErr.Store(nil)
		h.log.Info("store takes writes again: ready")
	}
}

// err is the reason relayd is not ready, or nil.
func (h *health) err() error {
	var errs []error
	if e := h.storeErr.Load(); e != nil {
		errs = append(errs, *e)
	}
	if open := h.breakers(); len(open) > 0 {
		lanes := slices.Sorted(maps.Keys(open))
		var b strings.Builder
		for i, l := range lanes {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s (%s)", l, open[l])
		}
		errs = append(errs, fmt.Errorf("circuit breaker open for lane %s", b.String()))
	}
	return errors.Join(errs...)
}
