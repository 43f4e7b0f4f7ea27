package relaytest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sideshow/apns2/token"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testTopic = "com.example.demo"
	testKeyID = "ABC123DEFG"
	testTeam  = "TEAM123456"
	tok1      = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988"
)

func h2Client(t testing.TB, caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func newAPNs(t *testing.T) (*FakeAPNs, *ecdsa.PrivateKey, *http.Client) {
	key, _, err := GenerateAPNsKey()
	if err != nil {
		t.Fatal(err)
	}
	f := NewFakeAPNs(t, APNsOptions{Topic: testTopic, AuthKey: &key.PublicKey, KeyID: testKeyID, TeamID: testTeam})
	return f, key, h2Client(t, f.CertPEM())
}

func bearerFor(key *ecdsa.PrivateKey, kid, team string) string {
	tk := &token.Token{AuthKey: key, KeyID: kid, TeamID: team}
	tk.Generate()
	return tk.Bearer
}

type apnsReq struct {
	method, path string
	hdr          map[string]string
	body         string
	auth         string
}

func (r apnsReq) do(t *testing.T, c *http.Client, base string) (int, map[string]any, http.Header) {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, base+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.hdr {
		req.Header.Set(k, v)
	}
	if r.auth != "" {
		req.Header.Set("authorization", "bearer "+r.auth)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(res.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
	}
	return res.StatusCode, body, res.Header
}

func TestFakeAPNsValidation(t *testing.T) {
	f, key, c := newAPNs(t)
	good := bearerFor(key, testKeyID, testTeam)
	other, _, _ := GenerateAPNsKey()
	okHdr := func(kv ...string) map[string]string {
		h := map[string]string{"apns-topic": testTopic, "apns-push-type": "alert", "apns-priority": "10"}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(h, kv[i])
			} else {
				h[kv[i]] = kv[i+1]
			}
		}
		return h
	}
	path := "/3/device/" + tok1
	body := `{"aps":{"alert":"hi"}}`
	tests := []struct {
		name   string
		req    apnsReq
		status int
		reason string
	}{
		{"ok", apnsReq{path: path, hdr: okHdr(), body: body, auth: good}, 200, ""},
		{"bad apns-id", apnsReq{path: path, hdr: okHdr("apns-id", "nope"), body: body, auth: good}, 400, "BadMessageId"},
		{"GET", apnsReq{method: "GET", path: path, hdr: okHdr(), auth: good}, 405, "MethodNotAllowed"},
		{"bad path", apnsReq{path: "/2/device/" + tok1, hdr: okHdr(), body: body, auth: good}, 404, "BadPath"},
		{"missing token", apnsReq{path: "/3/device/", hdr: okHdr(), body: body, auth: good}, 400, "MissingDeviceToken"},
		{"non-hex token", apnsReq{path: "/3/device/xyz", hdr: okHdr(), body: body, auth: good}, 400, "BadDeviceToken"},
		{"missing topic", apnsReq{path: path, hdr: okHdr("apns-topic", ""), body: body, auth: good}, 400, "MissingTopic"},
		{"bad push type", apnsReq{path: path, hdr: okHdr("apns-push-type", "shout"), body: body, auth: good}, 400, "InvalidPushType"},
		{"no bearer", apnsReq{path: path, hdr: okHdr(), body: body}, 403, "MissingProviderToken"},
		{"garbage bearer", apnsReq{path: path, hdr: okHdr(), body: body, auth: "x.y.z"}, 403, "InvalidProviderToken"},
		{"wrong key", apnsReq{path: path, hdr: okHdr(), body: body, auth: bearerFor(other, testKeyID, testTeam)}, 403, "InvalidProviderToken"},
		{"wrong kid", apnsReq{path: path, hdr: okHdr(), body: body, auth: bearerFor(key, "OTHERKEYID", testTeam)}, 403, "InvalidProviderToken"},
		{"wrong team", apnsReq{path: path, hdr: okHdr(), body: body, auth: bearerFor(key, testKeyID, "OTHERTEAM")}, 403, "InvalidProviderToken"},
		{"wrong topic", apnsReq{path: path, hdr: okHdr("apns-topic", "com.other"), body: body, auth: good}, 400, "BadTopic"},
		{"bad priority", apnsReq{path: path, hdr: okHdr("apns-priority", "7"), body: body, auth: good}, 400, "BadPriority"},
		{"background prio 10", apnsReq{path: path, hdr: okHdr("apns-push-type", "background"), body: body, auth: good}, 400, "BadPriority"},
		{"background prio 5", apnsReq{path: path, hdr: okHdr("apns-push-type", "background", "apns-priority", "5"), body: body, auth: good}, 200, ""},
		{"bad expiration", apnsReq{path: path, hdr: okHdr("apns-expiration", "soon"), body: body, auth: good}, 400, "BadExpirationDate"},
		{"long collapse id", apnsReq{path: path, hdr: okHdr("apns-collapse-id", strings.Repeat("c", 65)), body: body, auth: good}, 400, "BadCollapseId"},
		{"empty payload", apnsReq{path: path, hdr: okHdr(), auth: good}, 400, "PayloadEmpty"},
		{"payload too large", apnsReq{path: path, hdr: okHdr(), body: `{"x":"` + strings.Repeat("a", 4100) + `"}`, auth: good}, 413, "PayloadTooLarge"},
		{"valid apns-id", apnsReq{path: path, hdr: okHdr("apns-id", "123E4567-E89B-12D3-A456-426614174000"), body: body, auth: good}, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, b, h := tc.req.do(t, c, f.URL)
			if st != tc.status || str(b["reason"]) != tc.reason {
				t.Fatalf("got %d %v, want %d %q", st, b, tc.status, tc.reason)
			}
			if h.Get("apns-id") == "" {
				t.Fatal("no apns-id in answer")
			}
		})
	}
	if got := f.Requests(); got != len(tests) {
		t.Fatalf("Requests() = %d, want %d", got, len(tests))
	}
	if got := f.Connections(); got != 1 {
		t.Fatalf("Connections() = %d, want 1 (HTTP/2 reuse)", got)
	}
}

func TestFakeAPNsExpiredProviderToken(t *testing.T) {
	f, key, c := newAPNs(t)
	// Sign a token issued two hours ago by hand: Generate uses time.Now.
	oldBearer := signES256(t, key, fmt.Sprintf(`{"alg":"ES256","kid":%q}`, testKeyID),
		fmt.Sprintf(`{"iss":%q,"iat":%d}`, testTeam, time.Now().Add(-2*time.Hour).Unix()))
	st, b, _ := apnsReq{path: "/3/device/" + tok1, hdr: map[string]string{"apns-topic": testTopic}, body: "{}", auth: oldBearer}.do(t, c, f.URL)
	if st != 403 || b["reason"] != "ExpiredProviderToken" {
		t.Fatalf("got %d %v", st, b)
	}
}

func TestFakeAPNsScriptAndRegistry(t *testing.T) {
	f, key, c := newAPNs(t)
	good := bearerFor(key, testKeyID, testTeam)
	send := func(tok string) (int, map[string]any, http.Header) {
		return apnsReq{path: "/3/device/" + tok, hdr: map[string]string{"apns-topic": testTopic}, body: "{}", auth: good}.do(t, c, f.URL)
	}
	dead := time.UnixMilli(1_700_000_000_123)
	f.Unregister(strings.ToUpper(tok1), dead)
	st, b, _ := send(tok1)
	if st != 410 || b["reason"] != "Unregistered" || int64(b["timestamp"].(float64)) != dead.UnixMilli() {
		t.Fatalf("unregistered: %d %v", st, b)
	}
	tok2 := strings.Repeat("ab", 32)
	f.Script(tok2, Rule{Reason: "TooManyRequests", RetryAfter: "7", Times: 2})
	for i := range 2 {
		st, b, h := send(tok2)
		if st != 429 || b["reason"] != "TooManyRequests" || h.Get("Retry-After") != "7" {
			t.Fatalf("attempt %d: %d %v %v", i, st, b, h)
		}
	}
	if st, _, _ := send(tok2); st != 200 {
		t.Fatalf("after Times: %d", st)
	}
	f.Script("", Rule{Status: 503, Reason: "Shutdown", Times: 1})
	if st, b, _ := send(tok2); st != 503 || b["reason"] != "Shutdown" {
		t.Fatalf("global: %d %v", st, b)
	}
	f.Script(tok2, Rule{Status: 502, Body: "<html>bad gateway</html>", Times: 1})
	req, _ := http.NewRequest("POST", f.URL+"/3/device/"+tok2, strings.NewReader("{}"))
	req.Header.Set("apns-topic", testTopic)
	req.Header.Set("authorization", "bearer "+good)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 502 || !bytes.HasPrefix(raw, []byte("<html>")) {
		t.Fatalf("raw body: %d %q", res.StatusCode, raw)
	}

	pushes, err := f.WaitForPushes(t.Context(), 6)
	if err != nil {
		t.Fatal(err)
	}
	if pushes[0].Status != 410 || pushes[0].Token != tok1 {
		t.Fatalf("first push recorded as %+v", pushes[0])
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.WaitForPushes(ctx, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForPushes past the count: %v", err)
	}
}

func TestFakeAPNsConnectionActions(t *testing.T) {
	f, key, c := newAPNs(t)
	good := bearerFor(key, testKeyID, testTeam)
	post := func() error {
		req, _ := http.NewRequest("POST", f.URL+"/3/device/"+tok1, strings.NewReader("{}"))
		req.Header.Set("apns-topic", testTopic)
		req.Header.Set("authorization", "bearer "+good)
		res, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return err
	}
	f.Script(tok1, Rule{Action: ActionResetStream, Times: 1})
	if err := post(); err == nil {
		t.Fatal("reset stream: no error")
	}
	f.Script(tok1, Rule{Action: ActionCloseConn, Times: 1})
	if err := post(); err == nil {
		t.Fatal("close conn: no error")
	}
	if err := post(); err != nil {
		t.Fatalf("after actions: %v", err)
	}
	if f.Connections() < 2 {
		t.Fatalf("Connections() = %d, want a reconnect", f.Connections())
	}
	// Latency is cut by the request's context; Holding counts the request
	// while the latency holds it.
	f.Script(tok1, Rule{Latency: time.Hour, Times: 1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", f.URL+"/3/device/"+tok1, strings.NewReader("{}"))
	req.Header.Set("apns-topic", testTopic)
	req.Header.Set("authorization", "bearer "+good)
	done := make(chan error, 1)
	go func() { _, err := c.Do(req); done <- err }()
	for deadline := time.Now().Add(10 * time.Second); f.Holding() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Holding() = %d while a request is held, want 1", f.Holding())
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("latency: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); f.Holding() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Holding() = %d after the client went away, want 0", f.Holding())
		}
	}
	if len(f.Abandoned()) != 1 {
		t.Fatalf("Abandoned() = %d requests, want the one held", len(f.Abandoned()))
	}
}

func TestScriptProbabilityIsSeeded(t *testing.T) {
	run := func() []bool {
		s := newScript(42)
		s.add("", Rule{Status: 500, Probability: 0.3})
		var out []bool
		for range 200 {
			_, ok := s.match("t")
			out = append(out, ok)
		}
		return out
	}
	a, b := run(), run()
	hits := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, different sequence")
		}
		if a[i] {
			hits++
		}
	}
	if hits < 30 || hits > 90 {
		t.Fatalf("%d hits of 200 at p=0.3", hits)
	}
}

func TestScriptOrder(t *testing.T) {
	s := newScript(1)
	s.add("", Rule{Status: 503})
	s.add("a", Rule{Status: 429, Times: 1})
	s.add("a", Rule{Status: 410})
	for i, want := range []int{429, 410, 410} {
		if r, _ := s.match("a"); r.Status != want {
			t.Fatalf("match %d: %d, want %d", i, r.Status, want)
		}
	}
	if r, _ := s.match("b"); r.Status != 503 {
		t.Fatalf("global: %d", r.Status)
	}
	s.clear()
	if _, ok := s.match("a"); ok {
		t.Fatal("rule after clear")
	}
}

func TestFakeAPNsClientCert(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := NewLeaf(ca, "client")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	f := NewFakeAPNs(t, APNsOptions{Topic: testTopic, RequireClientCert: true, ClientCAs: pool})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(f.CertPEM())
	cert, _ := leaf.TLSCertificate()
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{{"with cert", []tls.Certificate{cert}, true}, {"without cert", nil, false}} {
		tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: tc.certs}}
		c := &http.Client{Transport: tr}
		st, err := func() (int, error) {
			req, _ := http.NewRequest("POST", f.URL+"/3/device/"+tok1, strings.NewReader("{}"))
			req.Header.Set("apns-topic", testTopic)
			res, err := c.Do(req)
			if err != nil {
				return 0, err
			}
			res.Body.Close()
			return res.StatusCode, nil
		}()
		tr.CloseIdleConnections()
		if tc.ok && (err != nil || st != 200) || !tc.ok && err == nil {
			t.Fatalf("%s: status %d err %v", tc.name, st, err)
		}
	}
}

func TestFakeFCM(t *testing.T) {
	dir := t.TempDir()
	f0 := NewFakeFCM(t, FCMOptions{ProjectID: "p1"})
	creds, err := WriteDevCredentials(dir, DevCredentialsOptions{ProjectID: "p1", TokenURI: f0.TokenURL})
	if err != nil {
		t.Fatal(err)
	}
	f0.Close()
	// A second fake verifying the service account's key; its URL differs,
	// so rewrite the credentials (same key) to point at it.
	f := NewFakeFCM(t, FCMOptions{ProjectID: "p1", ServiceAccountKey: &creds.FCMKey.PublicKey, ClientEmail: creds.FCMClientEmail})
	creds, err = WriteDevCredentials(dir, DevCredentialsOptions{ProjectID: "p1", TokenURI: f.TokenURL})
	if err != nil {
		t.Fatal(err)
	}
	c := h2Client(t, f.CertPEM())
	js, _ := os.ReadFile(creds.FCMCredentialsFile)
	cfg, err := google.JWTConfigFromJSON(js, "https://www.googleapis.com/auth/firebase.messaging")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TokenURL != f.TokenURL {
		t.Fatalf("token_uri %q, want %q", cfg.TokenURL, f.TokenURL)
	}
	tok, err := cfg.TokenSource(context.WithValue(t.Context(), oauth2.HTTPClient, c)).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || f.TokenRequests() != 1 {
		t.Fatalf("token %+v after %d requests", tok, f.TokenRequests())
	}

	// Wrong key: invalid_grant.
	other, err := WriteDevCredentials(t.TempDir(), DevCredentialsOptions{ProjectID: "p1", TokenURI: f.TokenURL, ClientEmail: creds.FCMClientEmail})
	if err != nil {
		t.Fatal(err)
	}
	js2, _ := os.ReadFile(other.FCMCredentialsFile)
	cfg2, _ := google.JWTConfigFromJSON(js2, "s")
	_, err = cfg2.TokenSource(context.WithValue(t.Context(), oauth2.HTTPClient, c)).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != 400 || !bytes.Contains(re.Body, []byte("invalid_grant")) {
		t.Fatalf("wrong key: %v", err)
	}
	// Wrong audience.
	cfg.TokenURL = f.URL + "/token?x=1"
	if _, err := cfg.TokenSource(context.WithValue(t.Context(), oauth2.HTTPClient, c)).Token(); !errors.As(err, &re) {
		t.Fatalf("wrong aud: %v", err)
	}

	send := func(auth, project, body string) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest("POST", f.URL+"/v1/projects/"+project+"/messages:send", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m, res.Header
	}
	code := func(m map[string]any) string {
		d, _ := dig(m, "error", "details").([]any)
		if len(d) == 0 {
			return str(dig(m, "error", "status"))
		}
		return str(d[0].(map[string]any)["errorCode"])
	}
	at := tok.AccessToken
	ok := `{"message":{"token":"t1","data":{"a":"b"},"android":{"priority":"high","ttl":"60s","collapse_key":"c"}}}`
	f.Unregister("dead")
	f.Script("t3", Rule{Reason: "QUOTA_EXCEEDED", RetryAfter: "30", Times: 1})
	tests := []struct {
		name, auth, project, body string
		status                    int
		code                      string
	}{
		{"ok", at, "p1", ok, 200, ""},
		{"no auth", "", "p1", ok, 401, "UNAUTHENTICATED"},
		{"unknown token", "nope", "p1", ok, 401, "UNAUTHENTICATED"},
		{"wrong project", at, "p2", ok, 404, "NOT_FOUND"},
		{"bad json", at, "p1", `{`, 400, "INVALID_ARGUMENT"},
		{"no target", at, "p1", `{"message":{"data":{"a":"b"}}}`, 400, "INVALID_ARGUMENT"},
		{"two targets", at, "p1", `{"message":{"token":"a","topic":"b"}}`, 400, "INVALID_ARGUMENT"},
		{"non-string data", at, "p1", `{"message":{"token":"a","data":{"n":1}}}`, 400, "INVALID_ARGUMENT"},
		{"bad ttl", at, "p1", `{"message":{"token":"a","android":{"ttl":"-1s"}}}`, 400, "INVALID_ARGUMENT"},
		{"bad priority", at, "p1", `{"message":{"token":"a","android":{"priority":"urgent"}}}`, 400, "INVALID_ARGUMENT"},
		{"too big", at, "p1", `{"message":{"token":"a","data":{"x":"` + strings.Repeat("a", 4100) + `"}}}`, 400, "INVALID_ARGUMENT"},
		{"unregistered", at, "p1", `{"message":{"token":"dead"}}`, 404, "UNREGISTERED"},
		{"scripted quota", at, "p1", `{"message":{"token":"t3"}}`, 429, "QUOTA_EXCEEDED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, m, h := send(tc.auth, tc.project, tc.body)
			if st != tc.status || tc.code != "" && code(m) != tc.code {
				t.Fatalf("got %d %v", st, m)
			}
			if st == 200 && !strings.HasPrefix(str(m["name"]), "projects/p1/messages/") {
				t.Fatalf("name %v", m)
			}
			if tc.code == "QUOTA_EXCEEDED" && h.Get("Retry-After") != "30" {
				t.Fatalf("Retry-After %q", h.Get("Retry-After"))
			}
		})
	}
	ps := f.Pushes()
	if len(ps) != len(tests) || ps[0].Token != "t1" || ps[0].Priority() != "high" || ps[0].CollapseID() != "c" || ps[0].PushType() != "data" {
		t.Fatalf("recorded %d pushes, first %+v", len(ps), ps[0])
	}
}

func TestWriteDevCredentialsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	a, err := WriteDevCredentials(dir, DevCredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, n := range []string{DevAPNsKeyFile, DevFCMCredentialsFile, DevCAFile, DevCertFile, DevKeyFile, DevJWTSecretFile} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", n, err)
		}
		files[n] = b
	}
	var sa map[string]string
	if err := json.Unmarshal(files[DevFCMCredentialsFile], &sa); err != nil {
		t.Fatal(err)
	}
	if sa["type"] != "service_account" || sa["token_uri"] != DefaultDevTokenURI || sa["project_id"] != DefaultDevProjectID || !strings.Contains(sa["private_key"], "PRIVATE KEY") {
		t.Fatalf("service account %v", sa)
	}
	if len(files[DevJWTSecretFile]) != 64 {
		t.Fatalf("jwt.secret is %d bytes", len(files[DevJWTSecretFile]))
	}
	b, err := WriteDevCredentials(dir, DevCredentialsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range files {
		got, _ := os.ReadFile(filepath.Join(dir, n))
		if !bytes.Equal(got, want) {
			t.Fatalf("%s changed on the second run", n)
		}
	}
	if !a.APNsKey.Equal(b.APNsKey) || !a.FCMKey.Equal(b.FCMKey) {
		t.Fatal("keys changed")
	}
	// The leaf verifies against the CA for 127.0.0.1 and localhost.
	leaf, _ := x509.ParseCertificate(b.Certificate.Certificate[0])
	for _, h := range []string{"127.0.0.1", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.CAPool, DNSName: h}); err != nil {
			t.Fatalf("verify for %s: %v", h, err)
		}
	}
	// A new token URI rewrites the service account with the same key.
	c, err := WriteDevCredentials(dir, DevCredentialsOptions{TokenURI: "https://127.0.0.1:9/token"})
	if err != nil || !c.FCMKey.Equal(a.FCMKey) || c.FCMTokenURI != "https://127.0.0.1:9/token" {
		t.Fatalf("rewrite: %v", err)
	}
	if _, err := WriteDevCredentials(filepath.Join(dir, DevJWTSecretFile, "x"), DevCredentialsOptions{}); err == nil {
		t.Fatal("no error for a dir under a file")
	}
}

func TestStartDevFakes(t *testing.T) {
	if _, err := StartDevFakes(t.Context(), DevFakesOptions{}); err == nil || !strings.Contains(err.Error(), "Topic") {
		t.Fatalf("missing fields: %v", err)
	}
	var out syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	d, err := StartDevFakes(ctx, DevFakesOptions{
		Dir: t.TempDir(), APNSAddr: "127.0.0.1:0", FCMAddr: "127.0.0.1:0",
		Topic: testTopic, KeyID: testKeyID, TeamID: testTeam, Output: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(d.FCM.URL)
	if d.Credentials.FCMTokenURI != "https://"+u.Host+"/token" || d.FCM.TokenURL != d.Credentials.FCMTokenURI {
		t.Fatalf("token URI %q vs fake %q", d.Credentials.FCMTokenURI, d.FCM.URL)
	}
	caPEM, _ := os.ReadFile(d.Credentials.CAFile)
	c := h2Client(t, caPEM)
	good := bearerFor(d.Credentials.APNsKey, testKeyID, testTeam)
	st, _, _ := apnsReq{path: "/3/device/" + tok1, body: `{"aps":{"alert":{"title":"Hello","body":"World"},"category":"APPROVE_DENY"}}`,
		hdr: map[string]string{"apns-topic": testTopic, "apns-priority": "10", "apns-push-type": "alert", "apns-collapse-id": "evt-1"}, auth: good}.do(t, c, d.APNs.URL)
	if st != 200 {
		t.Fatalf("push to dev APNs: %d", st)
	}
	want := `apns 200 token=1f2e3d4c… type=alert prio=10 collapse="evt-1" category="APPROVE_DENY" title="Hello" body="World"`
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("printout\n got %s\nwant %s", got, want)
	}
	cancel()
	d.Close() // waits for the ctx-triggered shutdown
	c.CloseIdleConnections()
}

func TestPushString(t *testing.T) {
	p := Push{Provider: "fcm", Status: 404, Reason: "UNREGISTERED", Token: "abc",
		Payload: map[string]any{"token": "abc", "notification": map[string]any{"title": "T", "body": "B"},
			"android": map[string]any{"priority": "normal", "collapse_key": "k"}}}
	want := `fcm 404 UNREGISTERED token=abc type=notification prio=normal collapse="k" title="T" body="B"`
	if got := p.String(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func (s *syncBuffer) lock() {
	if s.mu == nil {
		s.mu = make(chan struct{}, 1)
	}
	s.mu <- struct{}{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.lock()
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.lock()
	defer func() { <-s.mu }()
	return s.b.String()
}

func TestRecorderKeepsLatest(t *testing.T) {
	r := newRecorder(4, nil)
	for i := range 10 {
		r.add(Push{Token: strconv.Itoa(i)})
	}
	got := r.all()
	if len(got) > 4 || got[len(got)-1].Token != "9" {
		t.Fatalf("kept %+v", got)
	}
	if _, err := r.wait(t.Context(), 10); err != nil {
		t.Fatal(err)
	}
	r.reset()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := r.wait(ctx, 1); err == nil {
		t.Fatal("wait after reset counted old pushes")
	}
}
