package ingest

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// TestAuditAdminChanges checks that the socket's admin changes land in
// the audit log with the peer's uid and pid and the state before and
// after, and that GET /v1/audit filters them.
func TestAuditAdminChanges(t *testing.T) {
	audit, err := bolt.Open(filepath.Join(t.TempDir(), "audit.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = audit.Close(t.Context()) })
	ts := startServer(t, func(o *Options) { o.Audit = audit })

	must := func(r response, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
		}
	}
	must(ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"otp_received":"enforced"}`)), http.StatusOK)
	must(ts.do(t, http.MethodPut, "/v1/workspaces/acme/users/u-1/preferences", MediaTypeJSON, []byte(`{"account_shared":false}`)), http.StatusOK)
	must(ts.do(t, http.MethodPut, "/v1/workspaces/acme/users/u-1/devices/d-1", MediaTypeJSON,
		[]byte(`{"platform":"android","token":"tok-1","app":"demo","name":"Pixel"}`)), http.StatusOK)
	must(ts.do(t, http.MethodDelete, "/v1/workspaces/acme/users/u-1/devices/d-1", "", nil), http.StatusNoContent)
	// Nothing changed, nothing recorded.
	must(ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{}`)), http.StatusOK)
	must(ts.do(t, http.MethodDelete, "/v1/workspaces/acme/users/u-1/devices/d-1", "", nil), http.StatusNotFound)

	var list AuditList
	r := ts.do(t, http.MethodGet, "/v1/audit", "", nil)
	must(r, http.StatusOK)
	r.decode(t, &list)
	if len(list.Entries) != 3 {
		t.Fatalf("%d entries, want 3: %s", len(list.Entries), r.body)
	}
	want := []struct{ action, user, target, before, after string }{
		{relay.AuditDeviceDelete, "u-1", "d-1", "", ""},
		{relay.AuditPreferencesPut, "u-1", "", `{"account_shared":true}`, `{"account_shared":false}`},
		{relay.AuditSettingsPut, "", "", `{"otp_received":"enabled"}`, `{"otp_received":"enforced"}`},
	}
	for i, e := range list.Entries {
		w := want[i]
		if e.Action != w.action || e.Workspace != "acme" || e.User != w.user || e.Target != w.target {
			t.Errorf("entry %d: %+v, want %+v", i, e, w)
		}
		if w.before != "" && (string(e.Before) != w.before || string(e.After) != w.after) {
			t.Errorf("entry %d before %s after %s, want %s %s", i, e.Before, e.After, w.before, w.after)
		}
		if e.Actor.Kind != relay.ActorSocket || time.Since(e.Time) > time.Minute {
			t.Errorf("entry %d: actor %+v time %v", i, e.Actor, e.Time)
		}
		if runtime.GOOS == "linux" && (e.Actor.UID == nil || *e.Actor.UID != os.Getuid() || e.Actor.PID == nil || *e.Actor.PID != os.Getpid()) {
			t.Errorf("entry %d: actor %+v, want uid %d pid %d (SO_PEERCRED)", i, e.Actor, os.Getuid(), os.Getpid())
		}
	}
	// The removed device is described without its token.
	var dev map[string]any
	if err := json.Unmarshal(list.Entries[0].Before, &dev); err != nil || dev["name"] != "Pixel" || dev["token"] != nil {
		t.Errorf("device before = %s (%v): want its name and no token", list.Entries[0].Before, err)
	}

	r = ts.do(t, http.MethodGet, "/v1/audit?action=settings.put&workspace=acme&since=1h", "", nil)
	must(r, http.StatusOK)
	list = AuditList{}
	r.decode(t, &list)
	if len(list.Entries) != 1 || list.Entries[0].Action != relay.AuditSettingsPut {
		t.Fatalf("filtered: %s", r.body)
	}
	r = ts.do(t, http.MethodGet, "/v1/audit?limit=2", "", nil)
	list = AuditList{}
	r.decode(t, &list)
	if len(list.Entries) != 2 || list.NextBefore != list.Entries[1].Seq {
		t.Fatalf("page 1: %s", r.body)
	}
	r = ts.do(t, http.MethodGet, "/v1/audit?limit=2&before="+jsonNum(list.NextBefore), "", nil)
	list = AuditList{}
	r.decode(t, &list)
	if len(list.Entries) != 1 || list.Entries[0].Action != relay.AuditSettingsPut || list.NextBefore != 0 {
		t.Fatalf("page 2: %s", r.body)
	}

	for q, msg := range map[string]string{
		"limit=0":      `field "limit": want 1 to 1000, got "0"`,
		"since=soon":   `field "since": want an RFC 3339 time or a positive duration such as 24h, got "soon"`,
		"before=x":     `field "before": want a positive sequence number, got "x"`,
		"workspaces=a": `field "workspaces": unknown query parameter; use workspace, user, action, since, before, limit`,
	} {
		ts.do(t, http.MethodGet, "/v1/audit?"+q, "", nil).wantError(t, http.StatusBadRequest, CodeBadRequest, msg)
	}
}

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// TestAuditNotConfigured: without an audit log, nothing breaks and
// GET /v1/audit says there is none.
func TestAuditNotConfigured(t *testing.T) {
	ts := startServer(t, nil)
	if r := ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"otp_received":"enforced"}`)); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	ts.do(t, http.MethodGet, "/v1/audit", "", nil).wantError(t, http.StatusNotFound, CodeNotFound, "no audit log")
}

// TestAuditTokenMoved: an operator registering a push token another device
// of the workspace holds removes that device, and the removal is recorded.
func TestAuditTokenMoved(t *testing.T) {
	audit, err := bolt.Open(filepath.Join(t.TempDir(), "audit.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = audit.Close(t.Context()) })
	ts := startServer(t, func(o *Options) { o.Audit = audit })
	for _, p := range []string{"/v1/workspaces/acme/users/u-1/devices/old", "/v1/workspaces/acme/users/u-2/devices/new"} {
		if r := ts.do(t, http.MethodPut, p, MediaTypeJSON, []byte(`{"platform":"android","token":"tok-1","app":"demo"}`)); r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	var list AuditList
	ts.do(t, http.MethodGet, "/v1/audit", "", nil).decode(t, &list)
	if len(list.Entries) != 1 {
		t.Fatalf("entries %+v, want the removal of u-1/old", list.Entries)
	}
	e := list.Entries[0]
	if e.Action != relay.AuditDeviceDelete || e.User != "u-1" || e.Target != "old" || string(e.After) != `{"reason":"push token registered for u-2/new"}` {
		t.Fatalf("entry %+v after %s", e, e.After)
	}
}
