// End-to-end test of issue 10's token moves: a push token moves to
// another user only with the one-time code relayd sends to it by silent
// push through the queue and the APNs fake.

package daemon_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/api"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

func TestTokenMoveNeedsProofE2E(t *testing.T) {
	h, a := startWithAPI(t)
	defer h.stop(syscall.SIGTERM)
	alice := a.token("acme", "alice", "user")
	bob := a.token("acme", "bob", "user")
	tok := hexToken("alice-phone")
	dev := map[string]string{"platform": "ios", "token": tok, "app": "demo", "environment": "sandbox"}
	a.must(200, "PUT", "/v1/devices/phone", alice, dev)

	// Bob without proof: refused; alice's phone gets the code, silently.
	code, body := a.do("PUT", "/v1/devices/handset", bob, dev)
	if code != 409 || !strings.Contains(string(body), api.CodeTokenProofRequired) {
		t.Fatalf("bob without proof: %d %s", code, body)
	}
	var push *relaytest.Push
	waitFor(t, 20*time.Second, func() error {
		for _, p := range h.APNs.Pushes() {
			if p.Token == tok && p.Data()[relay.DataTokenProof] != "" {
				push = &p
				return nil
			}
		}
		return fmt.Errorf("no token proof push to alice's phone")
	})
	aps, _ := push.Payload["aps"].(map[string]any)
	if push.PushType() != "background" || aps["alert"] != nil || aps["content-available"] != float64(1) ||
		push.Data()["withdraw"] != "" || push.Data()["device_id"] != "handset" {
		t.Fatalf("proof push is not a silent token proof: %s %v", push.String(), push.Payload)
	}
	var list api.DeviceList
	json.Unmarshal(a.must(200, "GET", "/v1/devices", alice, nil), &list)
	if len(list.Devices) != 1 || list.Devices[0].Token != tok {
		t.Fatalf("alice lost her token without proof: %+v", list)
	}

	// With the code: moved; alice sees it, the log names both users.
	proven := map[string]string{"platform": "ios", "token": tok, "app": "demo", "environment": "sandbox", "proof": push.Data()[relay.DataTokenProof]}
	a.must(200, "PUT", "/v1/devices/handset", bob, proven)
	list = api.DeviceList{}
	json.Unmarshal(a.must(200, "GET", "/v1/devices", alice, nil), &list)
	if len(list.Devices) != 0 || len(list.Moved) != 1 || list.Moved[0].DeviceID != "phone" {
		t.Fatalf("alice after the move: %+v", list)
	}
	waitFor(t, 5*time.Second, func() error {
		for _, line := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(line, "device token moved to another user") && strings.Contains(line, "from_user=alice") && strings.Contains(line, "user=bob") {
				return nil
			}
		}
		return fmt.Errorf("no move logged with both users")
	})
	if logs := h.logs.String(); strings.Contains(logs, tok) || strings.Contains(logs, push.Data()[relay.DataTokenProof]) {
		t.Fatal("the token or the code reached relayd's log")
	}
	// Alerts for bob now go to the phone; the code does not work twice.
	if code, body := a.do("PUT", "/v1/devices/phone", alice, proven); code != 409 || !strings.Contains(string(body), api.CodeTokenProofInvalid) {
		t.Fatalf("alice replaying bob's code: %d %s", code, body)
	}
}
