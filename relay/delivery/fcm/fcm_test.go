package fcm_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/delivery/fcm"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const project = "demo-project"

var android = relay.Device{Workspace: "acme", User: "u-42", ID: "d2", Platform: relay.PlatformAndroid, Token: "android-token-1", App: "demo"}

type env struct {
	fake   *relaytest.FakeFCM
	client *fcm.Client
	cfg    *config.FCM
	creds  *relaytest.DevCredentials
}

// setup starts a FakeFCM that verifies a fresh service account's assertions,
// and a client configured from a credentials file whose token_uri is the
// fake's token endpoint.
func setup(t testing.TB, opts fcm.Options) *env {
	t.Helper()
	dir := t.TempDir()
	f := relaytest.NewFakeFCM(t, relaytest.FCMOptions{ProjectID: project})
	creds, err := relaytest.WriteDevCredentials(dir, relaytest.DevCredentialsOptions{ProjectID: project, TokenURI: f.TokenURL})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	f = relaytest.NewFakeFCM(t, relaytest.FCMOptions{ProjectID: project, ServiceAccountKey: &creds.FCMKey.PublicKey, ClientEmail: creds.FCMClientEmail})
	if creds, err = relaytest.WriteDevCredentials(dir, relaytest.DevCredentialsOptions{ProjectID: project, TokenURI: f.TokenURL}); err != nil {
		t.Fatal(err)
	}
	cfg := &config.FCM{ProjectID: project, CredentialsFile: creds.FCMCredentialsFile, Endpoint: f.URL, CAFile: f.CAFile}
	c, err := fcm.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &env{fake: f, client: c, cfg: cfg, creds: creds}
}

func alertFor(typ string, ttl time.Duration) *relay.Alert {
	a := &relay.Alert{
		EventID: "evt-1", Workspace: "acme", Type: typ, Title: "Title " + typ, Body: "Body " + typ,
		CollapseID: "acme/evt-1", ExpiresAt: time.Now().Add(ttl), Priority: relay.PriorityHigh,
	}
	switch typ {
	case relay.TypeIdentityVerification, relay.TypeNewTrustedDevice:
		a.Category, a.Actions = "APPROVE_DENY", []string{"approve", "deny"}
		a.InterruptionLevel = "time-sensitive"
		a.Data = map[string]string{"request": "r-9"}
	case relay.TypeOTPReceived:
		a.Data = map[string]string{"account": "github"}
	case relay.TypeAccountShared:
		a.Priority = relay.PriorityNormal
		a.Sound = "default"
	}
	return a
}

func TestNotifyMapsEachType(t *testing.T) {
	e := setup(t, fcm.Options{})
	tests := []struct {
		typ, kind, prio string
	}{
		{relay.TypeIdentityVerification, "data", "high"},
		{relay.TypeNewTrustedDevice, "data", "high"},
		{relay.TypeOTPReceived, "notification", "high"},
		{relay.TypeAccountShared, "notification", "normal"},
	}
	for i, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			a := alertFor(tc.typ, 2*time.Minute)
			if err := e.client.Notify(t.Context(), android, a); err != nil {
				t.Fatal(err)
			}
			ps, err := e.fake.WaitForPushes(t.Context(), i+1)
			if err != nil {
				t.Fatal(err)
			}
			p := ps[i]
			check := func(what, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %q, want %q", what, got, want)
				}
			}
			check("token", p.Token, android.Token)
			check("kind", p.PushType(), tc.kind)
			check("android.priority", p.Priority(), tc.prio)
			check("collapse_key", p.CollapseID(), "acme/evt-1")
			check("title", p.Title(), a.Title)
			check("body", p.BodyText(), a.Body)
			d := p.Data()
			check("event_id", d["event_id"], "evt-1")
			check("type", d["type"], tc.typ)
			check("expires_at", d["expires_at"], a.ExpiresAt.UTC().Format(time.RFC3339))
			for k, v := range a.Data {
				check("data "+k, d[k], v)
			}
			ttl, err := time.ParseDuration(str(p.Payload["android"].(map[string]any)["ttl"]))
			if err != nil || ttl > 2*time.Minute || ttl < 110*time.Second {
				t.Errorf("ttl %v (%v), want just under 2m", ttl, err)
			}
			if tc.kind == "data" {
				check("category", d["category"], "APPROVE_DENY")
				check("actions", d["actions"], `["approve","deny"]`)
				check("interruption_level", d["interruption_level"], "time-sensitive")
				if p.Payload["notification"] != nil {
					t.Error("actionable alert sent as a notification message")
				}
			} else {
				tag := str(p.Payload["android"].(map[string]any)["notification"].(map[string]any)["tag"])
				check("android.notification.tag", tag, "acme/evt-1")
			}
			if got := p.Header.Get("Authorization"); !strings.HasPrefix(got, "Bearer ya29.fake-") {
				t.Errorf("Authorization = %q", got)
			}
			// What firebase.App.Messaging's client sends (sdk.go).
			check("X-Firebase-Client", p.Header.Get("X-Firebase-Client"), "fire-admin-go/"+fcm.SDKVersion())
		})
	}
	// One OAuth exchange, at the credentials file's token_uri, served all
	// four sends.
	if n := e.fake.TokenRequests(); n != 1 {
		t.Fatalf("TokenRequests() = %d, want 1", n)
	}
}

// TestRelaydLinksNoOtherFirebaseService guards sdk.go's reason to be: the
// SDK's root package links Cloud Storage, Firestore and gRPC's xDS into
// relayd (24 MB of binary, 13–14 MiB of resident memory).
func TestRelaydLinksNoOtherFirebaseService(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	out, err := exec.CommandContext(t.Context(), gobin, "list", "-deps", "github.com/edgerelay/edgerelay/cmd/relayd").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "firebase.google.com/go/v4/messaging") {
		t.Fatalf("relayd does not link the SDK's messaging package; go list -deps:\n%s", out)
	}
	for _, unwanted := range []string{"firebase.google.com/go/v4", "cloud.google.com/go/storage", "cloud.google.com/go/firestore"} {
		if slices.Contains(deps, unwanted) {
			t.Errorf("relayd links %s", unwanted)
		}
	}
}

func str(v any) string { s, _ := v.(string); return s }

func TestNotifySilentAndIOS(t *testing.T) {
	e := setup(t, fcm.Options{})
	a := alertFor(relay.TypeIdentityVerification, time.Minute)
	a.Silent = true
	if err := e.client.Notify(t.Context(), android, a); err != nil {
		t.Fatal(err)
	}
	ios := android
	ios.Platform = relay.PlatformIOS
	b := alertFor(relay.TypeIdentityVerification, time.Minute)
	if err := e.client.Notify(t.Context(), ios, b); err != nil {
		t.Fatal(err)
	}
	ps := e.fake.Pushes()
	if p := ps[0]; p.PushType() != "data" || p.Data()["withdraw"] != "true" || p.Priority() != "normal" {
		t.Fatalf("silent: %s %v", p.String(), p.Payload)
	}
	apnsBlock, _ := json.Marshal(ps[1].Payload["apns"])
	for _, want := range []string{`"apns-priority":"10"`, `"apns-collapse-id":"acme/evt-1"`, `"apns-push-type":"alert"`,
		`"category":"APPROVE_DENY"`, `"interruption-level":"time-sensitive"`, `"mutable-content":1`} {
		if !strings.Contains(string(apnsBlock), want) {
			t.Errorf("iOS apns block lacks %s: %s", want, apnsBlock)
		}
	}
}

func TestTTLRecomputedAtEachSend(t *testing.T) {
	a := alertFor(relay.TypeOTPReceived, time.Minute)
	now := time.Now()
	m1 := fcm.Message(android, a, now)
	m2 := fcm.Message(android, a, now.Add(20*time.Second))
	if *m1.Android.TTL-*m2.Android.TTL < 19*time.Second {
		t.Fatalf("TTL %v then %v", *m1.Android.TTL, *m2.Android.TTL)
	}
	if m3 := fcm.Message(android, a, now.Add(time.Hour)); *m3.Android.TTL != 0 {
		t.Fatalf("TTL past expiry = %v, want 0", *m3.Android.TTL)
	}
}

func TestClassification(t *testing.T) {
	e := setup(t, fcm.Options{})
	tests := []struct {
		name       string
		rule       relaytest.Rule
		status     int
		reason     string
		outcome    delivery.Outcome
		retryAfter time.Duration
	}{
		{"unregistered", relaytest.Rule{Reason: "UNREGISTERED"}, 404, "UNREGISTERED", delivery.DropToken, 0},
		{"sender id mismatch", relaytest.Rule{Reason: "SENDER_ID_MISMATCH"}, 403, "SENDER_ID_MISMATCH", delivery.DropToken, 0},
		{"invalid token", relaytest.Rule{Reason: "INVALID_ARGUMENT", Status: 400, Body: `{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"The registration token is not a valid FCM registration token","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}`}, 400, "INVALID_ARGUMENT", delivery.DropToken, 0},
		{"invalid argument", relaytest.Rule{Reason: "INVALID_ARGUMENT"}, 400, "INVALID_ARGUMENT", delivery.Permanent, 0},
		{"quota, short hint", relaytest.Rule{Reason: "QUOTA_EXCEEDED", RetryAfter: "5"}, 429, "QUOTA_EXCEEDED", delivery.Retry, time.Minute},
		{"quota, long hint", relaytest.Rule{Reason: "QUOTA_EXCEEDED", RetryAfter: "150"}, 429, "QUOTA_EXCEEDED", delivery.Retry, 150 * time.Second},
		{"unavailable, hint over 2m", relaytest.Rule{Reason: "UNAVAILABLE", RetryAfter: "200"}, 503, "UNAVAILABLE", delivery.Retry, 200 * time.Second},
		{"internal", relaytest.Rule{Reason: "INTERNAL"}, 500, "INTERNAL", delivery.Retry, 0},
		{"third party auth", relaytest.Rule{Reason: "THIRD_PARTY_AUTH_ERROR"}, 401, "THIRD_PARTY_AUTH_ERROR", delivery.ConfigError, 0},
		{"unauthenticated", relaytest.Rule{Reason: "UNAUTHENTICATED"}, 401, "UNAUTHENTICATED", delivery.ConfigError, 0},
		{"permission denied", relaytest.Rule{Reason: "PERMISSION_DENIED"}, 403, "PERMISSION_DENIED", delivery.ConfigError, 0},
		{"not found", relaytest.Rule{Reason: "NOT_FOUND"}, 404, "NOT_FOUND", delivery.ConfigError, 0},
		{"resource exhausted", relaytest.Rule{Reason: "RESOURCE_EXHAUSTED", RetryAfter: "9"}, 429, "RESOURCE_EXHAUSTED", delivery.Retry, 9 * time.Second},
		{"proxy html", relaytest.Rule{Status: 502, Body: "<html>bad gateway</html>"}, 502, "UNKNOWN", delivery.Retry, 0},
		{"conflict", relaytest.Rule{Status: 409, Reason: "ABORTED"}, 409, "", delivery.Permanent, 0},
	}
	a := alertFor(relay.TypeOTPReceived, 10*time.Minute)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.fake.ClearScript()
			r := tc.rule
			r.Times = 1
			if tc.reason == "UNAUTHENTICATED" {
				r.Times = 2 // the client tries once more with a fresh token
			}
			e.fake.Script(android.Token, r)
			err := e.client.Notify(t.Context(), android, a)
			var de *delivery.Error
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want *delivery.Error", err)
			}
			if de.Outcome != tc.outcome || de.Status != tc.status || de.Reason != tc.reason || de.RetryAfter != tc.retryAfter {
				t.Fatalf("got %v (status %d, reason %q, retry after %v)", de, de.Status, de.Reason, de.RetryAfter)
			}
			if got := errors.Is(err, relay.ErrUnregistered); got != (tc.outcome == delivery.DropToken) {
				t.Fatalf("errors.Is(ErrUnregistered) = %v", got)
			}
		})
	}
	// The fake's own registry; and a wrong project is a configuration error.
	e.fake.ClearScript()
	e.fake.Unregister("dead-token")
	dead := android
	dead.Token = "dead-token"
	if err := e.client.Notify(t.Context(), dead, a); !errors.Is(err, relay.ErrUnregistered) {
		t.Fatalf("registry: %v", err)
	}
	cfg := *e.cfg
	cfg.ProjectID = "other-project"
	c, err := fcm.New(t.Context(), &cfg, fcm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o, _ := delivery.Classify(c.Notify(t.Context(), android, a)); o != delivery.ConfigError {
		t.Fatalf("wrong project: %v", o)
	}
}

func TestQuotaRetryAfterCappedAtTTL(t *testing.T) {
	e := setup(t, fcm.Options{})
	e.fake.Script(android.Token, relaytest.Rule{Reason: "QUOTA_EXCEEDED", Times: 1})
	a := alertFor(relay.TypeOTPReceived, 20*time.Second)
	err := e.client.Notify(t.Context(), android, a)
	var de *delivery.Error
	if !errors.As(err, &de) || de.RetryAfter > 20*time.Second || de.RetryAfter < 15*time.Second {
		t.Fatalf("got %v", err)
	}
}

// The SDK retries a 503 by itself; a single 503 costs nothing but time.
func TestSDKRetriesUnavailable(t *testing.T) {
	e := setup(t, fcm.Options{})
	e.fake.Script(android.Token, relaytest.Rule{Reason: "UNAVAILABLE", Times: 1})
	if err := e.client.Notify(t.Context(), android, alertFor(relay.TypeOTPReceived, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.Requests(); n != 2 {
		t.Fatalf("Requests() = %d, want 2", n)
	}
}

// 503 with Retry-After: 100 would make the SDK sleep 100s inside Send; the
// alert's expiry cuts it.
func TestExpiryBoundsSDKRetry(t *testing.T) {
	e := setup(t, fcm.Options{})
	e.fake.Script(android.Token, relaytest.Rule{Reason: "UNAVAILABLE", RetryAfter: "100"})
	a := alertFor(relay.TypeOTPReceived, 0)
	a.ExpiresAt = time.Now().Add(1500 * time.Millisecond)
	start := time.Now()
	err := e.client.Notify(t.Context(), android, a)
	took := time.Since(start)
	if o, _ := delivery.Classify(err); o != delivery.Retry || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if took > 10*time.Second {
		t.Fatalf("Notify took %v; the expiry was 1.5s away", took)
	}
	if n := e.fake.Requests(); n != 1 {
		t.Fatalf("Requests() = %d, want 1", n)
	}
}

// Credentials the token endpoint refuses are a configuration error at once,
// not an "unknown error" after the SDK's retries.
func TestWrongServiceAccountKeyIsConfigError(t *testing.T) {
	e := setup(t, fcm.Options{})
	other, err := relaytest.WriteDevCredentials(t.TempDir(), relaytest.DevCredentialsOptions{
		ProjectID: project, TokenURI: e.fake.TokenURL, ClientEmail: e.creds.FCMClientEmail})
	if err != nil {
		t.Fatal(err)
	}
	cfg := *e.cfg
	cfg.CredentialsFile = other.FCMCredentialsFile
	c, err := fcm.New(t.Context(), &cfg, fcm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Notify(t.Context(), android, alertFor(relay.TypeOTPReceived, time.Minute))
	var de *delivery.Error
	if !errors.As(err, &de) || de.Outcome != delivery.ConfigError || de.Reason != "UNAUTHENTICATED" || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("got %v", err)
	}
	if n := e.fake.TokenRequests(); n != 1 {
		t.Fatalf("TokenRequests() = %d, want 1 (no SDK retries)", n)
	}
	if n := e.fake.Requests(); n != 0 {
		t.Fatalf("send endpoint got %d requests", n)
	}
}

// Without ca_file the fake's certificate is not trusted: a transport error,
// retried by the SDK until the alert's expiry cuts it.
func TestCAFileIsNeeded(t *testing.T) {
	e := setup(t, fcm.Options{})
	cfg := *e.cfg
	cfg.CAFile = ""
	c, err := fcm.New(t.Context(), &cfg, fcm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := alertFor(relay.TypeOTPReceived, 0)
	a.ExpiresAt = time.Now().Add(time.Second)
	err = c.Notify(t.Context(), android, a)
	if o, _ := delivery.Classify(err); o != delivery.Retry {
		t.Fatalf("untrusted certificate: %v", err)
	}
	if e.fake.TokenRequests() != 0 {
		t.Fatal("token endpoint reached without trusting its certificate")
	}
}

func TestLocalChecksSendNothing(t *testing.T) {
	e := setup(t, fcm.Options{})
	old := alertFor(relay.TypeOTPReceived, time.Minute)
	old.ExpiresAt = time.Now().Add(-time.Second)
	if err := e.client.Notify(t.Context(), android, old); !errors.Is(err, relay.ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	big := alertFor(relay.TypeOTPReceived, time.Minute)
	big.Body = strings.Repeat("x", 4100)
	if o, _ := delivery.Classify(e.client.Notify(t.Context(), android, big)); o != delivery.Permanent {
		t.Fatal("oversized alert not Permanent")
	}
	if err := e.client.Notify(t.Context(), relay.Device{Platform: relay.PlatformAndroid}, big); err == nil {
		t.Fatal("no token: no error")
	}
	if err := e.client.Notify(t.Context(), android, nil); err == nil {
		t.Fatal("nil alert: no error")
	}
	if e.fake.Requests() != 0 || e.fake.TokenRequests() != 0 {
		t.Fatal("fake was called")
	}
}

func TestClassifyPlainErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want delivery.Outcome
	}{
		{context.DeadlineExceeded, delivery.Retry},
		{context.Canceled, delivery.Retry},
		{errors.New("exactly one of token, topic or condition must be specified"), delivery.Permanent},
	} {
		if got := fcm.Classify(tc.err, time.Now()).Outcome; got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := setup(t, fcm.Options{})
	dir := t.TempDir()
	notSA := dir + "/user.json"
	writeFile(t, notSA, `{"type":"authorized_user","client_id":"x"}`)
	noKey := dir + "/nokey.json"
	writeFile(t, noKey, `{"type":"service_account","client_email":"a@b"}`)
	bad := dir + "/bad.pem"
	writeFile(t, bad, "nope")
	tests := []struct {
		name string
		mut  func(c *config.FCM)
		want string
	}{
		{"no project", func(c *config.FCM) { c.ProjectID = "" }, "project_id"},
		{"no credentials", func(c *config.FCM) { c.CredentialsFile = "" }, "credentials_file"},
		{"missing credentials", func(c *config.FCM) { c.CredentialsFile = dir + "/nope.json" }, "credentials_file"},
		{"not a service account", func(c *config.FCM) { c.CredentialsFile = notSA }, "type"},
		{"no private key", func(c *config.FCM) { c.CredentialsFile = noKey }, "private_key"},
		{"bad ca", func(c *config.FCM) { c.CAFile = bad }, "ca_file"},
		{"bad endpoint", func(c *config.FCM) { c.Endpoint = "fcm.googleapis.com" }, "endpoint"},
		{"endpoint with path", func(c *config.FCM) { c.Endpoint = "https://127.0.0.1:1/v1" }, "endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := *e.cfg
			tc.mut(&c)
			_, err := fcm.New(t.Context(), &c, fcm.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
	if _, err := fcm.New(t.Context(), nil, fcm.Options{}); err == nil {
		t.Fatal("nil config accepted")
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkFCMNotify(b *testing.B) {
	e := setup(b, fcm.Options{})
	a := alertFor(relay.TypeIdentityVerification, time.Hour)
	ctx := context.Background()
	if err := e.client.Notify(ctx, android, a); err != nil { // token + connection
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(32) // 64 sends in flight on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := e.client.Notify(ctx, android, a); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(e.fake.Connections()), "conns")
}

// After the access token is refused (revoked, key rotated), the client drops
// it and fetches a new one: the Android lane recovers without a restart.
func TestRevokedTokenIsRefetched(t *testing.T) {
	e := setup(t, fcm.Options{})
	ctx := context.Background()
	if err := e.client.Notify(ctx, android, alertFor(relay.TypeAccountShared, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.TokenRequests(); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
	e.fake.RevokeTokens()
	for i := range 3 {
		if err := e.client.Notify(ctx, android, alertFor(relay.TypeAccountShared, time.Minute)); err != nil {
			t.Fatalf("send %d after the token was revoked: %v", i, err)
		}
	}
	if n := e.fake.TokenRequests(); n != 2 {
		t.Fatalf("%d token requests, want 2 (one refetch)", n)
	}
}

// Errors never carry the device token, even when FCM's message quotes it.
func TestErrorsCarryNoDeviceToken(t *testing.T) {
	e := setup(t, fcm.Options{})
	for _, r := range []relaytest.Rule{
		{Status: 400, Body: `{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"Invalid registration token: ` + android.Token + `"}}`},
	} {
		e.fake.ClearScript()
		r.Times = 1
		e.fake.Script(android.Token, r)
		err := e.client.Notify(t.Context(), android, alertFor(relay.TypeAccountShared, 2*time.Second))
		if err == nil {
			t.Fatalf("%+v: no error", r)
		}
		if strings.Contains(err.Error(), android.Token) {
			t.Fatalf("%+v: error carries the device token: %v", r, err)
		}
	}
}

// A silent token proof is a data message carrying the code, not a
// withdraw.
func TestMessageTokenProofIsNoWithdraw(t *testing.T) {
	a := &relay.Alert{EventID: relay.InternalID(relay.InternalTokenProof, "n"), Type: "edgerelay.token_proof", Silent: true,
		Data: map[string]string{relay.DataTokenProof: "CODE", "device_id": "phone"}}
	m := fcm.Message(android, a, time.Now())
	if _, ok := m.Data["withdraw"]; ok || m.Data[relay.DataTokenProof] != "CODE" || m.Notification != nil || m.Android.Priority != "normal" {
		t.Fatalf("token proof message %+v %+v", m.Data, m.Android)
	}
}

// A message whose context has ended before it is sent is not sent, and the
// error says so (it used to read as a wait for a free send slot half of
// the time).
func TestEndedContextSendsNothing(t *testing.T) {
	e := setup(t, fcm.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 20 {
		err := e.client.Notify(ctx, android, alertFor(relay.TypeOTPReceived, time.Minute))
		if o, _ := delivery.Classify(err); o != delivery.Retry || !errors.Is(err, context.Canceled) || !errors.Is(err, delivery.ErrNotSent) || strings.Contains(err.Error(), "slot") {
			t.Fatalf("ended context: %v, want a retry that names the context's end", err)
		}
	}
	if n := e.fake.Requests(); n != 0 {
		t.Fatalf("%d requests reached FCM", n)
	}
}
