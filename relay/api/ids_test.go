package api

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// escapeID percent-encodes an id as one path segment. "." and ".." are
// encoded byte by byte so the client does not treat them as dot segments.
func escapeID(id string) string {
	if strings.Trim(id, ".") == "" {
		return strings.Repeat("%2E", len(id))
	}
	return url.PathEscape(id)
}

// TestIDGrammar runs the id grammar's table (relaytest.IDForms) through
// every place the app API takes an id: the sub and ws claims, the device
// id path, the event id path and the device_id of an answer.
func TestIDGrammar(t *testing.T) {
	ts := startServer(t, nil)
	for i, tc := range relaytest.IDForms {
		t.Run(tc.Name, func(t *testing.T) {
			user := fmt.Sprintf("u%d", i)
			tok := ts.token("acme", user, RoleUser)
			// Claims travel as JSON, which cannot carry invalid UTF-8.
			if utf8.ValidString(tc.ID) {
				for _, claim := range []string{"sub", "ws"} {
					ws, sub := "acme", tc.ID
					if claim == "ws" {
						ws, sub = tc.ID, user
					}
					r := ts.do("GET", "/v1/devices", ts.token(ws, sub, RoleUser), nil)
					if tc.OK {
						expect(t, r, 200, "")
					} else {
						expect(t, r, 401, CodeUnauthorized)
					}
				}
			}

			if tc.ID == "" { // no path segment: another route
				r := ts.do("POST", "/v1/events/e/actions", tok, map[string]string{"action": "approve", "device_id": ""})
				expect(t, r, 400, CodeBadRequest)
				return
			}
			r := ts.do("PUT", "/v1/devices/"+escapeID(tc.ID), tok,
				map[string]string{"platform": "ios", "token": fmt.Sprintf("tok-%d", i), "app": "demo"})
			if !tc.OK {
				expect(t, r, 400, CodeBadRequest)
				if !strings.Contains(r.errMessage(), tc.Reason) {
					t.Fatalf("PUT device: message %q does not name %q", r.errMessage(), tc.Reason)
				}
				r = ts.do("POST", "/v1/events/"+escapeID(tc.ID)+"/actions", tok, map[string]string{"action": "approve", "device_id": "d"})
				expect(t, r, 400, CodeBadRequest)
				if !strings.Contains(r.errMessage(), tc.Reason) {
					t.Fatalf("POST action: message %q does not name %q", r.errMessage(), tc.Reason)
				}
				return
			}
			expect(t, r, 200, "")
			if !strings.Contains(string(r.body), `"device_id":`) || ts.do("GET", "/v1/devices/"+escapeID(tc.ID), tok, nil).status != 200 {
				t.Fatalf("device %q not readable back: %s", tc.ID, r.body)
			}
			// An event with this id is answerable, from the device with
			// this id.
			ts.addEvent("acme", tc.ID, user, time.Minute, tc.ID)
			r = ts.do("POST", "/v1/events/"+escapeID(tc.ID)+"/actions", tok, map[string]string{"action": "approve", "device_id": tc.ID})
			expect(t, r, 200, "")
			var res ActionResult
			if err := json.Unmarshal(r.body, &res); err != nil {
				t.Fatal(err)
			}
			if res.EventID != tc.ID {
				t.Fatalf("answered event %q, want %q", res.EventID, tc.ID)
			}
		})
	}
}
