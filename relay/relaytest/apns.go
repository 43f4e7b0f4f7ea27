package relaytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// APNs limits the fake enforces, as Apple documents them.
const (
	APNsMaxPayload     = 4096 // bytes, every push type but VoIP
	APNsMaxVoIPPayload = 5120
	APNsMaxCollapseID  = 64
	apnsTokenMaxAge    = time.Hour
)

// APNsReasonStatus maps each APNs reason to the HTTP status Apple answers it
// with.
var APNsReasonStatus = map[string]int{
	"BadCollapseId":               400,
	"BadDeviceToken":              400,
	"BadExpirationDate":           400,
	"BadMessageId":                400,
	"BadPriority":                 400,
	"BadTopic":                    400,
	"DeviceTokenNotForTopic":      400,
	"DuplicateHeaders":            400,
	"IdleTimeout":                 400,
	"InvalidPushType":             400,
	"MissingDeviceToken":          400,
	"MissingTopic":                400,
	"PayloadEmpty":                400,
	"TopicDisallowed":             400,
	"BadCertificate":              403,
	"BadCertificateEnvironment":   403,
	"ExpiredProviderToken":        403,
	"Forbidden":                   403,
	"InvalidProviderToken":        403,
	"MissingProviderToken":        403,
	"UnrelatedKeyIdInToken":       403,
	"BadEnvironmentKeyIdInToken":  403,
	"BadPath":                     404,
	"MethodNotAllowed":            405,
	"ExpiredToken":                410,
	"Unregistered":                410,
	"PayloadTooLarge":             413,
	"TooManyProviderTokenUpdates": 429,
	"TooManyRequests":             429,
	"InternalServerError":         500,
	"ServiceUnavailable":          503,
	"Shutdown":                    503,
}

var apnsPushTypes = map[string]bool{
	"alert": true, "background": true, "location": true, "voip": true, "complication": true,
	"fileprovider": true, "mdm": true, "liveactivity": true, "pushtotalk": true, "widgets": true,
}

var (
	hexToken = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	uuidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// APNsOptions configures a FakeAPNs.
type APNsOptions struct {
	ServerOptions
	// Topic every push must carry in apns-topic. Empty: any non-empty topic.
	Topic string
	// Token auth: the bearer JWT must be ES256, signed by the private half of
	// AuthKey, with header kid == KeyID and claim iss == TeamID, and issued
	// less than an hour ago. Nil AuthKey (and no client certificates): the
	// bearer is not checked.
	AuthKey *ecdsa.PublicKey
	KeyID   string
	TeamID  string
	// Certificate auth: when true, the TLS handshake requires a client
	// certificate (verified against ClientCAs when set) and the bearer is
	// ignored.
	RequireClientCert bool
	ClientCAs         *x509.CertPool
}

// FakeAPNs is an in-process APNs provider API: HTTP/2 over TLS, validating
// like Apple, recording every push and answering as scripted. It is safe for
// concurrent use.
type FakeAPNs struct {
	// URL is the base URL to use as the apns endpoint, e.g.
	// https://127.0.0.1:40123.
	URL string
	// CAFile is a PEM file with the certificate the server presents (set by
	// NewFakeAPNs; empty from StartFakeAPNs unless WriteCAFile was called).
	CAFile string

	opts APNsOptions
	srv  *server

	mu           sync.Mutex
	unregistered map[string]time.Time
	verified     map[string]int64 // bearer -> iat, for tokens whose signature checked out
}

// NewFakeAPNs starts a FakeAPNs for a test on a random 127.0.0.1 port,
// writes its CA file into tb.TempDir(), and closes it when the test ends.
func NewFakeAPNs(tb testing.TB, opts APNsOptions) *FakeAPNs {
	tb.Helper()
	f, err := StartFakeAPNs(opts)
	if err != nil {
		tb.Fatalf("start fake APNs: %v", err)
	}
	tb.Cleanup(f.Close)
	if err := f.WriteCAFile(tb.TempDir() + "/apns-ca.pem"); err != nil {
		tb.Fatal(err)
	}
	return f
}

// StartFakeAPNs starts a FakeAPNs as opts say. Call Close when done.
func StartFakeAPNs(opts APNsOptions) (*FakeAPNs, error) {
	f := &FakeAPNs{opts: opts, unregistered: map[string]time.Time{}, verified: map[string]int64{}}
	ca := tls.NoClientCert
	if opts.RequireClientCert {
		ca = tls.RequireAnyClientCert
		if opts.ClientCAs != nil {
			ca = tls.RequireAndVerifyClientCert
		}
	}
	s, err := startServer(http.HandlerFunc(f.serve), opts.ServerOptions, ca, opts.ClientCAs)
	if err != nil {
		return nil, fmt.Errorf("start fake APNs: %w", err)
	}
	f.srv, f.URL = s, s.url
	return f, nil
}

// Close stops the server. Safe to call more than once.
func (f *FakeAPNs) Close() { f.srv.close() }

// CertPEM returns the server's certificate, PEM encoded (the root to trust).
func (f *FakeAPNs) CertPEM() []byte { return f.srv.caPEM }

// WriteCAFile writes CertPEM to path and remembers it in CAFile.
func (f *FakeAPNs) WriteCAFile(path string) error {
	if err := writeCA(path, f.srv.caPEM); err != nil {
		return err
	}
	f.CAFile = path
	return nil
}

// Script adds a rule for pushes to token; token "" makes it global (applied
// when no rule for the push's own token matches). Rules apply in the order
// added.
func (f *FakeAPNs) Script(token string, r Rule) { f.srv.script.add(token, r) }

// RotateAuthKey makes the fake accept provider tokens signed with key
// under key id kid only, as Apple does once a key is revoked: tokens of
// the old key are refused (InvalidProviderToken) from now on.
func (f *FakeAPNs) RotateAuthKey(key *ecdsa.PublicKey, kid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opts.AuthKey, f.opts.KeyID = key, kid
	clear(f.verified)
}

// ClearScript removes every rule.
func (f *FakeAPNs) ClearScript() { f.srv.script.clear() }

// Unregister makes pushes to token answer 410 Unregistered with timestamp at
// (zero: now).
func (f *FakeAPNs) Unregister(token string, at time.Time) {
	if at.IsZero() {
		at = time.Now()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unregistered[strings.ToLower(token)] = at
}

// Abandoned returns the requests whose client went away while a rule's
// Latency held them.
func (f *FakeAPNs) Abandoned() []Push { return f.srv.rec.Abandoned() }

// Pushes returns a copy of the pushes kept (see ServerOptions.MaxRecorded),
// in arrival order.
func (f *FakeAPNs) Pushes() []Push { return f.srv.rec.all() }

// Reset forgets recorded pushes and restarts WaitForPushes' count (the
// request and connection counters keep counting).
func (f *FakeAPNs) Reset() { f.srv.rec.reset() }

// Requests counts the requests received on the push endpoint.
func (f *FakeAPNs) Requests() int { return int(f.srv.rec.requests.Load()) }

// Holding counts the requests a rule's latency holds now (received, not
// yet answered).
func (f *FakeAPNs) Holding() int { return int(f.srv.rec.holding.Load()) }

// Connections counts the TCP connections accepted.
func (f *FakeAPNs) Connections() int { return int(f.srv.rec.conns.Load()) }

// WaitForPushes blocks until at least n pushes were recorded since start or
// the last Reset, and returns the pushes kept; it fails when ctx ends first.
func (f *FakeAPNs) WaitForPushes(ctx context.Context, n int) ([]Push, error) {
	return f.srv.rec.wait(ctx, n)
}

func (f *FakeAPNs) serve(w http.ResponseWriter, r *http.Request) {
	f.srv.rec.requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	p := Push{Provider: "apns", Time: time.Now(), Header: r.Header.Clone(), Body: body}
	p.Token = strings.TrimPrefix(r.URL.Path, "/3/device/")
	if len(body) > 0 {
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			p.Payload = m
		}
	}

	reason, ts := f.validate(r, p.Token, body)
	rule := Rule{Reason: reason, Timestamp: ts}
	if reason == "" {
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
	status := rule.Status
	if status == 0 && rule.Reason != "" {
		if status = APNsReasonStatus[rule.Reason]; status == 0 {
			status = http.StatusBadRequest
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	id := r.Header.Get("apns-id")
	if id == "" {
		id = newUUID()
	}
	w.Header().Set("apns-id", id)
	if rule.RetryAfter != "" {
		w.Header().Set("Retry-After", rule.RetryAfter)
	}
	p.Status, p.Reason = status, rule.Reason
	if status == http.StatusOK {
		w.Header().Set("apns-unique-id", newUUID())
		w.WriteHeader(status)
	} else {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		switch {
		case rule.Body != "":
			io.WriteString(w, rule.Body)
		case status == http.StatusGone:
			at := rule.Timestamp
			if at.IsZero() {
				at = p.Time
			}
			fmt.Fprintf(w, `{"reason":%q,"timestamp":%d}`, rule.Reason, at.UnixMilli())
		default:
			fmt.Fprintf(w, `{"reason":%q}`, rule.Reason)
		}
	}
	f.srv.rec.add(p)
}

// validate checks a push the way APNs does, in the order of pushy's
// ValidatingPushNotificationHandler. It returns the rejection reason ("" when
// valid) and, for 410, the token's timestamp.
func (f *FakeAPNs) validate(r *http.Request, token string, body []byte) (string, time.Time) {
	h := r.Header
	for _, k := range []string{"apns-id", "apns-topic", "apns-push-type", "apns-priority", "apns-expiration", "apns-collapse-id", "authorization"} {
		if len(h.Values(k)) > 1 {
			return "DuplicateHeaders", time.Time{}
		}
	}
	if id := h.Get("apns-id"); id != "" && !uuidRE.MatchString(id) {
		return "BadMessageId", time.Time{}
	}
	if r.Method != http.MethodPost {
		return "MethodNotAllowed", time.Time{}
	}
	if !strings.HasPrefix(r.URL.Path, "/3/device/") {
		return "BadPath", time.Time{}
	}
	if token == "" {
		return "MissingDeviceToken", time.Time{}
	}
	if !hexToken.MatchString(token) || len(token)%2 != 0 || len(token) > 200 {
		return "BadDeviceToken", time.Time{}
	}
	topic := h.Get("apns-topic")
	if topic == "" {
		return "MissingTopic", time.Time{}
	}
	pushType := h.Get("apns-push-type")
	if pushType != "" && !apnsPushTypes[pushType] {
		return "InvalidPushType", time.Time{}
	}
	if reason := f.authenticate(r); reason != "" {
		return reason, time.Time{}
	}
	if f.opts.Topic != "" && topic != f.opts.Topic {
		return "BadTopic", time.Time{}
	}
	if pr := h.Get("apns-priority"); pr != "" {
		if pr != "5" && pr != "10" && pr != "1" {
			return "BadPriority", time.Time{}
		}
	}
	if pushType == "background" && h.Get("apns-priority") != "5" {
		return "BadPriority", time.Time{}
	}
	if exp := h.Get("apns-expiration"); exp != "" {
		if _, err := strconv.ParseInt(exp, 10, 64); err != nil {
			return "BadExpirationDate", time.Time{}
		}
	}
	if len(h.Get("apns-collapse-id")) > APNsMaxCollapseID {
		return "BadCollapseId", time.Time{}
	}
	f.mu.Lock()
	at, dead := f.unregistered[strings.ToLower(token)]
	f.mu.Unlock()
	if dead {
		return "Unregistered", at
	}
	if len(body) == 0 {
		return "PayloadEmpty", time.Time{}
	}
	limit := APNsMaxPayload
	if pushType == "voip" {
		limit = APNsMaxVoIPPayload
	}
	if len(body) > limit {
		return "PayloadTooLarge", time.Time{}
	}
	return "", time.Time{}
}

// authenticate checks the provider token (or, in certificate mode, nothing:
// the TLS handshake already required a certificate).
func (f *FakeAPNs) authenticate(r *http.Request) string {
	if f.opts.RequireClientCert {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return "BadCertificate"
		}
		return ""
	}
	raw, ok := bearer(r)
	// Like APNs, verify a token once and then only check its age.
	f.mu.Lock()
	key, kid := f.opts.AuthKey, f.opts.KeyID // RotateAuthKey changes them
	iat, seen := f.verified[raw]
	f.mu.Unlock()
	if !ok || raw == "" {
		if key == nil {
			return ""
		}
		return "MissingProviderToken"
	}
	if key == nil {
		return ""
	}
	if seen {
		if time.Since(time.Unix(iat, 0)) > apnsTokenMaxAge {
			return "ExpiredProviderToken"
		}
		return ""
	}
	t, err := parseJWT(raw)
	if err != nil {
		return "InvalidProviderToken"
	}
	if t.str(t.header, "kid") != kid || t.str(t.claims, "iss") != f.opts.TeamID {
		return "InvalidProviderToken"
	}
	if err := t.verifyES256(key); err != nil {
		return "InvalidProviderToken"
	}
	iat, ok = t.num("iat")
	if !ok {
		return "InvalidProviderToken"
	}
	if time.Since(time.Unix(iat, 0)) > apnsTokenMaxAge {
		return "ExpiredProviderToken"
	}
	f.mu.Lock()
	if len(f.verified) >= 1024 {
		clear(f.verified)
	}
	f.verified[raw] = iat
	f.mu.Unlock()
	return ""
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	s := hex.EncodeToString(b[:])
	return strings.ToUpper(s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:])
}
