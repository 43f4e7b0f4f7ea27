package apns_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/delivery/apns"
)

// payloadMaps is how Payload built its body before it was written by
// hand: maps marshalled by encoding/json. Payload must give the same bytes.
func payloadMaps(a *relay.Alert) []byte {
	aps := map[string]any{}
	if a.Silent {
		aps["content-available"] = 1
	} else {
		alert := map[string]string{}
		if a.Title != "" {
			alert["title"] = a.Title
		}
		if a.Body != "" {
			alert["body"] = a.Body
		}
		aps["alert"] = alert
		if a.Sound != "" {
			aps["sound"] = a.Sound
		}
		if a.Category != "" {
			aps["category"] = a.Category
		}
		switch a.InterruptionLevel {
		case "passive", "active", "time-sensitive", "critical":
			aps["interruption-level"] = a.InterruptionLevel
		}
		if a.MutableContent || a.Category != "" || len(a.Actions) > 0 || len(a.Data) > 0 {
			aps["mutable-content"] = 1
		}
		if a.ThreadID != "" {
			aps["thread-id"] = a.ThreadID
		}
	}
	root := map[string]any{}
	for k, v := range a.Data {
		root[k] = v
	}
	root["aps"] = aps
	root["event_id"] = a.EventID
	root["type"] = a.Type
	if !a.ExpiresAt.IsZero() {
		root["expires_at"] = a.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if a.Silent && a.Data[relay.DataTokenProof] == "" {
		root["withdraw"] = "true"
	}
	b, err := json.Marshal(root)
	if err != nil {
		panic(err)
	}
	return b
}

func payloadCases() []*relay.Alert {
	exp := time.Date(2026, 12, 6, 9, 0, 0, 0, time.FixedZone("x", 3600))
	return []*relay.Alert{
		{EventID: "e-1", Type: relay.TypeIdentityVerification, Title: "Sign-in", Body: "Approve sign-in from 203.0.113.9?", Category: "APPROVE_DENY",
			InterruptionLevel: "time-sensitive", Actions: []string{"approve", "deny"}, ExpiresAt: exp},
		{EventID: "e-2", Type: "t", Title: "only a title", Sound: "default", ThreadID: "th", MutableContent: true},
		{EventID: "e-3", Type: "t", Body: "only a body", InterruptionLevel: "bogus"},
		{EventID: "e-4", Type: "t"},
		{EventID: "e-5", Type: "t", Silent: true, Data: map[string]string{"action": "expired", "reason": "expired", "withdraw": "no"}, ExpiresAt: exp},
		{EventID: "e-6", Type: "t", Silent: true, Data: map[string]string{relay.DataTokenProof: "p", "withdraw": "kept"}},
		{EventID: "e-7", Type: "t", Title: "x", Data: map[string]string{"aps": "dropped", "event_id": "no", "type": "no", "expires_at": "kept: no expiry",
			"a": "1", "zz": "2", "Z": "3", "": "empty key"}},
		{EventID: "e-8", Type: "t", Title: "x", Data: map[string]string{"expires_at": "overwritten"}, ExpiresAt: exp},
		{EventID: "<&>\"\\", Type: "\u2028\u2029\x00\x01\x1f\x7f\b\f\n\r\t", Title: "héllo 🌍 \xff\xfe bad", Body: "a</script>b",
			Data: map[string]string{"k\"<": "v\u2028&"}},
	}
}

// TestPayloadMatchesMaps: Payload gives the bytes encoding/json gave for
// the maps it used to build.
func TestPayloadMatchesMaps(t *testing.T) {
	for _, a := range payloadCases() {
		got, err := apns.Payload(a)
		if err != nil {
			t.Fatal(err)
		}
		if want := payloadMaps(a); !bytes.Equal(got, want) {
			t.Errorf("alert %q:\n got %s\nwant %s", a.EventID, got, want)
		}
	}
}

func FuzzPayloadMatchesMaps(f *testing.F) {
	for _, a := range payloadCases() {
		f.Add(a.Title, a.Body, a.Category, a.InterruptionLevel, a.Silent, "k", "v")
	}
	f.Add("\xed\xa0\x80", "\u2029", "", "critical", false, "withdraw", "\x00")
	f.Fuzz(func(t *testing.T, title, body, category, level string, silent bool, k, v string) {
		a := &relay.Alert{EventID: body, Type: title, Title: title, Body: body, Category: category, InterruptionLevel: level,
			Silent: silent, ThreadID: k, Sound: v, Data: map[string]string{k: v, v: k}, ExpiresAt: time.Unix(1_800_000_000, 0)}
		got, _ := apns.Payload(a)
		if want := payloadMaps(a); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkPayload(b *testing.B) {
	a := payloadCases()[0]
	b.ReportAllocs()
	for b.Loop() {
		apns.Payload(a)
	}
}
