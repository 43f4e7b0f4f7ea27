package apns_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/delivery/apns"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	topic = "com.example.demo"
	keyID = "ABC123DEFG"
	team  = "TEAM123456"
	tok   = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988"
)

var device = relay.Device{Workspace: "acme", User: "u-42", ID: "d1", Platform: relay.PlatformIOS, Token: tok, App: "demo"}

// writeKey writes a fresh .p8 into dir and returns its path and key.
func writeKey(t testing.TB, dir string) (string, *ecdsa.PrivateKey) {
	t.Helper()
	key, pemBytes, err := relaytest.GenerateAPNsKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "AuthKey-"+strconv.Itoa(int(time.Now().UnixNano()))+".p8")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

type env struct {
	fake   *relaytest.FakeAPNs
	client *apns.Client
	cfg    *config.APNS
}

// setup starts a token-auth fake and a client for it.
func setup(t testing.TB, opts apns.Options) *env {
	t.Helper()
	keyFile, key := writeKey(t, t.TempDir())
	f := relaytest.NewFakeAPNs(t, relaytest.APNsOptions{Topic: topic, AuthKey: &key.PublicKey, KeyID: keyID, TeamID: team})
	cfg := &config.APNS{Topic: topic, KeyFile: keyFile, KeyID: keyID, TeamID: team, Endpoint: f.URL, CAFile: f.CAFile, Connections: 1}
	c, err := apns.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &env{fake: f, client: c, cfg: cfg}
}

func alertFor(typ string, ttl time.Duration) *relay.Alert {
	a := &relay.Alert{
		EventID: "evt-1", Workspace: "acme", Type: typ, Title: "Title " + typ, Body: "Body " + typ,
		CollapseID: "acme/evt-1", ExpiresAt: time.Now().Add(ttl).Truncate(time.Second),
		Priority: relay.PriorityHigh,
	}
	switch typ {
	case relay.TypeIdentityVerification, relay.TypeNewTrustedDevice:
		a.Category, a.Actions = "APPROVE_DENY", []string{"approve", "deny"}
		a.InterruptionLevel = "time-sensitive"
		a.Data = map[string]string{"request": "r-9"}
	case relay.TypeOTPReceived:
		a.InterruptionLevel = "time-sensitive"
		a.Data = map[string]string{"account": "github"}
	case relay.TypeAccountShared:
		a.Priority = relay.PriorityNormal
		a.InterruptionLevel = "passive"
		a.Sound = "default"
		a.ThreadID = "shares"
	}
	return a
}

func TestNotifyMapsEachType(t *testing.T) {
	e := setup(t, apns.Options{})
	tests := []struct {
		typ                 string
		prio, pushType, cat string
		level               string
		mutable             bool
	}{
		{relay.TypeIdentityVerification, "10", "alert", "APPROVE_DENY", "time-sensitive", true},
		{relay.TypeNewTrustedDevice, "10", "alert", "APPROVE_DENY", "time-sensitive", true},
		{relay.TypeOTPReceived, "10", "alert", "", "time-sensitive", true},
		{relay.TypeAccountShared, "5", "alert", "", "passive", false},
	}
	for i, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			a := alertFor(tc.typ, 2*time.Minute)
			if err := e.client.Notify(t.Context(), device, a); err != nil {
				t.Fatal(err)
			}
			ps, err := e.fake.WaitForPushes(t.Context(), i+1)
			if err != nil {
				t.Fatal(err)
			}
			p := ps[i]
			h := p.Header
			check := func(what, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %q, want %q", what, got, want)
				}
			}
			check("token", p.Token, tok)
			check("apns-topic", h.Get("apns-topic"), topic)
			check("apns-priority", h.Get("apns-priority"), tc.prio)
			check("apns-push-type", h.Get("apns-push-type"), tc.pushType)
			check("apns-collapse-id", h.Get("apns-collapse-id"), "acme/evt-1")
			check("apns-expiration", h.Get("apns-expiration"), strconv.FormatInt(a.ExpiresAt.Unix(), 10))
			check("authorization scheme", strings.SplitN(h.Get("authorization"), " ", 2)[0], "bearer")
			// Nothing APNs does not read: every header is encoded and
			// sent with every push.
			check("user-agent", h.Get("user-agent"), "")
			check("accept-encoding", h.Get("accept-encoding"), "")
			check("title", p.Title(), a.Title)
			check("body", p.BodyText(), a.Body)
			check("category", p.Category(), tc.cat)
			aps := p.Payload["aps"].(map[string]any)
			check("interruption-level", str(aps["interruption-level"]), tc.level)
			if got := aps["mutable-content"] != nil; got != tc.mutable {
				t.Errorf("mutable-content present = %v, want %v", got, tc.mutable)
			}
			d := p.Data()
			check("event_id", d["event_id"], "evt-1")
			check("type", d["type"], tc.typ)
			check("expires_at", d["expires_at"], a.ExpiresAt.UTC().Format(time.RFC3339))
			for k, v := range a.Data {
				check("data "+k, d[k], v)
			}
			if tc.typ == relay.TypeAccountShared {
				check("sound", str(aps["sound"]), "default")
				check("thread-id", str(aps["thread-id"]), "shares")
			}
		})
	}
	if e.fake.Connections() != 1 {
		t.Fatalf("Connections() = %d, want 1", e.fake.Connections())
	}
}

func str(v any) string { s, _ := v.(string); return s }

func TestNotifySilent(t *testing.T) {
	e := setup(t, apns.Options{})
	a := alertFor(relay.TypeIdentityVerification, time.Minute)
	a.Silent = true
	if err := e.client.Notify(t.Context(), device, a); err != nil {
		t.Fatal(err)
	}
	p := e.fake.Pushes()[0]
	aps := p.Payload["aps"].(map[string]any)
	if p.PushType() != "background" || p.Priority() != "5" || aps["content-available"] != float64(1) || aps["alert"] != nil || p.Data()["withdraw"] != "true" {
		t.Fatalf("silent push %s %v", p.String(), p.Payload)
	}
}

func TestNotifyDataCannotOverrideRelayKeys(t *testing.T) {
	a := alertFor(relay.TypeOTPReceived, time.Minute)
	a.Data = map[string]string{"aps": "x", "event_id": "forged", "k": "v"}
	b, err := apns.Payload(a)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "forged") || strings.Contains(s, `"aps":"x"`) || !strings.Contains(s, `"k":"v"`) {
		t.Fatalf("payload %s", s)
	}
}

func TestWrongKeyIsConfigError(t *testing.T) {
	e := setup(t, apns.Options{})
	other, _ := writeKey(t, t.TempDir())
	cfg := *e.cfg
	cfg.KeyFile = other
	c, err := apns.New(&cfg, apns.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Notify(t.Context(), device, alertFor(relay.TypeOTPReceived, time.Minute))
	var de *delivery.Error
	if !errors.As(err, &de) || de.Outcome != delivery.ConfigError || de.Reason != "InvalidProviderToken" || de.Status != 403 {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestExpiredProviderTokenRefreshes(t *testing.T) {
	e := setup(t, apns.Options{})
	e.fake.Script(tok, relaytest.Rule{Reason: "ExpiredProviderToken", Times: 1})
	a := alertFor(relay.TypeOTPReceived, time.Minute)
	err := e.client.Notify(t.Context(), device, a)
	if o, _ := delivery.Classify(err); o != delivery.Retry {
		t.Fatalf("ExpiredProviderToken: %v", err)
	}
	if err := e.client.Notify(t.Context(), device, a); err != nil {
		t.Fatal(err)
	}
	ps := e.fake.Pushes()
	if ps[0].Header.Get("authorization") == ps[1].Header.Get("authorization") {
		t.Fatal("provider token was not re-signed")
	}
}

func TestCertificateAuth(t *testing.T) {
	ca, err := relaytest.NewCA("client CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := relaytest.NewLeaf(ca, "com.example.demo push")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	f := relaytest.NewFakeAPNs(t, relaytest.APNsOptions{Topic: topic, RequireClientCert: true, ClientCAs: pool})
	certFile := filepath.Join(t.TempDir(), "push.pem")
	if err := os.WriteFile(certFile, append(leaf.CertPEM, leaf.KeyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := apns.New(&config.APNS{Topic: topic, CertFile: certFile, Endpoint: f.URL, CAFile: f.CAFile}, apns.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Notify(t.Context(), device, alertFor(relay.TypeIdentityVerification, time.Minute)); err != nil {
		t.Fatalf("cert auth: %v", err)
	}
	if f.Pushes()[0].Header.Get("authorization") != "" {
		t.Fatal("cert auth sent a bearer token")
	}
	// A token client cannot pass the certificate handshake: a transport
	// failure, hence Retry.
	keyFile, _ := writeKey(t, t.TempDir())
	tc, err := apns.New(&config.APNS{Topic: topic, KeyFile: keyFile, KeyID: keyID, TeamID: team, Endpoint: f.URL, CAFile: f.CAFile}, apns.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	err = tc.Notify(t.Context(), device, alertFor(relay.TypeOTPReceived, time.Minute))
	if o, _ := delivery.Classify(err); o != delivery.Retry || err == nil {
		t.Fatalf("no client cert: %v", err)
	}
}

func TestClassification(t *testing.T) {
	e := setup(t, apns.Options{})
	deadAt := time.Unix(1_790_000_000, 0) // apns2 keeps whole seconds of the ms timestamp
	tests := []struct {
		name       string
		rule       relaytest.Rule
		status     int
		outcome    delivery.Outcome
		retryAfter time.Duration
		deadAt     time.Time
	}{
		{"Unregistered", relaytest.Rule{Reason: "Unregistered", Timestamp: deadAt}, 410, delivery.DropToken, 0, deadAt},
		{"ExpiredToken", relaytest.Rule{Reason: "ExpiredToken", Timestamp: deadAt}, 410, delivery.DropToken, 0, deadAt},
		{"BadDeviceToken", relaytest.Rule{Reason: "BadDeviceToken"}, 400, delivery.DropToken, 0, time.Time{}},
		{"DeviceTokenNotForTopic", relaytest.Rule{Reason: "DeviceTokenNotForTopic"}, 400, delivery.DropToken, 0, time.Time{}},
		{"BadTopic", relaytest.Rule{Reason: "BadTopic"}, 400, delivery.ConfigError, 0, time.Time{}},
		{"MissingTopic", relaytest.Rule{Reason: "MissingTopic"}, 400, delivery.ConfigError, 0, time.Time{}},
		{"TopicDisallowed", relaytest.Rule{Reason: "TopicDisallowed"}, 400, delivery.ConfigError, 0, time.Time{}},
		{"IdleTimeout", relaytest.Rule{Reason: "IdleTimeout"}, 400, delivery.Retry, 0, time.Time{}},
		{"BadCollapseId", relaytest.Rule{Reason: "BadCollapseId"}, 400, delivery.Permanent, 0, time.Time{}},
		{"BadExpirationDate", relaytest.Rule{Reason: "BadExpirationDate"}, 400, delivery.Permanent, 0, time.Time{}},
		{"BadMessageId", relaytest.Rule{Reason: "BadMessageId"}, 400, delivery.Permanent, 0, time.Time{}},
		{"BadPriority", relaytest.Rule{Reason: "BadPriority"}, 400, delivery.Permanent, 0, time.Time{}},
		{"DuplicateHeaders", relaytest.Rule{Reason: "DuplicateHeaders"}, 400, delivery.Permanent, 0, time.Time{}},
		{"InvalidPushType", relaytest.Rule{Reason: "InvalidPushType"}, 400, delivery.Permanent, 0, time.Time{}},
		{"PayloadEmpty", relaytest.Rule{Reason: "PayloadEmpty"}, 400, delivery.Permanent, 0, time.Time{}},
		{"BadCertificate", relaytest.Rule{Reason: "BadCertificate"}, 403, delivery.ConfigError, 0, time.Time{}},
		{"BadCertificateEnvironment", relaytest.Rule{Reason: "BadCertificateEnvironment"}, 403, delivery.ConfigError, 0, time.Time{}},
		{"Forbidden", relaytest.Rule{Reason: "Forbidden"}, 403, delivery.ConfigError, 0, time.Time{}},
		{"InvalidProviderToken", relaytest.Rule{Reason: "InvalidProviderToken"}, 403, delivery.ConfigError, 0, time.Time{}},
		{"MissingProviderToken", relaytest.Rule{Reason: "MissingProviderToken"}, 403, delivery.ConfigError, 0, time.Time{}},
		{"UnrelatedKeyIdInToken", relaytest.Rule{Reason: "UnrelatedKeyIdInToken"}, 403, delivery.ConfigError, 0, time.Time{}},
		{"BadEnvironmentKeyIdInToken", relaytest.Rule{Reason: "BadEnvironmentKeyIdInToken"}, 403, delivery.ConfigError, 0, time.Time{}},
		{"ExpiredProviderToken", relaytest.Rule{Reason: "ExpiredProviderToken"}, 403, delivery.Retry, 0, time.Time{}},
		{"BadPath", relaytest.Rule{Reason: "BadPath"}, 404, delivery.Permanent, 0, time.Time{}},
		{"MethodNotAllowed", relaytest.Rule{Reason: "MethodNotAllowed"}, 405, delivery.Permanent, 0, time.Time{}},
		{"PayloadTooLarge", relaytest.Rule{Reason: "PayloadTooLarge"}, 413, delivery.Permanent, 0, time.Time{}},
		{"TooManyRequests", relaytest.Rule{Reason: "TooManyRequests", RetryAfter: "7"}, 429, delivery.Retry, 7 * time.Second, time.Time{}},
		{"TooManyProviderTokenUpdates", relaytest.Rule{Reason: "TooManyProviderTokenUpdates"}, 429, delivery.Retry, 0, time.Time{}},
		{"InternalServerError", relaytest.Rule{Reason: "InternalServerError"}, 500, delivery.Retry, 0, time.Time{}},
		{"ServiceUnavailable", relaytest.Rule{Reason: "ServiceUnavailable", RetryAfter: "30"}, 503, delivery.Retry, 30 * time.Second, time.Time{}},
		{"Shutdown", relaytest.Rule{Reason: "Shutdown"}, 503, delivery.Retry, 0, time.Time{}},
		{"non-JSON 502", relaytest.Rule{Status: 502, Body: "<html>bad gateway</html>"}, 502, delivery.Retry, 0, time.Time{}},
		{"reset stream", relaytest.Rule{Action: relaytest.ActionResetStream}, 0, delivery.Retry, 0, time.Time{}},
		{"connection closed", relaytest.Rule{Action: relaytest.ActionCloseConn}, 0, delivery.Retry, 0, time.Time{}},
	}
	a := alertFor(relay.TypeOTPReceived, time.Minute)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.fake.ClearScript()
			r := tc.rule
			r.Times = 1
			e.fake.Script(tok, r)
			err := e.client.Notify(t.Context(), device, a)
			var de *delivery.Error
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want *delivery.Error", err)
			}
			if de.Outcome != tc.outcome || de.Status != tc.status || de.RetryAfter != tc.retryAfter || !de.TokenDeadAt.Equal(tc.deadAt) {
				t.Fatalf("got %v (status %d, retry after %v, dead at %v)", de, de.Status, de.RetryAfter, de.TokenDeadAt)
			}
			if tc.rule.Reason != "" && de.Reason != tc.name {
				t.Fatalf("reason %q, want %q", de.Reason, tc.name)
			}
			if got := errors.Is(err, relay.ErrUnregistered); got != (tc.outcome == delivery.DropToken) {
				t.Fatalf("errors.Is(ErrUnregistered) = %v", got)
			}
		})
	}
	// The fake's own registry: 410 with the registration's timestamp.
	e.fake.ClearScript()
	e.fake.Unregister(tok, deadAt)
	err := e.client.Notify(t.Context(), device, a)
	var de *delivery.Error
	if !errors.As(err, &de) || de.Outcome != delivery.DropToken || !de.TokenDeadAt.Equal(deadAt) || !errors.Is(err, relay.ErrUnregistered) {
		t.Fatalf("registry: %v", err)
	}
}

func TestClassifyUnknownStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   delivery.Outcome
	}{{418, delivery.Permanent}, {410, delivery.DropToken}, {403, delivery.ConfigError}, {502, delivery.Retry}, {0, delivery.Retry}} {
		if got := apns.Classify(tc.status, "Whatever", time.Time{}).Outcome; got != tc.want {
			t.Errorf("Classify(%d) = %v, want %v", tc.status, got, tc.want)
		}
	}
}

func TestLocalChecksSendNothing(t *testing.T) {
	e := setup(t, apns.Options{})
	big := alertFor(relay.TypeOTPReceived, time.Minute)
	big.Body = strings.Repeat("x", 4100)
	err := e.client.Notify(t.Context(), device, big)
	if o, _ := delivery.Classify(err); o != delivery.Permanent || !strings.Contains(err.Error(), "PayloadTooLarge") {
		t.Fatalf("too large: %v", err)
	}
	long := alertFor(relay.TypeOTPReceived, time.Minute)
	long.CollapseID = strings.Repeat("c", 65)
	if o, _ := delivery.Classify(e.client.Notify(t.Context(), device, long)); o != delivery.Permanent {
		t.Fatal("long collapse id not Permanent")
	}
	old := alertFor(relay.TypeOTPReceived, time.Minute)
	old.ExpiresAt = time.Now().Add(-time.Second)
	if err := e.client.Notify(t.Context(), device, old); !errors.Is(err, relay.ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if err := e.client.Notify(t.Context(), relay.Device{}, old); err == nil {
		t.Fatal("no token: no error")
	}
	if err := e.client.Notify(t.Context(), device, nil); err == nil {
		t.Fatal("nil alert: no error")
	}
	if n := e.fake.Requests(); n != 0 {
		t.Fatalf("fake got %d requests", n)
	}
}

func TestExpiryBoundsSend(t *testing.T) {
	e := setup(t, apns.Options{})
	e.fake.Script(tok, relaytest.Rule{Latency: time.Minute})
	a := alertFor(relay.TypeOTPReceived, 0)
	a.ExpiresAt = time.Now().Add(300 * time.Millisecond)
	start := time.Now()
	err := e.client.Notify(t.Context(), device, a)
	if o, _ := delivery.Classify(err); o != delivery.Retry || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow APNs: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Notify took %v past a 300ms expiry", took)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	keyFile, _ := writeKey(t, dir)
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	base := config.APNS{Topic: topic, KeyFile: keyFile, KeyID: keyID, TeamID: team}
	tests := []struct {
		name string
		mut  func(c *config.APNS)
		want string
	}{
		{"no topic", func(c *config.APNS) { c.Topic = "" }, "topic"},
		{"no credentials", func(c *config.APNS) { c.KeyFile = "" }, "key_file or cert_file"},
		{"both", func(c *config.APNS) { c.CertFile = bad }, "key_file and cert_file"},
		{"no key id", func(c *config.APNS) { c.KeyID = "" }, "key_id"},
		{"no team id", func(c *config.APNS) { c.TeamID = "" }, "team_id"},
		{"missing key", func(c *config.APNS) { c.KeyFile = filepath.Join(dir, "nope.p8") }, "key_file"},
		{"bad key", func(c *config.APNS) { c.KeyFile = bad }, "key_file"},
		{"bad cert", func(c *config.APNS) { c.KeyFile, c.CertFile = "", bad }, "cert_file"},
		{"bad p12", func(c *config.APNS) { c.KeyFile, c.CertFile = "", keyFile+".p12" }, "cert_file"},
		{"cert ext", func(c *config.APNS) { c.KeyFile, c.CertFile = "", filepath.Join(dir, "x.der") }, "cert_file"},
		{"bad ca", func(c *config.APNS) { c.CAFile = bad }, "ca_file"},
		{"missing ca", func(c *config.APNS) { c.CAFile = filepath.Join(dir, "nope") }, "ca_file"},
		{"http endpoint", func(c *config.APNS) { c.Endpoint = "http://127.0.0.1:1" }, "endpoint"},
		{"endpoint path", func(c *config.APNS) { c.Endpoint = "https://127.0.0.1:1/3/device" }, "endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mut(&c)
			_, err := apns.New(&c, apns.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
	if _, err := apns.New(nil, apns.Options{}); err == nil {
		t.Fatal("nil config accepted")
	}
	c, err := apns.New(&base, apns.Options{})
	if err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c.Close()
}

func BenchmarkAPNsNotify(b *testing.B) {
	e := setup(b, apns.Options{})
	a := alertFor(relay.TypeIdentityVerification, time.Hour)
	ctx := context.Background()
	if err := e.client.Notify(ctx, device, a); err != nil { // warm up the connection
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(32) // 64 pushes in flight on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := e.client.Notify(ctx, device, a); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(e.fake.Connections()), "conns")
}

// A transport error names the request URL, which holds the device token;
// it ends up in the job's last_error (GET /v1/events) and in logs, so the
// token is stripped from every error Notify returns.
func TestErrorsCarryNoDeviceToken(t *testing.T) {
	e := setup(t, apns.Options{})
	for _, r := range []relaytest.Rule{{Action: relaytest.ActionCloseConn}, {Action: relaytest.ActionResetStream}, {Reason: "BadDeviceToken"}} {
		e.fake.ClearScript()
		e.fake.Script(tok, r)
		err := e.client.Notify(t.Context(), device, alertFor(relay.TypeOTPReceived, time.Minute))
		if err == nil {
			t.Fatalf("%+v: no error", r)
		}
		if strings.Contains(err.Error(), tok) || strings.Contains(fmt.Sprintf("%+v", err), tok) {
			t.Fatalf("%+v: error carries the device token: %v", r, err)
		}
	}
	// Closed connection to a dead endpoint: a dial error with the URL.
	e.fake.Close()
	err := e.client.Notify(t.Context(), device, alertFor(relay.TypeOTPReceived, time.Minute))
	if err == nil || strings.Contains(err.Error(), tok) {
		t.Fatalf("dial error carries the device token: %v", err)
	}
}

// A silent token proof is a background push carrying the code, not a
// withdraw.
func TestPayloadTokenProofIsNoWithdraw(t *testing.T) {
	a := &relay.Alert{EventID: relay.InternalID(relay.InternalTokenProof, "n"), Type: "edgerelay.token_proof", Silent: true,
		Data: map[string]string{relay.DataTokenProof: "CODE", "device_id": "phone"}}
	b, err := apns.Payload(a)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	aps, _ := m["aps"].(map[string]any)
	if m["withdraw"] != nil || m[relay.DataTokenProof] != "CODE" || aps["content-available"] != float64(1) || aps["alert"] != nil {
		t.Fatalf("token proof payload %s", b)
	}
}

// TestSendTimeoutEndsAHangingPush: a provider that never answers holds a
// push no longer than the send timeout (the push's context deadline; the
// HTTP client has no timeout of its own), and the push is retried.
func TestSendTimeoutEndsAHangingPush(t *testing.T) {
	e := setup(t, apns.Options{SendTimeout: 200 * time.Millisecond})
	e.fake.Script(tok, relaytest.Rule{Latency: time.Hour, Times: 1})
	start := time.Now()
	err := e.client.Notify(t.Context(), device, alertFor(relay.TypeOTPReceived, time.Minute))
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("push held for %v with a 200ms send timeout", took)
	}
	if o, _ := delivery.Classify(err); o != delivery.Retry {
		t.Fatalf("hanging push: %v, want a retry", err)
	}
}

// A push whose context has ended before it is sent is not sent, and the
// error says so (it used to read as a wait for a free stream, which sent
// operators looking at APNs).
func TestEndedContextSendsNothing(t *testing.T) {
	e := setup(t, apns.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 20 { // the old code said "stream" every other time
		err := e.client.Notify(ctx, device, alertFor(relay.TypeOTPReceived, time.Minute))
		if o, _ := delivery.Classify(err); o != delivery.Retry || !errors.Is(err, context.Canceled) || !errors.Is(err, delivery.ErrNotSent) || strings.Contains(err.Error(), "stream") {
			t.Fatalf("ended context: %v, want a retry that names the context's end", err)
		}
	}
	if n := e.fake.Requests(); n != 0 {
		t.Fatalf("%d requests reached APNs", n)
	}
}
