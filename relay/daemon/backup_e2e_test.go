package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/relaytest"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// TestBackupUnderLoadRestores takes a backup (GET /v1/backup, what relayctl
// backup calls) while events keep arriving and Apple refuses every push, so
// the snapshot holds open jobs. A relayd started on the restored file, with
// Apple answering again, delivers every job that was open in the snapshot.
func TestBackupUnderLoadRestores(t *testing.T) {
	h := newHarness(t, harnessOptions{logLevel: "info"})
	h.start()
	defer h.stop(syscall.SIGTERM)
	h.APNs.Script("", relaytest.Rule{Reason: "ServiceUnavailable"})

	const users = 20
	for i := range users {
		user := fmt.Sprintf("u%d", i)
		h.put("/v1/workspaces/acme/users/"+user+"/devices/iphone", map[string]string{"platform": "ios", "token": hexToken("acme/" + user), "app": "demo", "environment": "production"})
	}
	post := func(batch int) {
		var evs []map[string]any
		for i := range users {
			evs = append(evs, map[string]any{"id": fmt.Sprintf("e%d-u%d", batch, i), "workspace": "acme", "user": fmt.Sprintf("u%d", i),
				"type": "new_trusted_device", "title": "New device", "body": "A new device signed in"})
		}
		for _, r := range h.post(evs...) {
			if r.Status != "accepted" {
				t.Errorf("event %s: %s %s", r.ID, r.Status, r.Error)
			}
		}
	}
	post(0)
	// The first batch decided, its jobs retrying: open in any snapshot.
	for i := range users {
		waitFor(t, 5*time.Second, func() error {
			v, _ := h.event("acme", fmt.Sprintf("e0-u%d", i))
			if v.Decision == nil || len(v.Deliveries) != 1 || v.Deliveries[0].Attempts == 0 {
				return fmt.Errorf("e0-u%d not tried yet: %+v", i, v)
			}
			return nil
		})
	}
	// Load: batches keep arriving while the copy is taken.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var posted atomic.Int32
	wg.Go(func() {
		for b := 1; ; b++ {
			select {
			case <-stop:
				return
			default:
			}
			post(b)
			posted.Add(1)
		}
	})
	waitFor(t, 5*time.Second, func() error {
		if posted.Load() < 3 {
			return fmt.Errorf("%d batches posted", posted.Load())
		}
		return nil
	})
	code, body := h.do("GET", "/v1/backup", "", nil)
	close(stop)
	wg.Wait()
	if code != 200 {
		t.Fatalf("GET /v1/backup: %d %s", code, body)
	}
	copyPath := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(copyPath, body, 0o600); err != nil {
		t.Fatal(err)
	}
	h.stop(syscall.SIGTERM)

	// What the snapshot holds open.
	open := map[relay.JobKey]bool{}
	undecided := 0
	st, err := bolt.Open(copyPath, bolt.Options{})
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	ctx := context.Background()
	for b := 0; ; b++ {
		found := 0
		for i := range users {
			rec, err := st.Event(ctx, relay.EventKey{Workspace: "acme", ID: fmt.Sprintf("e%d-u%d", b, i)})
			if err != nil {
				continue
			}
			found++
			if rec.Decision == nil {
				// Undecided in the snapshot: the restored relayd decides
				// it at start, and must deliver it too.
				undecided++
				open[relay.JobKey{Event: rec.Event.Key(), DeviceID: "iphone"}] = true
				continue
			}
			for _, j := range rec.Jobs {
				if !j.State.Final() {
					open[j.Key()] = true
				}
			}
		}
		if found == 0 {
			break
		}
	}
	if err := st.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(open) < users {
		t.Fatalf("the snapshot has %d open jobs, want at least the first batch's %d", len(open), users)
	}

	t.Logf("snapshot: %d open jobs, %d of them of undecided events", len(open), undecided)

	// Restore: a relayd on the copied file, Apple answering again.
	h.APNs.ClearScript()
	h.APNs.Reset()
	r := newHarness(t, harnessOptions{logLevel: "info", peer: h, store: fmt.Sprintf("store \"bolt\" {\n  path = %q\n}", copyPath)})
	r.start()
	defer r.stop(syscall.SIGTERM)
	for k := range open {
		waitFor(t, 10*time.Second, func() error {
			v, code := r.event(k.Event.Workspace, k.Event.ID)
			if code != 200 {
				return fmt.Errorf("event %s: %d", k.Event, code)
			}
			for _, d := range v.Deliveries {
				if d.DeviceID == k.DeviceID && d.State == "delivered" {
					return nil
				}
			}
			return fmt.Errorf("event %s device %s not delivered: %+v", k.Event, k.DeviceID, v.Deliveries)
		})
	}
	if got := len(h.APNs.Pushes()); got < len(open) {
		t.Fatalf("Apple received %d pushes after the restore, want at least %d", got, len(open))
	}
}
