package bolt

import (
	"context"
	"testing"

	"github.com/edgerelay/edgerelay/relay"
)

// TestDeviceCache: decoded devices are cached by their stored bytes, so a
// changed device reads back changed, and the cache is emptied by every
// write that removes devices (an erased or removed device does not stay in
// memory) but not by a registration that removes none.
func TestDeviceCache(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	cached := func() int {
		s.devices.mu.Lock()
		defer s.devices.mu.Unlock()
		return len(s.devices.m)
	}
	reg := func(id, token string) {
		t.Helper()
		if _, err := s.RegisterDevice(ctx, relay.Device{Workspace: "w", User: "u", ID: id, Platform: relay.PlatformIOS, Token: token, App: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	reg("d1", "t1")
	reg("d2", "t2")
	if ds, err := s.Devices(ctx, "w", "u"); err != nil || len(ds) != 2 || cached() != 2 {
		t.Fatalf("devices %+v, %v; %d cached, want 2", ds, err, cached())
	}
	reg("d1", "t1-new")
	if cached() != 2 {
		t.Fatalf("%d cached after a registration that removed nothing, want 2", cached())
	}
	ds, err := s.Devices(ctx, "w", "u")
	if err != nil || len(ds) != 2 || ds[0].Token != "t1-new" {
		t.Fatalf("devices after a new token: %+v, %v", ds, err)
	}
	reg("d3", "t2") // takes d2's token: d2 is removed
	if cached() != 0 {
		t.Fatalf("%d cached after a registration that removed a device, want 0", cached())
	}
	reg("d2", "t2") // and back
	s.Devices(ctx, "w", "u")
	if err := s.DeleteDevice(ctx, "w", "u", "d2"); err != nil || cached() != 0 {
		t.Fatalf("delete: %v; %d cached, want 0", err, cached())
	}
	s.Devices(ctx, "w", "u")
	if _, err := s.Erase(ctx, "w", "u"); err != nil || cached() != 0 {
		t.Fatalf("erase: %v; %d cached, want 0", err, cached())
	}
	if ds, err := s.Devices(ctx, "w", "u"); err != nil || len(ds) != 0 {
		t.Fatalf("devices after erase: %+v, %v", ds, err)
	}
}
