package daemon

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"
)

// fakePruner records the cut-off times it is asked for.
type fakePruner struct {
	mu    sync.Mutex
	calls map[string][]time.Time
}

func (f *fakePruner) rec(what string, before time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[what] = append(f.calls[what], before)
	return 1, nil
}

func (f *fakePruner) PruneEvents(_ context.Context, b time.Time) (int, error) {
	return f.rec("events", b)
}
func (f *fakePruner) PruneDeadLetters(_ context.Context, b time.Time) (int, error) {
	return f.rec("dead", b)
}
func (f *fakePruner) PruneAudit(_ context.Context, b time.Time) (int, error) {
	return f.rec("audit", b)
}
func (f *fakePruner) PruneDevices(_ context.Context, b time.Time) (int, error) {
	return f.rec("devices", b)
}

// TestPrunerRetentions: each kind is pruned with its own retention, a
// minute after start and hourly after that; "off" (0) is never pruned.
func TestPrunerRetentions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakePruner{calls: map[string][]time.Time{}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		start := time.Now()
		go func() {
			done <- runPruner(ctx, f, retentions{events: 7 * 24 * time.Hour, deadLetters: 30 * 24 * time.Hour}, hclog.NewNullLogger())
		}()
		time.Sleep(time.Minute + pruneInterval + time.Second)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.calls["events"]) != 2 || len(f.calls["dead"]) != 2 || len(f.calls["devices"]) != 0 {
			t.Fatalf("calls %v", f.calls)
		}
		if got, want := f.calls["dead"][0], start.Add(time.Minute-30*24*time.Hour); !got.Equal(want) {
			t.Errorf("dead letters cut at %v, want %v", got, want)
		}
		if got, want := f.calls["events"][1], start.Add(time.Minute+pruneInterval-7*24*time.Hour); !got.Equal(want) {
			t.Errorf("events cut at %v, want %v", got, want)
		}
	})
}
