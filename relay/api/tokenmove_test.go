package api

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
)

// proofBox records the codes the server asks to send.
type proofBox struct {
	mu   sync.Mutex
	sent []sentProof
	fail error
}

type sentProof struct {
	holder relay.Device
	code   string
	proof  relay.TokenProof
}

func (b *proofBox) send(_ context.Context, holder relay.Device, code string, p relay.TokenProof) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	b.sent = append(b.sent, sentProof{holder, code, p})
	return nil
}

func (b *proofBox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sent)
}

func (b *proofBox) last(t *testing.T) sentProof {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sent) == 0 {
		t.Fatal("no proof sent")
	}
	return b.sent[len(b.sent)-1]
}

func deviceBody(token, proof string) map[string]string {
	m := map[string]string{"platform": "ios", "token": token, "app": "demo"}
	if proof != "" {
		m["proof"] = proof
	}
	return m
}

func listDevices(t *testing.T, ts *testServer, tok string) DeviceList {
	t.Helper()
	r := ts.do("GET", "/v1/devices", tok, nil)
	expect(t, r, 200, "")
	var l DeviceList
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestTokenMoveNeedsProof is issue 10's "a colleague can take your
// phone's pushes": bob registering alice's token is refused until bob's
// app echoes the one-time code sent to that token; then alice's device is
// removed, the move is logged with both users (never the token), and
// alice's app sees it on GET /v1/devices.
func TestTokenMoveNeedsProof(t *testing.T) {
	box := &proofBox{}
	var mu sync.Mutex
	var logs strings.Builder
	ts := startServer(t, func(o *Options) {
		o.SendTokenProof = box.send
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: lockedWriter{&mu, &logs}, Level: hclog.Info})
	})
	const token = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2"
	alice := ts.token("acme", "alice", RoleUser)
	bob := ts.token("acme", "bob", RoleUser)
	expect(t, ts.do("PUT", "/v1/devices/phone", alice, deviceBody(token, "")), 200, "")

	// Without proof: refused, alice keeps the token, a code goes to it.
	r := ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, ""))
	expect(t, r, 409, CodeTokenProofRequired)
	sent := box.last(t)
	if sent.holder.User != "alice" || sent.holder.ID != "phone" || sent.holder.Token != token || sent.code == "" ||
		sent.proof.User != "bob" || sent.proof.DeviceID != "bphone" || sent.proof.Workspace != "acme" {
		t.Fatalf("proof sent %+v", sent)
	}
	if strings.Contains(sent.proof.CodeHash, sent.code) || sent.proof.TokenHash == token {
		t.Fatal("the stored proof holds the code or the token in clear")
	}
	if l := listDevices(t, ts, alice); len(l.Devices) != 1 || l.Devices[0].Token != token || len(l.Moved) != 0 {
		t.Fatalf("alice after the refused move: %+v", l)
	}
	if l := listDevices(t, ts, bob); len(l.Devices) != 0 {
		t.Fatalf("bob after the refused move: %+v", l)
	}
	// Asking again while the code is valid sends nothing more.
	expect(t, ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, "")), 409, CodeTokenProofRequired)
	// So does asking under another device id: one push per token while
	// its code is valid.
	r = ts.do("PUT", "/v1/devices/other", bob, deviceBody(token, ""))
	expect(t, r, 409, CodeTokenProofRequired)
	if !strings.Contains(r.errMessage(), `device id "bphone"`) {
		t.Fatalf("message %q does not name the device id the code is for", r.errMessage())
	}
	if n := box.count(); n != 1 {
		t.Fatalf("%d proofs sent, want 1 while one is pending", n)
	}

	// A wrong code uses the pending one up.
	r = ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, "WRONGCODE"))
	expect(t, r, 409, CodeTokenProofInvalid)
	if !strings.Contains(r.errMessage(), "wrong") {
		t.Fatalf("message %q", r.errMessage())
	}
	r = ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, sent.code))
	expect(t, r, 409, CodeTokenProofInvalid)
	if !strings.Contains(r.errMessage(), "no code is pending") {
		t.Fatalf("message %q", r.errMessage())
	}

	// A code is bound to its device id.
	expect(t, ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, "")), 409, CodeTokenProofRequired)
	r = ts.do("PUT", "/v1/devices/other", bob, deviceBody(token, box.last(t).code))
	expect(t, r, 409, CodeTokenProofInvalid)

	// A code expires.
	expect(t, ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, "")), 409, CodeTokenProofRequired)
	ts.clock.Add(TokenProofTTL)
	r = ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, box.last(t).code))
	expect(t, r, 409, CodeTokenProofInvalid)
	if !strings.Contains(r.errMessage(), "expired") {
		t.Fatalf("message %q", r.errMessage())
	}
	if l := listDevices(t, ts, alice); len(l.Devices) != 1 {
		t.Fatalf("alice lost the token without proof: %+v", l)
	}

	// The right code, in time, for this token and device id: moved.
	expect(t, ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, "")), 409, CodeTokenProofRequired)
	code := box.last(t).code
	expect(t, ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, code)), 200, "")
	if l := listDevices(t, ts, bob); len(l.Devices) != 1 || l.Devices[0].ID != "bphone" || l.Devices[0].Token != token {
		t.Fatalf("bob after the move: %+v", l)
	}
	l := listDevices(t, ts, alice)
	if len(l.Devices) != 0 || len(l.Moved) != 1 || l.Moved[0].DeviceID != "phone" || !l.Moved[0].MovedAt.Equal(ts.clock.Now()) {
		t.Fatalf("alice after the move: %+v", l)
	}
	// The code was used: it does not work twice.
	expect(t, ts.do("PUT", "/v1/devices/bphone", bob, deviceBody(token, code)), 200, "") // bob's own now: no proof needed
	expect(t, ts.do("PUT", "/v1/devices/phone", alice, deviceBody(token, code)), 409, CodeTokenProofInvalid)

	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "device token moved to another user") || !strings.Contains(out, "from_user=alice") ||
		!strings.Contains(out, "user=bob") || !strings.Contains(out, "from_device=phone") {
		t.Fatalf("move not logged with both users:\n%s", out)
	}
	if strings.Contains(out, token) || strings.Contains(out, code) {
		t.Fatalf("the token or the code reached the logs:\n%s", out)
	}
}

// TestTokenSameUserNoProof: a token refresh and a device id change within
// one user need no proof and send nothing.
func TestTokenSameUserNoProof(t *testing.T) {
	box := &proofBox{}
	ts := startServer(t, func(o *Options) { o.SendTokenProof = box.send })
	alice := ts.token("acme", "alice", RoleUser)
	expect(t, ts.do("PUT", "/v1/devices/phone", alice, deviceBody("tok-1", "")), 200, "")
	expect(t, ts.do("PUT", "/v1/devices/phone", alice, deviceBody("tok-2", "")), 200, "")
	expect(t, ts.do("PUT", "/v1/devices/phone-2", alice, deviceBody("tok-2", "")), 200, "")
	l := listDevices(t, ts, alice)
	if len(l.Devices) != 1 || l.Devices[0].ID != "phone-2" || len(l.Moved) != 0 || box.count() != 0 {
		t.Fatalf("devices %+v, %d proofs sent", l, box.count())
	}
	// A failed send answers 503 and leaves no pending code: the next
	// request sends one.
	box.mu.Lock()
	box.fail = errors.New("queue full")
	box.mu.Unlock()
	bob := ts.token("acme", "bob", RoleUser)
	expect(t, ts.do("PUT", "/v1/devices/b", bob, deviceBody("tok-2", "")), 503, CodeUnavailable)
	box.mu.Lock()
	box.fail = nil
	box.mu.Unlock()
	expect(t, ts.do("PUT", "/v1/devices/b", bob, deviceBody("tok-2", "")), 409, CodeTokenProofRequired)
	if box.count() != 1 {
		t.Fatalf("%d proofs sent after a failed send, want 1", box.count())
	}
	// Without a sender, another user's token is simply refused.
	ts2 := startServer(t, nil)
	expect(t, ts2.do("PUT", "/v1/devices/phone", ts2.token("acme", "alice", RoleUser), deviceBody("tok-1", "")), 200, "")
	expect(t, ts2.do("PUT", "/v1/devices/x", ts2.token("acme", "bob", RoleUser), deviceBody("tok-1", "")), 409, CodeTokenProofRequired)
}
