package api

import (
	"testing"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

// TestAuditSettings checks that an admin's settings change is recorded
// with the caller's claims and the effective values before and after,
// and that a user changing their own preferences is not (only changes by
// someone else are audited).
func TestAuditSettings(t *testing.T) {
	audit := bolttest.Open(t)
	ts := startServer(t, func(o *Options) { o.Audit = audit })
	admin := ts.token("acme", "boss", RoleAdmin)
	expect(t, ts.do("PUT", "/v1/workspace/settings", admin, map[string]string{"otp_received": "enforced"}), 200, "")
	expect(t, ts.do("PUT", "/v1/workspace/settings", admin, map[string]string{}), 200, "")
	expect(t, ts.do("PUT", "/v1/preferences", ts.token("acme", "u-1", RoleUser), map[string]bool{"account_shared": false}), 200, "")

	got, err := audit.Audit(t.Context(), store.AuditFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d entries, want 1: %+v", len(got), got)
	}
	e := got[0]
	want := relay.Actor{Kind: relay.ActorApp, Subject: "boss", Workspace: "acme", Role: RoleAdmin}
	if e.Action != relay.AuditSettingsPut || e.Workspace != "acme" || e.Actor != want || !e.Time.Equal(ts.clock.Now()) ||
		string(e.Before) != `{"otp_received":"enabled"}` || string(e.After) != `{"otp_received":"enforced"}` {
		t.Fatalf("entry %+v actor %+v before %s after %s", e, e.Actor, e.Before, e.After)
	}
}
