package ingest

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store/bolt/bolttest"
)

func TestSettings(t *testing.T) {
	ts := startServer(t, nil)
	get := func() map[string]relay.Setting {
		t.Helper()
		r := ts.do(t, http.MethodGet, "/v1/workspaces/acme/settings", "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var m map[string]relay.Setting
		r.decode(t, &m)
		return m
	}
	if got := get(); !reflect.DeepEqual(got, testTypes) {
		t.Fatalf("defaults %v, want %v", got, testTypes)
	}
	r := ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"otp_received":"enforced","account_shared":"disabled"}`))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var put map[string]relay.Setting
	r.decode(t, &put)
	want := map[string]relay.Setting{
		relay.TypeOTPReceived:          relay.SettingEnforced,
		relay.TypeAccountShared:        relay.SettingDisabled,
		relay.TypeIdentityVerification: relay.SettingEnforced,
		relay.TypeNewTrustedDevice:     relay.SettingEnabled,
	}
	if !reflect.DeepEqual(put, want) {
		t.Fatalf("put answered %v, want %v", put, want)
	}
	// PUT merges.
	ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"otp_received":"enabled"}`))
	want[relay.TypeOTPReceived] = relay.SettingEnabled
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after merge %v, want %v", got, want)
	}
	if got := ts.store.settings["acme"]; len(got) != 2 {
		t.Fatalf("stored %v: defaults must not be stored", got)
	}

	bad := []struct{ body, msg string }{
		{`{"nope":"enabled"}`, `unknown notification type "nope"`},
		{`{"otp_received":"on"}`, `field "otp_received": must be enabled, disabled or enforced, got "on"`},
		{`{"otp_received":null}`, `field "otp_received": must be enabled, disabled or enforced, got null`},
		{`{"otp_received":1}`, `field "otp_received": expected string, got number`},
		{`["otp_received"]`, `body: expected a JSON object, got array`},
		{``, `body: expected a JSON object, got end of input`},
	}
	for _, tc := range bad {
		ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(tc.body)).wantError(t, http.StatusBadRequest, CodeBadRequest, tc.msg)
	}
	ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"otp_received":`)).wantError(t, http.StatusBadRequest, CodeBadRequest, "")
	ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"x":"`+strings.Repeat("y", maxAdminBodyBytes)+`"}`)).
		wantError(t, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "body larger than 65536 bytes")
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("a refused PUT changed settings: %v", got)
	}
	ts.do(t, http.MethodGet, "/v1/workspaces/a%01b/settings", "", nil).wantError(t, http.StatusBadRequest, CodeBadRequest, `path parameter "ws": contains control character U+0001`)

	ts.store.mu.Lock()
	ts.store.fail = errStoreDown
	ts.store.mu.Unlock()
	ts.do(t, http.MethodGet, "/v1/workspaces/acme/settings", "", nil).wantError(t, http.StatusServiceUnavailable, CodeUnavailable, "read settings: disk on fire")
	ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"otp_received":"enabled"}`)).wantError(t, http.StatusServiceUnavailable, CodeUnavailable, "read settings: disk on fire")
}

func TestSettingsWithoutTypes(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Types = nil; o.KnownType = knownTestType })
	r := ts.do(t, http.MethodGet, "/v1/workspaces/acme/settings", "", nil)
	if r.status != http.StatusOK || string(r.body) != "{}\n" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r = ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"otp_received":"disabled"}`))
	if r.status != http.StatusOK || string(r.body) != `{"otp_received":"disabled"}`+"\n" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"nope":"disabled"}`)).wantError(t, http.StatusBadRequest, CodeBadRequest, `unknown notification type "nope"`)
}

func TestPreferences(t *testing.T) {
	ts := startServer(t, nil)
	const path = "/v1/workspaces/acme/users/u-42/preferences"
	r := ts.do(t, http.MethodGet, path, "", nil)
	var got map[string]bool
	r.decode(t, &got)
	want := map[string]bool{}
	for typ := range testTypes {
		want[typ] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults %v", got)
	}
	r = ts.do(t, http.MethodPut, path, MediaTypeJSON, []byte(`{"otp_received":false,"identity_verification":false}`))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	got = nil
	r.decode(t, &got)
	want[relay.TypeOTPReceived], want[relay.TypeIdentityVerification] = false, false
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after put %v, want %v", got, want)
	}
	ts.do(t, http.MethodPut, path, MediaTypeJSON, []byte(`{"otp_received":true}`))
	if p := ts.store.prefs[[2]string{"acme", "u-42"}]; !reflect.DeepEqual(p, map[string]bool{"otp_received": true, "identity_verification": false}) {
		t.Fatalf("stored %v", p)
	}
	bad := []struct{ body, msg string }{
		{`{"nope":false}`, `unknown notification type "nope"`},
		{`{"otp_received":"off"}`, `field "otp_received": expected boolean, got string`},
		{`{"otp_received":null}`, `field "otp_received": expected boolean, got null`},
		{`{"otp_received":0}`, `field "otp_received": expected boolean, got number`},
		{`true`, `body: expected a JSON object, got boolean`},
	}
	for _, tc := range bad {
		ts.do(t, http.MethodPut, path, MediaTypeJSON, []byte(tc.body)).wantError(t, http.StatusBadRequest, CodeBadRequest, tc.msg)
	}
}

func TestDevices(t *testing.T) {
	ts := startServer(t, nil)
	const base = "/v1/workspaces/acme/users/u-42/devices"
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes())
	before := time.Now().UTC()
	// Sent in the URL alphabet without padding; stored normalized.
	r := ts.do(t, http.MethodPut, base+"/phone-1", MediaTypeJSON, []byte(`{"platform":"ios","token":"abc123","app":"demo","name":"Ana's iPhone","public_key":"`+base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes())+`"}`))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var d relay.Device
	r.decode(t, &d)
	want := relay.Device{
		Workspace: "acme", User: "u-42", ID: "phone-1", Platform: relay.PlatformIOS, Token: "abc123", App: "demo",
		Environment: relay.EnvironmentProduction, Name: "Ana's iPhone", PublicKey: key, UpdatedAt: d.UpdatedAt,
	}
	if !reflect.DeepEqual(d, want) || d.UpdatedAt.Before(before) {
		t.Fatalf("device %+v\nwant %+v", d, want)
	}
	ts.do(t, http.MethodPut, base+"/pixel", MediaTypeJSON, []byte(`{"platform":"android","token":"fcm:tok-_1","app":"demo","environment":null}`))

	r = ts.do(t, http.MethodGet, base+"/phone-1", "", nil)
	var got relay.Device
	r.decode(t, &got)
	if !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("get %+v", got)
	}
	got.UpdatedAt = want.UpdatedAt
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("get %+v", got)
	}
	var list DeviceList
	ts.do(t, http.MethodGet, base, "", nil).decode(t, &list)
	if len(list.Devices) != 2 || list.Devices[0].ID != "phone-1" || list.Devices[1].ID != "pixel" || list.Devices[1].Environment != "" {
		t.Fatalf("list %+v", list)
	}
	if r := ts.do(t, http.MethodDelete, base+"/phone-1", "", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete %d %s", r.status, r.body)
	}
	ts.do(t, http.MethodGet, base+"/phone-1", "", nil).wantError(t, http.StatusNotFound, CodeNotFound, `device "phone-1" not found`)
	ts.do(t, http.MethodDelete, base+"/phone-1", "", nil).wantError(t, http.StatusNotFound, CodeNotFound, `device "phone-1" not found`)
	r = ts.do(t, http.MethodGet, "/v1/workspaces/acme/users/nobody/devices", "", nil)
	if r.status != http.StatusOK || string(r.body) != `{"devices":[]}`+"\n" {
		t.Fatalf("empty list %d %s", r.status, r.body)
	}

	valid := func(extra string) string {
		return `{"platform":"ios","token":"abc","app":"demo"` + extra + `}`
	}
	bad := []struct{ body, msg string }{
		{`{"token":"abc","app":"demo"}`, `missing required field "platform"`},
		{`{"platform":"ios","app":"demo"}`, `missing required field "token"`},
		{`{"platform":"ios","token":"abc"}`, `missing required field "app"`},
		{valid(`,"foo":1`), `unknown field "foo"`},
		{`{"platform":"windows","token":"abc","app":"demo"}`, `field "platform": must be "ios" or "android", got "windows"`},
		{`{"platform":1,"token":"abc","app":"demo"}`, `field "platform": expected string, got number`},
		{`{"platform":"ios","token":"a b","app":"demo"}`, `field "token": must be printable ASCII without spaces`},
		{`{"platform":"ios","token":"","app":"demo"}`, `field "token": must not be empty`},
		{`{"platform":"ios","token":"` + strings.Repeat("a", MaxTokenLen+1) + `","app":"demo"}`, `field "token": is longer than 4096 characters`},
		{`{"platform":"ios","token":"abc","app":"other"}`, `field "app": unknown app "other"`},
		{valid(`,"environment":"staging"`), `field "environment": must be "production" or "sandbox", got "staging"`},
		{valid(`,"public_key":"!!"`), `field "public_key": is not base64`},
		{valid(`,"public_key":"` + base64.StdEncoding.EncodeToString(make([]byte, 31)) + `"`), `field "public_key": is 31 bytes, want 32 (X25519)`},
		{valid(`,"public_key":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"`), `field "public_key": is a low-order X25519 point`},
		{valid(`,"name":"a\u0000"`), `field "name": contains control character U+0000`},
		{`"ios"`, `body: expected a JSON object, got string`},
	}
	for _, tc := range bad {
		ts.do(t, http.MethodPut, base+"/d1", MediaTypeJSON, []byte(tc.body)).wantError(t, http.StatusBadRequest, CodeBadRequest, tc.msg)
	}
	ts.do(t, http.MethodPut, base+"/"+strings.Repeat("x", relay.MaxIDLen+1), MediaTypeJSON, []byte(valid(""))).
		wantError(t, http.StatusBadRequest, CodeBadRequest, `path parameter "device_id": is longer than 128 characters`)
	if _, err := ts.store.Device(context.Background(), "acme", "u-42", "d1"); err == nil {
		t.Fatal("a refused device was stored")
	}
}

// TestBoltStore runs the event and admin endpoints on the real embedded
// store.
func TestBoltStore(t *testing.T) {
	st := bolttest.Open(t)
	ts := startServer(t, func(o *Options) { o.Store = st; o.Acceptor = storeAcceptor(st) })
	got := results(t, postNDJSON(t, ts, strings.ReplaceAll(sampleEvent, "\n", "")+"\n"+ev("")+"\n"+ev("")))
	want := []Result{{Line: 1, ID: "evt-123", Status: StatusAccepted}, {Line: 2, ID: "a", Status: StatusAccepted}, {Line: 3, ID: "a", Status: StatusDuplicate}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("results %+v", got)
	}
	var es EventStatus
	ts.do(t, http.MethodGet, "/v1/events/acme/evt-123", "", nil).decode(t, &es)
	if es.User != "u-42" || es.Decision != nil || len(es.Deliveries) != 0 {
		t.Fatalf("event %+v", es)
	}
	if r := ts.do(t, http.MethodPut, "/v1/workspaces/acme/settings", MediaTypeJSON, []byte(`{"otp_received":"disabled"}`)); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := ts.do(t, http.MethodPut, "/v1/workspaces/acme/users/u/devices/d", MediaTypeJSON, []byte(`{"platform":"android","token":"t","app":"demo"}`)); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var list DeviceList
	ts.do(t, http.MethodGet, "/v1/workspaces/acme/users/u/devices", "", nil).decode(t, &list)
	if len(list.Devices) != 1 || list.Devices[0].Token != "t" {
		t.Fatalf("devices %+v", list)
	}
}
