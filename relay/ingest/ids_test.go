package ingest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// jsonString encodes s as a JSON string; invalid UTF-8 is written raw (a
// JSON encoder would replace it) so the decoder sees it.
func jsonString(s string) string {
	if !utf8.ValidString(s) {
		return `"` + s + `"`
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// escapeID percent-encodes an id as one path segment ("." and ".." byte by
// byte, so they are not dot segments).
func escapeID(id string) string {
	if strings.Trim(id, ".") == "" {
		return strings.Repeat("%2E", len(id))
	}
	return url.PathEscape(id)
}

// TestIDGrammar runs the id grammar's table (relaytest.IDForms) through
// every place the socket takes an id: an event's id, workspace and user,
// GET /v1/events/{workspace}/{id} and the admin device paths.
func TestIDGrammar(t *testing.T) {
	ts := startServer(t, nil)
	for i, tc := range relaytest.IDForms {
		t.Run(tc.Name, func(t *testing.T) {
			for _, field := range []string{"id", "workspace", "user"} {
				f := map[string]string{"id": fmt.Sprintf("e%d", i), "workspace": "acme", "user": "u"}
				f[field] = tc.ID
				body := fmt.Sprintf(`{"id":%s,"workspace":%s,"user":%s,"type":"otp_received"}`,
					jsonString(f["id"]), jsonString(f["workspace"]), jsonString(f["user"]))
				r := postJSON(t, ts, body)
				if !tc.OK {
					// Invalid UTF-8 is refused by the JSON decoder first.
					var e ErrorBody
					json.Unmarshal(r.body, &e)
					want, reason := fmt.Sprintf("field %q: ", field), tc.Reason
					if !utf8.ValidString(tc.ID) {
						reason = "invalid UTF-8"
					}
					if r.status != http.StatusBadRequest || !strings.Contains(e.Error.Message, want) || !strings.Contains(e.Error.Message, reason) {
						t.Fatalf("%s %q: status %d body %s, want 400 naming %q", field, tc.ID, r.status, r.body, want)
					}
					continue
				}
				if got := results(t, r); len(got) != 1 || got[0].Status != StatusAccepted {
					t.Fatalf("%s %q: results %+v", field, tc.ID, got)
				}
				// The stored event is addressed by percent-encoding.
				g := ts.do(t, http.MethodGet, "/v1/events/"+escapeID(f["workspace"])+"/"+escapeID(f["id"]), "", nil)
				var st EventStatus
				g.decode(t, &st)
				if g.status != http.StatusOK || st.ID != f["id"] || st.Workspace != f["workspace"] || st.User != f["user"] {
					t.Fatalf("GET event: %d %+v", g.status, st)
				}
			}
			if tc.ID == "" { // no path segment: another route
				return
			}
			path := "/v1/workspaces/" + escapeID(tc.ID) + "/users/" + escapeID(tc.ID) + "/devices/" + escapeID(tc.ID)
			r := ts.do(t, http.MethodPut, path, MediaTypeJSON, []byte(fmt.Sprintf(`{"platform":"android","token":"t%d","app":"demo"}`, i)))
			if !tc.OK {
				r.wantError(t, http.StatusBadRequest, CodeBadRequest, "")
				var e ErrorBody
				json.Unmarshal(r.body, &e)
				if !strings.Contains(e.Error.Message, tc.Reason) {
					t.Fatalf("PUT device: %s does not name %q", r.body, tc.Reason)
				}
				return
			}
			var d relay.Device
			r.decode(t, &d)
			if r.status != http.StatusOK || d.Workspace != tc.ID || d.User != tc.ID || d.ID != tc.ID {
				t.Fatalf("PUT device: %d %+v", r.status, d)
			}
		})
	}
}

// TestInternalIDReadable: GET /v1/events accepts an internal id (a
// withdraw push is inspected like any event), while upstream cannot post
// one.
func TestInternalIDReadable(t *testing.T) {
	ts := startServer(t, nil)
	id := relay.WithdrawID("evt-1")
	r := ts.do(t, http.MethodGet, "/v1/events/acme/"+url.PathEscape(id), "", nil)
	r.wantError(t, http.StatusNotFound, CodeNotFound, "")
	r = postJSON(t, ts, fmt.Sprintf(`{"id":%q,"workspace":"acme","user":"u","type":"otp_received"}`, id))
	r.wantError(t, http.StatusBadRequest, CodeBadRequest, "")
}
