package relaytest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FCM limits the fake enforces.
const (
	FCMMaxPayload = 4096 // bytes of data + notification for a token message
	fcmMaxTTL     = 28 * 24 * time.Hour
)

// FCMErrorStatus maps each FcmError code to the HTTP status and Google
// status FCM answers it with.
var FCMErrorStatus = map[string]struct {
	Status  int
	Google  string
	Message string
}{
	"UNREGISTERED":           {404, "NOT_FOUND", "Requested entity was not found."},
	"INVALID_ARGUMENT":       {400, "INVALID_ARGUMENT", "Request contains an invalid argument."},
	"SENDER_ID_MISMATCH":     {403, "PERMISSION_DENIED", "SenderId mismatch"},
	"QUOTA_EXCEEDED":         {429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'."},
	"UNAVAILABLE":            {503, "UNAVAILABLE", "The service is currently unavailable."},
	"INTERNAL":               {500, "INTERNAL", "Internal error encountered."},
	"THIRD_PARTY_AUTH_ERROR": {401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"},
}

var googleStatus = map[int]string{
	400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
	409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

var (
	sendPath = regexp.MustCompile(`^/v1/projects/([^/]+)/messages:send$`)
	ttlRE    = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,9})?s$`)
)

// FCMOptions configures a FakeFCM.
type FCMOptions struct {
	ServerOptions
	// ProjectID the send path must name. Empty: any project.
	ProjectID string
	// ServiceAccountKey verifies the RS256 assertion the token endpoint
	// receives. Nil: assertions are parsed but their signature is not
	// checked.
	ServiceAccountKey *rsa.PublicKey
	// ClientEmail, when set, must be the assertion's iss claim.
	ClientEmail string
	// TokenURI is the aud the assertion must carry. Empty: URL + "/token".
	TokenURI string
	// TokenTTL is the lifetime of issued access tokens (default 1h).
	TokenTTL time.Duration
}

// FakeFCM is an in-process FCM HTTP v1 service with Google's OAuth2 token
// endpoint: HTTP/2 over TLS, validating the bearer token and the message,
// recording every send and answering as scripted. It is safe for concurrent
// use.
type FakeFCM struct {
	// URL is the base URL to use as the fcm endpoint.
	URL string
	// TokenURL is the OAuth2 token endpoint, URL + "/token".
	TokenURL string
	// CAFile is a PEM file with the server's certificate (set by NewFakeFCM).
	CAFile string

	opts FCMOptions
	srv  *server

	mu           sync.Mutex
	tokens       map[string]time.Time // access token -> expiry
	unregistered map[string]bool
	seq          atomic.Int64
	tokenReqs    atomic.Int64
}

// NewFakeFCM starts a FakeFCM for a test on a random 127.0.0.1 port, writes
// its CA file into tb.TempDir(), and closes it when the test ends.
func NewFakeFCM(tb testing.TB, opts FCMOptions) *FakeFCM {
	tb.Helper()
	f, err := StartFakeFCM(opts)
	if err != nil {
		tb.Fatalf("start fake FCM: %v", err)
	}
	tb.Cleanup(f.Close)
	if err := f.WriteCAFile(tb.TempDir() + "/fcm-ca.pem"); err != nil {
		tb.Fatal(err)
	}
	return f
}

// StartFakeFCM starts a FakeFCM as opts say. Call Close when done.
func StartFakeFCM(opts FCMOptions) (*FakeFCM, error) {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	f := &FakeFCM{opts: opts, tokens: map[string]time.Time{}, unregistered: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", f.serveToken)
	mux.HandleFunc("/", f.serveSend)
	s, err := startServer(mux, opts.ServerOptions, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("start fake FCM: %w", err)
	}
	f.srv, f.URL, f.TokenURL = s, s.url, s.url+"/token"
	if f.opts.TokenURI == "" {
		f.opts.TokenURI = f.TokenURL
	}
	return f, nil
}

// Close stops the server. Safe to call more than once.
func (f *FakeFCM) Close() { f.srv.close() }

// CertPEM returns the server's certificate, PEM encoded.
func (f *FakeFCM) CertPEM() []byte { return f.srv.caPEM }

// WriteCAFile writes CertPEM to path and remembers it in CAFile.
func (f *FakeFCM) WriteCAFile(path string) error {
	if err := writeCA(path, f.srv.caPEM); err != nil {
		return err
	}
	f.CAFile = path
	return nil
}

// Script adds a rule for sends to token ("" = global). Reason is an FcmError
// code (UNREGISTERED, QUOTA_EXCEEDED, …), answered with its status and
// details, or a bare Google status (UNAUTHENTICATED, NOT_FOUND, …), answered
// without FcmError details.
func (f *FakeFCM) Script(token string, r Rule) { f.srv.script.add(token, r) }

// ClearScript removes every rule.
func (f *FakeFCM) ClearScript() { f.srv.script.clear() }

// Unregister makes sends to token answer 404 UNREGISTERED.
func (f *FakeFCM) Unregister(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unregistered[token] = true
}

// IssueToken returns a fresh access token the send endpoint accepts, as if
// the token endpoint had issued it.
func (f *FakeFCM) IssueToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	tok := "ya29.fake-" + hex.EncodeToString(b[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[tok] = time.Now().Add(f.opts.TokenTTL)
	return tok
}

// Abandoned returns the requests whose client went away while a rule's
// Latency held them.
func (f *FakeFCM) Abandoned() []Push { return f.srv.rec.Abandoned() }

// RevokeTokens makes every access token issued so far invalid, as when the
// service account's key is rotated or its tokens are revoked: sends with
// them are answered 401 UNAUTHENTICATED; a token fetched afterwards works.
func (f *FakeFCM) RevokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

// Pushes returns a copy of the sends kept (see ServerOptions.MaxRecorded),
// in arrival order.
func (f *FakeFCM) Pushes() []Push { return f.srv.rec.all() }

// Reset forgets recorded sends and restarts WaitForPushes' count (the
// request and connection counters keep counting).
func (f *FakeFCM) Reset() { f.srv.rec.reset() }

// Requests counts the requests received on the send endpoint.
func (f *FakeFCM) Requests() int { return int(f.srv.rec.requests.Load()) }

// Holding counts the requests a rule's latency holds now (received, not
// yet answered).
func (f *FakeFCM) Holding() int { return int(f.srv.rec.holding.Load()) }

// TokenRequests counts the requests received on the token endpoint.
func (f *FakeFCM) TokenRequests() int { return int(f.tokenReqs.Load()) }

// Connections counts the TCP connections accepted.
func (f *FakeFCM) Connections() int { return int(f.srv.rec.conns.Load()) }

// WaitForPushes blocks until at least n sends were recorded since start or
// the last Reset, and returns the sends kept; it fails when ctx ends first.
func (f *FakeFCM) WaitForPushes(ctx context.Context, n int) ([]Push, error) {
	return f.srv.rec.wait(ctx, n)
}

func (f *FakeFCM) serveToken(w http.ResponseWriter, r *http.Request) {
	f.tokenReqs.Add(1)
	fail := func(code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		fail("invalid_request", "token endpoint requires POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		fail("invalid_request", "bad form body")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		fail("unsupported_grant_type", "Invalid grant_type: "+gt)
		return
	}
	t, err := parseJWT(r.PostForm.Get("assertion"))
	if err != nil {
		fail("invalid_grant", "Invalid JWT: "+err.Error())
		return
	}
	if f.opts.ServiceAccountKey != nil {
		if err := t.verifyRS256(f.opts.ServiceAccountKey); err != nil {
			fail("invalid_grant", "Invalid JWT Signature.")
			return
		}
	} else if t.algName != "RS256" {
		fail("invalid_grant", "Invalid JWT: alg must be RS256")
		return
	}
	if f.opts.ClientEmail != "" && t.str(t.claims, "iss") != f.opts.ClientEmail {
		fail("invalid_grant", "Invalid JWT: unknown issuer")
		return
	}
	if aud := t.str(t.claims, "aud"); aud != f.opts.TokenURI {
		fail("invalid_grant", fmt.Sprintf("Invalid JWT: aud %q, want %q", aud, f.opts.TokenURI))
		return
	}
	now := time.Now()
	iat, ok1 := t.num("iat")
	exp, ok2 := t.num("exp")
	if !ok1 || !ok2 || time.Unix(iat, 0).After(now.Add(time.Minute)) || !time.Unix(exp, 0).After(now) || exp-iat > 3600 {
		fail("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
		return
	}
	if t.str(t.claims, "scope") == "" {
		fail("invalid_scope", "Invalid JWT: no scope")
		return
	}
	tok := f.IssueToken()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "expires_in": int(f.opts.TokenTTL / time.Second), "token_type": "Bearer",
	})
}

func (f *FakeFCM) serveSend(w http.ResponseWriter, r *http.Request) {
	m := sendPath.FindStringSubmatch(r.URL.Path)
	if m == nil || r.Method != http.MethodPost {
		writeGoogleError(w, 404, "NOT_FOUND", "", "The requested URL "+r.URL.Path+" was not found on this server.")
		return
	}
	f.srv.rec.requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	p := Push{Provider: "fcm", Time: time.Now(), Header: r.Header.Clone(), Body: body}
	var req struct {
		ValidateOnly bool           `json:"validate_only"`
		Message      map[string]any `json:"message"`
	}
	jsonErr := json.Unmarshal(body, &req)
	p.Payload = req.Message
	p.Token = str(req.Message["token"])

	status, code, msg := f.validate(r, m[1], jsonErr, req.Message, len(body))
	rule := Rule{Status: status, Reason: code}
	if status == 0 {
		if sr, ok := f.srv.script.match(p.Token); ok {
			rule = sr
			if !f.srv.sleep(r, rule.Latency) {
				f.srv.rec.abandon(p)
				return
			}
			if f.srv.act(r, rule.Action) {
				p.Reason = "(connection action)"
				f.srv.rec.add(p)
				return
			}
		}
	}
	if rule.RetryAfter != "" {
		w.Header().Set("Retry-After", rule.RetryAfter)
	}
	p.Reason = rule.Reason
	switch {
	case rule.Status == 0 && rule.Reason == "":
		p.Status = http.StatusOK
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"name":"projects/%s/messages/0:%d%%fake"}`, m[1], f.seq.Add(1))
	case rule.Body != "":
		p.Status = rule.Status
		if p.Status == 0 {
			p.Status = http.StatusBadGateway
		}
		w.WriteHeader(p.Status)
		io.WriteString(w, rule.Body)
	default:
		p.Status = writeFCMError(w, rule.Status, rule.Reason, msg)
	}
	f.srv.rec.add(p)
}

// validate checks a send the way FCM does. It returns 0 when valid, else the
// status, the FcmError code or Google status, and a message.
func (f *FakeFCM) validate(r *http.Request, project string, jsonErr error, msg map[string]any, size int) (int, string, string) {
	tok, ok := bearer(r)
	if !ok {
		return 401, "UNAUTHENTICATED", "Request is missing required authentication credential. Expected OAuth 2 access token."
	}
	f.mu.Lock()
	exp, known := f.tokens[tok]
	f.mu.Unlock()
	if !known || time.Now().After(exp) {
		return 401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token."
	}
	if f.opts.ProjectID != "" && project != f.opts.ProjectID {
		return 404, "NOT_FOUND", "Requested entity was not found."
	}
	if jsonErr != nil || msg == nil {
		return 400, "INVALID_ARGUMENT", "Invalid JSON payload received."
	}
	targets := 0
	for _, k := range []string{"token", "topic", "condition"} {
		if s := str(msg[k]); s != "" {
			targets++
		}
	}
	if targets != 1 {
		return 400, "INVALID_ARGUMENT", "Exactly one of token, topic or condition must be specified."
	}
	if data, ok := msg["data"]; ok {
		dm, ok := data.(map[string]any)
		if !ok {
			return 400, "INVALID_ARGUMENT", "Invalid value at 'message.data'."
		}
		for k, v := range dm {
			if _, ok := v.(string); !ok {
				return 400, "INVALID_ARGUMENT", fmt.Sprintf("Invalid value at 'message.data[%s].value' (TYPE_STRING).", k)
			}
		}
	}
	if a, ok := msg["android"].(map[string]any); ok {
		if pr := str(a["priority"]); pr != "" && pr != "normal" && pr != "high" && pr != "NORMAL" && pr != "HIGH" {
			return 400, "INVALID_ARGUMENT", "Invalid value at 'message.android.priority'."
		}
		if ttl, ok := a["ttl"]; ok {
			s := str(ttl)
			d, err := time.ParseDuration(s)
			if !ttlRE.MatchString(s) || err != nil || d < 0 || d > fcmMaxTTL {
				return 400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl'."
			}
		}
	}
	if fcmPayloadSize(msg) > FCMMaxPayload {
		return 400, "INVALID_ARGUMENT", "Message is too big."
	}
	f.mu.Lock()
	dead := f.unregistered[str(msg["token"])]
	f.mu.Unlock()
	if dead {
		return 404, "UNREGISTERED", ""
	}
	return 0, "", ""
}

// fcmPayloadSize approximates FCM's payload measure: the JSON size of the
// data and notification parts.
func fcmPayloadSize(msg map[string]any) int {
	n := 0
	for _, path := range [][]string{{"data"}, {"notification"}, {"android", "data"}, {"android", "notification"}} {
		if v := dig(msg, path...); v != nil {
			b, _ := json.Marshal(v)
			n += len(b)
		}
	}
	return n
}

// writeFCMError answers an FcmError code (with details) or a bare Google
// status; it returns the status written.
func writeFCMError(w http.ResponseWriter, status int, reason, msg string) int {
	if e, ok := FCMErrorStatus[reason]; ok {
		if status == 0 {
			status = e.Status
		}
		if msg == "" {
			msg = e.Message
		}
		writeGoogleError(w, status, e.Google, reason, msg)
		return status
	}
	if status == 0 {
		status = 500
		for s, g := range googleStatus {
			if g == reason {
				status = s
			}
		}
	}
	g := reason
	if g == "" {
		g = googleStatus[status]
	}
	if msg == "" {
		msg = strings.ToLower(strings.ReplaceAll(g, "_", " "))
	}
	writeGoogleError(w, status, g, "", msg)
	return status
}

func writeGoogleError(w http.ResponseWriter, status int, gStatus, fcmCode, msg string) {
	e := map[string]any{"code": status, "message": msg, "status": gStatus}
	if fcmCode != "" {
		e["details"] = []any{map[string]any{
			"@type":     "type.googleapis.com/google.firebase.fcm.v1.FcmError",
			"errorCode": fcmCode,
		}}
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": e})
}
