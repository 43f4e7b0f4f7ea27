// End-to-end tests of issue 10's push-bombing guard and answerability:
// the shipped push_bombing_guard through relayd, with both fakes.

package daemon_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

const guardReason = "push_bombing_guard"

// installGuard copies the shipped push_bombing_guard (make policies) into
// the relay's plugin directory; max = 5 prompts per 10 minutes.
func installGuard(t *testing.T) func(h *harness) {
	t.Helper()
	wasm, err := os.ReadFile("../../build/policies/push_bombing_guard.wasm")
	if err != nil {
		t.Skipf("build the shipped policies first (make policies): %v", err)
	}
	manifest, err := os.ReadFile("../../build/policies/push_bombing_guard.hcl")
	if err != nil {
		t.Fatal(err)
	}
	return func(h *harness) {
		writeFile(t, filepath.Join(h.dir, "plugins", "push_bombing_guard.hcl"), manifest)
		writeFile(t, filepath.Join(h.dir, "plugins", "push_bombing_guard.wasm"), wasm)
	}
}

// guardWarningID is the id of the warning the guard asks for on event id.
func guardWarningID(id string) string { return relay.NoticeID(id, "push_bombing_guard") }

// TestPushBombingGuard: 8 prompts for one user in one NDJSON batch, and 8
// posted one by one for another, each give exactly 5 delivered prompts;
// the other 3 are suppressed with the guard's reason; the user gets
// exactly one warning, on both phones, with no actions; nothing of it can
// be answered; after a restart within the window the count goes on.
func TestPushBombingGuard(t *testing.T) {
	h, a := startWithAPIAfter(t, "", installGuard(t))
	defer h.stop(syscall.SIGTERM)
	const n, max = 8, 5
	tokens := map[string]string{}
	for _, user := range []string{"alice", "bob"} {
		tok := a.token("acme", user, "user")
		tokens[user] = tok
		a.must(200, "PUT", "/v1/devices/phone", tok, map[string]string{"platform": "ios", "token": hexToken(user + "-phone"), "app": "demo", "environment": "sandbox"})
		a.must(200, "PUT", "/v1/devices/pixel", tok, map[string]string{"platform": "android", "token": hexToken(user + "-pixel"), "app": "demo"})
	}
	prompt := func(user, id string) map[string]any {
		return map[string]any{"id": id, "workspace": "acme", "user": user, "type": "identity_verification",
			"title": "Confirm sign-in " + id, "body": "Firefox in Berlin", "actions": []string{"approve", "deny"}}
	}
	// alice: one batch; bob: one by one.
	var batch []map[string]any
	for i := range n {
		batch = append(batch, prompt("alice", fmt.Sprintf("a-%d", i)))
	}
	for _, r := range h.post(batch...) {
		if r.Status != "accepted" {
			t.Fatalf("batch: %+v", r)
		}
	}
	for i := range n {
		if r := h.post(prompt("bob", fmt.Sprintf("b-%d", i))); r[0].Status != "accepted" {
			t.Fatalf("post: %+v", r)
		}
	}

	check := func(user, prefix string, count int) {
		t.Helper()
		for i := range count {
			id := fmt.Sprintf("%s-%d", prefix, i)
			waitFor(t, 20*time.Second, func() error { return h.settled("acme", id) })
			v, _ := h.event("acme", id)
			if i < max {
				if v.Decision.Verdict != "deliver" || len(v.Deliveries) != 2 || v.Deliveries[0].State != "delivered" || v.Deliveries[1].State != "delivered" {
					t.Errorf("%s (prompt %d): want delivered to both phones, got %+v %+v", id, i+1, v.Decision, v.Deliveries)
				}
			} else if v.Decision.Verdict != "suppress" || v.Decision.Reason != guardReason {
				t.Errorf("%s (prompt %d): want suppressed by the guard, got %+v", id, i+1, v.Decision)
			}
			// Only the first prompt over the limit asks for the warning.
			w, code := h.event("acme", guardWarningID(id))
			if i == max {
				waitFor(t, 20*time.Second, func() error { return h.settled("acme", guardWarningID(id)) })
				w, _ = h.event("acme", guardWarningID(id))
				if len(w.Deliveries) != 2 || w.Deliveries[0].State != "delivered" || w.Deliveries[1].State != "delivered" {
					t.Errorf("%s's warning: %d %+v", id, code, w)
				}
			} else if code != 404 {
				t.Errorf("%s: a warning event %+v (status %d)", id, w, code)
			}
			// Nothing but the delivered prompts can be answered.
			code, body := a.do("POST", "/v1/events/"+id+"/actions", tokens[user], map[string]string{"action": "approve", "device_id": "phone"})
			if i < max && code != 200 || i >= max && (code != 409 || !strings.Contains(string(body), `"code":"not_delivered"`)) {
				t.Errorf("answer %s (prompt %d): %d %s", id, i+1, code, body)
			}
		}
	}
	check("alice", "a", n)
	check("bob", "b", n)
	warning := guardWarningID("a-5")
	if code, body := a.do("POST", "/v1/events/"+url.PathEscape(warning)+"/actions", tokens["alice"], map[string]string{"action": "approve", "device_id": "phone"}); code != 400 {
		t.Fatalf("answering the warning: %d %s, want 400", code, body)
	}

	// At the fakes: per user exactly 5 prompts and one warning on each
	// platform, and the warning carries no actions and no category.
	pushes := map[string][]relaytest.Push{"apns": h.APNs.Pushes(), "fcm": h.FCM.Pushes()}
	for _, user := range []string{"alice", "bob"} {
		for provider, ps := range pushes {
			token := hexToken(user + "-phone")
			if provider == "fcm" {
				token = hexToken(user + "-pixel")
			}
			prompts, warnings := 0, 0
			for _, p := range ps {
				if p.Token != token || p.Status != 200 {
					continue
				}
				switch {
				case strings.HasPrefix(p.Title(), "Confirm sign-in"):
					prompts++
				case p.Title() == "Repeated sign-in requests blocked":
					warnings++
					if p.Category() != "" || p.Data()["actions"] != "" || p.PushType() == "data" {
						t.Errorf("%s warning to %s is actionable: %s", provider, user, p.String())
					}
				}
			}
			if prompts != max || warnings != 1 {
				t.Errorf("%s to %s: %d prompts and %d warnings, want %d and 1", provider, user, prompts, warnings, max)
			}
		}
	}

	// A restart within the window: the counts are in the store.
	h.stop(syscall.SIGTERM)
	h.start()
	if r := h.post(prompt("alice", "a-after")); r[0].Status != "accepted" {
		t.Fatalf("post: %+v", r)
	}
	waitFor(t, 20*time.Second, func() error { return h.settled("acme", "a-after") })
	if v, _ := h.event("acme", "a-after"); v.Decision.Verdict != "suppress" || v.Decision.Reason != guardReason {
		t.Fatalf("the 9th prompt after a restart: %+v, want suppressed by the guard", v.Decision)
	}
	if _, code := h.event("acme", guardWarningID("a-after")); code != 404 {
		t.Fatalf("a second warning after the restart (status %d)", code)
	}
}

// withdrawPushes returns the withdraw pushes of event id that reached
// token, by provider.
func withdrawPushes(h *harness, id string, token string) []relaytest.Push {
	var out []relaytest.Push
	for _, ps := range [][]relaytest.Push{h.APNs.Pushes(), h.FCM.Pushes()} {
		for _, p := range ps {
			if p.Token == token && p.Status == 200 && p.Data()["withdraw"] == "true" && p.Data()["event_id"] == id {
				out = append(out, p)
			}
		}
	}
	return out
}

// promptPush returns the prompt push of event id to token.
func promptPush(h *harness, id, token string) (relaytest.Push, bool) {
	for _, ps := range [][]relaytest.Push{h.APNs.Pushes(), h.FCM.Pushes()} {
		for _, p := range ps {
			if p.Token == token && p.Status == 200 && p.Data()["withdraw"] != "true" && p.Data()["event_id"] == id {
				return p, true
			}
		}
	}
	return relaytest.Push{}, false
}

// TestCancelAndExpiryWithdraw: the upstream cancels a delivered prompt
// through the socket: both phones get the withdraw push with the prompt's
// collapse id and a later answer is refused (409 cancelled). A prompt that
// expires unanswered is withdrawn from both phones; one answered before
// its expiry gets no second withdraw.
func TestCancelAndExpiryWithdraw(t *testing.T) {
	h, a := startWithAPI(t)
	defer h.stop(syscall.SIGTERM)
	alice := a.token("acme", "alice", "user")
	phone, pixel := hexToken("alice-phone"), hexToken("alice-pixel")
	a.must(200, "PUT", "/v1/devices/phone", alice, map[string]string{"platform": "ios", "token": phone, "app": "demo", "environment": "sandbox"})
	a.must(200, "PUT", "/v1/devices/pixel", alice, map[string]string{"platform": "android", "token": pixel, "app": "demo"})

	// Two short-lived prompts first, so their expiry overlaps the cancel.
	expires := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339Nano)
	short := func(id string) map[string]any {
		e := h.mfaEvent(id)
		e["expires_at"] = expires
		return e
	}
	if r := h.post(h.mfaEvent("c-1"), short("x-1"), short("x-2")); r[0].Status != "accepted" || r[1].Status != "accepted" || r[2].Status != "accepted" {
		t.Fatalf("post: %+v", r)
	}
	for _, id := range []string{"c-1", "x-1", "x-2"} {
		waitFor(t, 10*time.Second, func() error { return h.settled("acme", id) })
	}
	a.must(200, "POST", "/v1/events/x-2/actions", alice, map[string]string{"action": "approve", "device_id": "phone"})

	// Cancel.
	code, body := h.do("DELETE", "/v1/events/acme/c-1", "", nil)
	if code != 200 || !strings.Contains(string(body), `"status":"cancelled"`) || !strings.Contains(string(body), `"withdrawn":["phone","pixel"]`) {
		t.Fatalf("cancel: %d %s", code, body)
	}
	for _, tok := range []string{phone, pixel} {
		waitFor(t, 10*time.Second, func() error {
			ws := withdrawPushes(h, "c-1", tok)
			if len(ws) == 0 {
				return fmt.Errorf("no withdraw push of c-1 to %s", tok[:8])
			}
			p, ok := promptPush(h, "c-1", tok)
			if !ok || ws[0].CollapseID() != p.CollapseID() || ws[0].Data()["reason"] != "cancelled" {
				t.Fatalf("withdraw %s does not replace the prompt %s", ws[0].String(), p.String())
			}
			return nil
		})
	}
	if code, body := a.do("POST", "/v1/events/c-1/actions", alice, map[string]string{"action": "approve", "device_id": "phone"}); code != 409 || !strings.Contains(string(body), `"code":"cancelled"`) {
		t.Fatalf("answer after cancel: %d %s", code, body)
	}
	if code, body := h.do("DELETE", "/v1/events/acme/c-1", "", nil); code != 200 || !strings.Contains(string(body), `"withdrawn":[]`) {
		t.Fatalf("second cancel: %d %s", code, body)
	}
	if code, body := h.do("DELETE", "/v1/events/acme/x-2", "", nil); code != 409 || !strings.Contains(string(body), "already_answered") {
		t.Fatalf("cancel of an answered prompt: %d %s", code, body)
	}
	if code, _ := h.do("DELETE", "/v1/events/acme/nope", "", nil); code != 404 {
		t.Fatalf("cancel of an unknown event: %d", code)
	}

	// A prompt not sent yet (APNs answers 429 TooManyRequests for
	// carol's phone, a per-token wait) is dropped when cancelled: it
	// never reaches the phone.
	carol := a.token("acme", "carol", "user")
	carolTok := hexToken("carol-phone")
	h.APNs.Script(carolTok, relaytest.Rule{Reason: "TooManyRequests"})
	a.must(200, "PUT", "/v1/devices/phone", carol, map[string]string{"platform": "ios", "token": carolTok, "app": "demo", "environment": "sandbox"})
	c2 := h.mfaEvent("c-2")
	c2["user"] = "carol"
	if r := h.post(c2); r[0].Status != "accepted" {
		t.Fatalf("post: %+v", r)
	}
	waitFor(t, 10*time.Second, func() error {
		if v, _ := h.event("acme", "c-2"); len(v.Deliveries) != 1 || v.Deliveries[0].Attempts == 0 {
			return fmt.Errorf("c-2 not tried yet: %+v", v.Deliveries)
		}
		return nil
	})
	if code, body := h.do("DELETE", "/v1/events/acme/c-2", "", nil); code != 200 {
		t.Fatalf("cancel c-2: %d %s", code, body)
	}
	h.APNs.ClearScript()
	waitFor(t, 10*time.Second, func() error { return h.settled("acme", "c-2") })
	if v, _ := h.event("acme", "c-2"); v.Deliveries[0].State != "expired" || !strings.Contains(v.Deliveries[0].LastError, "cancelled") {
		t.Fatalf("c-2 after cancel: %+v", v.Deliveries)
	}
	if p, ok := promptPush(h, "c-2", carolTok); ok {
		t.Fatalf("a cancelled prompt reached the phone: %s", p.String())
	}

	// Expiry: x-1 is withdrawn from both phones once it expires.
	for _, tok := range []string{phone, pixel} {
		waitFor(t, 10*time.Second, func() error {
			for _, w := range withdrawPushes(h, "x-1", tok) {
				if w.Data()["reason"] == "expired" {
					return nil
				}
			}
			return fmt.Errorf("no expiry withdraw of x-1 to %s", tok[:8])
		})
	}
	if code, body := a.do("POST", "/v1/events/x-1/actions", alice, map[string]string{"action": "approve", "device_id": "pixel"}); code != 409 || !strings.Contains(string(body), `"code":"expired"`) {
		t.Fatalf("answer after expiry: %d %s", code, body)
	}
	// x-2 was answered: its expiry withdraw is dropped, the answer's went
	// to the pixel only.
	// A job ends once its alert's expiry withdraw was sent or dropped:
	// x-1's and x-2's did; c-1's two wait for c-1's expiry (minutes).
	waitFor(t, 10*time.Second, func() error {
		if open, _ := h.queueState(); open != 2 {
			return fmt.Errorf("%d jobs open, want c-1's 2", open)
		}
		return nil
	})
	if v, _ := h.event("acme", "x-2"); len(v.Deliveries) != 2 || v.Deliveries[0].State != "delivered" || v.Deliveries[1].State != "delivered" {
		t.Fatalf("x-2's deliveries: %+v", v)
	}
	if ws := withdrawPushes(h, "x-2", phone); len(ws) != 0 {
		t.Fatalf("the answering phone got withdraw pushes: %v", ws)
	}
	if ws := withdrawPushes(h, "x-2", pixel); len(ws) != 1 || ws[0].Data()["reason"] != "" {
		t.Fatalf("x-2 withdraws to the pixel: %v", ws)
	}
}
