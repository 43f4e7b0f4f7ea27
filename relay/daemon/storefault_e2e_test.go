package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/daemon"
)

// runInProcess runs relayd in this process on h's config (so a test can
// reach into it with the daemon's test hooks) until the test ends.
func (h *harness) runInProcess(setup func(*daemon.Daemon)) {
	h.t.Helper()
	cfg, diags := config.Load(h.cfgPath)
	if diags.HasErrors() {
		h.t.Fatal(diags)
	}
	h.logs = &lockedBuffer{}
	d := daemon.New(cfg, hclog.New(&hclog.LoggerOptions{Output: h.logs, Level: hclog.Debug}))
	if setup != nil {
		setup(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("relayd: %v", err)
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		h.t.Fatalf("relayd: %v\n%s", err, h.logs.String())
	case <-time.After(30 * time.Second):
		h.t.Fatal("relayd not ready after 30s")
	}
}

// readyz returns the socket's /readyz status and message.
func (h *harness) readyz() (int, string) {
	code, body := h.do("GET", "/readyz", "", nil)
	var v struct{ Error struct{ Message string } }
	json.Unmarshal(body, &v)
	return code, v.Error.Message
}

// TestStoreWriteFaultRecovers makes every store write fail for 3 s right
// after events were accepted: /readyz says why relayd is unready during the
// fault and is ready again after it by itself, and every accepted event is
// decided and delivered without a restart.
func TestStoreWriteFaultRecovers(t *testing.T) {
	h := newHarness(t, harnessOptions{logLevel: "info", extraConfig: "queue {\n  lease = \"1s\"\n}"})
	var faultUntil atomic.Int64 // unix nanos; writes fail before it
	errFull := errors.New("no space left on device (injected)")
	h.runInProcess(func(d *daemon.Daemon) {
		d.SetTestHooks(func() error {
			if time.Now().UnixNano() < faultUntil.Load() {
				return errFull
			}
			return nil
		}, 100*time.Millisecond, 300*time.Millisecond)
	})
	const users = 10
	var events []map[string]any
	for i := range users {
		user := fmt.Sprintf("u%d", i)
		h.registerPhones("acme", user)
		events = append(events, map[string]any{"id": "e-" + user, "workspace": "acme", "user": user,
			"type": "new_trusted_device", "title": "New device", "body": "A new device signed in"})
	}
	for _, r := range h.post(events...) {
		if r.Status != "accepted" {
			t.Fatalf("event %s: %s %s", r.ID, r.Status, r.Error)
		}
	}
	faultStart := time.Now()
	faultUntil.Store(faultStart.Add(3 * time.Second).UnixNano())

	// During the fault: unready, naming the store.
	waitFor(t, 2*time.Second, func() error {
		code, msg := h.readyz()
		if code != 503 || !strings.Contains(msg, "store cannot take writes") || !strings.Contains(msg, "injected") {
			return fmt.Errorf("readyz during the fault: %d %q", code, msg)
		}
		return nil
	})
	if time.Since(faultStart) > 3*time.Second {
		t.Fatal("readyz noticed the fault only after it ended")
	}
	// After it: ready again, with no one's help.
	waitFor(t, 5*time.Second, func() error {
		if code, msg := h.readyz(); code != 200 {
			return fmt.Errorf("readyz after the fault: %d %q", code, msg)
		}
		return nil
	})
	if time.Now().UnixNano() < faultUntil.Load() {
		t.Fatal("ready while store writes still fail")
	}
	for i := range users {
		id := fmt.Sprintf("e-u%d", i)
		waitFor(t, 10*time.Second, func() error { return h.settled("acme", id) })
		v, _ := h.event("acme", id)
		for _, d := range v.Deliveries {
			if d.State != "delivered" {
				t.Errorf("event %s device %s: %s (%s)", id, d.DeviceID, d.State, d.LastError)
			}
		}
		if len(v.Deliveries) != 2 {
			t.Errorf("event %s: %d deliveries, want 2", id, len(v.Deliveries))
		}
	}
	// The fault cost decisions or settles, not only probes: otherwise this
	// test proves nothing about recovering from it.
	if logs := h.logs.String(); !strings.Contains(logs, "injected") || strings.Count(logs, "injected") <= strings.Count(logs, "store probe failed") {
		t.Errorf("no write but the probe failed during the fault:\n%s", logs)
	}
	if t.Failed() {
		t.Log(h.logs.String())
	}
}
