package api

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// addContentEvent stores a delivered otp_received event for user with
// content in title, body, data and presentation fields.
func (ts *testServer) addContentEvent(ws, id, user string, ttl time.Duration, verdict relay.Verdict) {
	ts.tb.Helper()
	ctx := context.Background()
	ev := relay.Event{ID: id, Workspace: ws, User: user, Type: relay.TypeOTPReceived,
		Title: "Code for GitHub", Body: "Your code is 123456", ExpiresAt: ts.clock.Now().Add(ttl)}
	errs, err := ts.st.AddEvents(ctx, []relay.Event{ev}, ts.clock.Now())
	if err != nil || errs[0] != nil {
		ts.tb.Fatalf("add event: %v %v", err, errs)
	}
	var alert *relay.Alert
	if verdict == relay.VerdictDeliver {
		alert = &relay.Alert{EventID: id, Workspace: ws, Type: ev.Type, Title: ev.Title, Body: ev.Body,
			Data: map[string]string{"otp": "123456"}, Sound: "chime", ThreadID: "github", Category: "OTP",
			CollapseID: "c-" + id, ExpiresAt: ev.ExpiresAt}
	}
	if err := ts.st.Decide(ctx, ev.Key(), relay.Decision{Verdict: verdict, Reason: relay.ReasonEnforced}, alert, nil); err != nil {
		ts.tb.Fatal(err)
	}
}

// TestEventContent: GET /v1/events/{id} gives the recipient the rendered
// content before expiry, and nobody else, and nothing after.
func TestEventContent(t *testing.T) {
	ts := startServer(t, nil)
	ts.addContentEvent("acme", "evt-c", "alice", time.Minute, relay.VerdictDeliver)
	ts.addContentEvent("acme", "evt-s", "alice", time.Minute, relay.VerdictSuppress)
	ts.addContentEvent("globex", "evt-g", "alice", time.Minute, relay.VerdictDeliver)
	alice := ts.token("acme", "alice", RoleUser)

	r := ts.do("GET", "/v1/events/evt-c", alice, nil)
	expect(t, r, 200, "")
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var got EventContent
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := EventContent{EventID: "evt-c", Type: relay.TypeOTPReceived, Title: "Code for GitHub", Body: "Your code is 123456",
		Data: map[string]string{"otp": "123456"}, Category: "OTP", Sound: "chime", ThreadID: "github", Actions: []string{},
		ExpiresAt: ts.clock.Now().Add(time.Minute)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("content %+v\nwant %+v", got, want)
	}

	// Another user of the workspace, even an admin: as if absent.
	expect(t, ts.do("GET", "/v1/events/evt-c", ts.token("acme", "bob", RoleAdmin), nil), 404, CodeNotFound)
	// The same user id in another workspace sees only that workspace.
	expect(t, ts.do("GET", "/v1/events/evt-c", ts.token("globex", "alice", RoleUser), nil), 404, CodeNotFound)
	expect(t, ts.do("GET", "/v1/events/evt-g", alice, nil), 404, CodeNotFound)
	expect(t, ts.do("GET", "/v1/events/nope", alice, nil), 404, CodeNotFound)
	// A suppressed event was never delivered: no content to fetch.
	expect(t, ts.do("GET", "/v1/events/evt-s", alice, nil), 409, CodeNotDelivered)
	// No token, bad id.
	expect(t, ts.do("GET", "/v1/events/evt-c", "", nil), 401, CodeUnauthorized)
	expect(t, ts.do("GET", "/v1/events/a%0Ab", alice, nil), 400, CodeBadRequest)

	// At expiry the content is gone.
	ts.clock.Add(time.Minute)
	r = ts.do("GET", "/v1/events/evt-c", alice, nil)
	expect(t, r, 404, CodeExpired)
	if strings.Contains(string(r.body), "123456") || !strings.Contains(r.errMessage(), "expired at") {
		t.Fatalf("expired answer: %s", r.body)
	}
}
