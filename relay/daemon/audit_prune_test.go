package daemon

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// TestAuditPruner: entries older than audit.retention are dropped a minute
// after start and then hourly; newer ones stay; the pruner stops with its
// context.
func TestAuditPruner(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		st, err := bolt.Open(filepath.Join(dir, "relay.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close(context.Background())
		now := time.Now()
		for _, age := range []time.Duration{48 * time.Hour, 12 * time.Hour, 0} {
			e := relay.AuditEntry{Time: now.Add(-age), Actor: relay.Actor{Kind: relay.ActorSystem}, Action: relay.AuditPluginLoad}
			if _, err := st.AppendAudit(t.Context(), e); err != nil {
				t.Fatal(err)
			}
		}
		count := func() int {
			got, err := st.Audit(t.Context(), store.AuditFilter{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			return len(got)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- runPruner(ctx, st, retentions{audit: 24 * time.Hour}, hclog.NewNullLogger()) }()
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if n := count(); n != 2 {
			t.Fatalf("%d entries a minute after start, want 2 (the 48h old one pruned)", n)
		}
		time.Sleep(13 * time.Hour) // the 12h old entry passes 24h; hourly runs prune it
		synctest.Wait()
		if n := count(); n != 1 {
			t.Fatalf("%d entries 13h later, want 1", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
