// End-to-end tests of issue 10's ids: one id grammar on both APIs, and
// internal events outside the ids upstream can post.

package daemon_test

import (
	"fmt"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// TestIDsAnswerable: an event whose id holds '/', a space and non-ASCII,
// for user "josé", is delivered and answered through the app API
// (percent-encoded path); the withdraw push it causes is an internal event,
// so an upstream event "<id>~withdraw" is accepted, not a duplicate.
func TestIDsAnswerable(t *testing.T) {
	h, a := startWithAPI(t)
	defer h.stop(syscall.SIGTERM)
	jose := a.token("acme", "josé", "user")
	a.must(200, "PUT", "/v1/devices/"+url.PathEscape("josé's phone/1"), jose,
		map[string]string{"platform": "ios", "token": hexToken("jose-phone"), "app": "demo", "environment": "sandbox"})
	a.must(200, "PUT", "/v1/devices/tablet", jose, map[string]string{"platform": "android", "token": hexToken("jose-tablet"), "app": "demo"})

	id := "okta/sign-in 7 é"
	ev := h.mfaEvent(id)
	ev["user"] = "josé"
	if r := h.post(ev); r[0].Status != "accepted" {
		t.Fatalf("post: %+v", r)
	}
	escaped := url.PathEscape(id)
	waitFor(t, 20*time.Second, func() error { return h.settled("acme", escaped) })
	a.must(200, "POST", "/v1/events/"+escaped+"/actions", jose, map[string]string{"action": "approve", "device_id": "josé's phone/1"})

	// The tablet's withdraw push is stored under the internal id.
	wid := url.PathEscape(relay.WithdrawID(id))
	waitFor(t, 20*time.Second, func() error { return h.settled("acme", wid) })
	if v, _ := h.event("acme", wid); len(v.Deliveries) != 1 || v.Deliveries[0].State != "delivered" {
		t.Fatalf("withdraw event: %+v", v)
	}
	waitFor(t, 20*time.Second, func() error {
		for _, p := range h.FCM.Pushes() {
			if p.Token == hexToken("jose-tablet") && p.Data()["withdraw"] == "true" && p.Data()["event_id"] == id {
				return nil
			}
		}
		return fmt.Errorf("no withdraw push to the tablet")
	})

	// Upstream's own "<id>~withdraw" (the old internal form) is new.
	old := h.mfaEvent(id + "~withdraw")
	old["user"] = "josé"
	if r := h.post(old); r[0].Status != "accepted" {
		t.Fatalf("upstream %q: %+v, want accepted", id+"~withdraw", r)
	}
}
