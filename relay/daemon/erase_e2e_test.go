package daemon_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/edgerelay/edgerelay/relay/daemon"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// TestEraseLeavesNothingOfTheUser registers a user's phones, preferences
// and events (delivered, dead-lettered, still retrying), erases the user
// through the socket, and scans every key and value of the store file:
// nothing of the user is left, and another user of the workspace keeps
// everything.
func TestEraseLeavesNothingOfTheUser(t *testing.T) {
	h := newHarness(t, harnessOptions{logLevel: "info"})
	h.start()
	defer h.stop(syscall.SIGTERM)
	const gone, stays = "leaver-5e1d", "stayer-9a0c"
	ios := hexToken("acme/" + gone)
	for _, u := range []string{gone, stays} {
		h.registerPhones("acme", u)
		h.put("/v1/workspaces/acme/users/"+u+"/preferences", map[string]bool{"account_shared": false})
	}
	// The leaver's iPhone: first push refused for good (a dead letter),
	// then retried forever (an open job).
	h.APNs.Script(ios, relaytest.Rule{Reason: "PayloadTooLarge", Times: 1})
	var evs []map[string]any
	for i, u := range []string{gone, gone, stays} {
		evs = append(evs, map[string]any{"id": fmt.Sprintf("evt-%d", i), "workspace": "acme", "user": u,
			"type": "new_trusted_device", "title": "New device", "body": "signed in as " + u})
	}
	h.post(evs[0])
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "evt-0") })
	h.APNs.Script(ios, relaytest.Rule{Reason: "ServiceUnavailable"})
	h.post(evs[1], evs[2])
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "evt-2") })

	code, body := h.do("POST", "/v1/erase", "application/json", []byte(`{"workspace":"acme","user":"`+gone+`"}`))
	if code != 200 {
		t.Fatalf("erase: %d %s", code, body)
	}
	var res struct {
		Erased map[string]int `json:"erased"`
	}
	json.Unmarshal(body, &res)
	// Events: the two prompts (their expiry withdraws wait in their own
	// jobs: new_trusted_device is actionable).
	if e := res.Erased; e["devices"] != 2 || e["preferences"] != 1 || e["events"] != 2 || e["dead_letters"] != 1 {
		t.Fatalf("erased %s", body)
	}
	if _, code := h.event("acme", "evt-1"); code != 404 {
		t.Errorf("erased event: %d", code)
	}
	// The audit log keeps who erased, not whom: the user as a pseudonym,
	// and nothing of the entries about them (their preferences above).
	code, body = h.do("GET", "/v1/audit?workspace=acme", "", nil)
	var audit struct {
		Entries []struct{ Action, User, Target string } `json:"entries"`
	}
	if err := json.Unmarshal(body, &audit); code != 200 || err != nil || len(audit.Entries) == 0 {
		t.Fatalf("audit: %d %s", code, body)
	}
	if e := audit.Entries[0]; e.Action != "erase" || e.User != "" || e.Target != daemon.ErasedUserID("acme", gone) {
		t.Errorf("newest audit entry %+v, want the erasure of %s", e, daemon.ErasedUserID("acme", gone))
	}
	for _, e := range audit.Entries {
		if e.User == gone {
			t.Errorf("audit entry about the erased user left: %+v", e)
		}
	}
	if code, body := h.do("POST", "/v1/erase", "application/json", []byte(`{"user":"x"}`)); code != 400 || !strings.Contains(string(body), `\"workspace\"`) {
		t.Errorf("erase without workspace: %d %s", code, body)
	}
	h.stop(syscall.SIGTERM)

	// Every key and value of the file, as the store sees it.
	db, err := bbolt.Open(filepath.Join(h.dir, "data", "relay.db"), 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var found, other []string
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				for _, s := range []string{gone, ios, "fcm-acme-" + gone} {
					if strings.Contains(string(k), s) || strings.Contains(string(v), s) {
						found = append(found, fmt.Sprintf("%s %q", name, k))
					}
				}
				if strings.Contains(string(v), stays) {
					other = append(other, string(name))
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Errorf("the erased user is still in the store: %v", found)
	}
	if len(other) < 3 { // devices, preferences, the event
		t.Errorf("the other user's data is gone too: %v", other)
	}
}
