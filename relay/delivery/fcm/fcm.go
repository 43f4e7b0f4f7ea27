package fcm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/api/option"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/delivery"
)

// Provider is the name in delivery errors and logs.
const Provider = "fcm"

// Defaults and limits.
const (
	// DefaultMaxInFlight caps concurrent sends per client, under the ~100
	// streams Google's front ends allow per connection.
	DefaultMaxInFlight = 100
	// MaxPayload is FCM's limit on a token message's data + notification.
	MaxPayload = 4096
	// QuotaRetryFloor is the least wait after QUOTA_EXCEEDED.
	QuotaRetryFloor = time.Minute
)

// Scopes requested for the service account's access token.
var Scopes = []string{
	"https://www.googleapis.com/auth/cloud-platform",
	"https://www.googleapis.com/auth/firebase.messaging",
}

var _ delivery.Notifier = (*Client)(nil)

// Options are a Client's settings beyond the config block.
type Options struct {
	// Logger. Nil: no logging.
	Logger hclog.Logger
	// MaxInFlight caps concurrent sends (default DefaultMaxInFlight).
	MaxInFlight int
	// SendTimeout bounds one send (the SDK's internal retries included)
	// when the context and the alert's expiry allow longer (default
	// delivery.SendTimeout).
	SendTimeout time.Duration
}

// Client sends alerts through FCM. It is safe for concurrent use; keep one
// per app.
type Client struct {
	msg     *messaging.Client
	base    *http.Transport
	sem     chan struct{}
	timeout time.Duration
	log     hclog.Logger
}

// New builds a client from an app's fcm block. It reads the credentials and
// CA files; it opens no connection and fetches no token (the first send
// does). ctx is used only while building the SDK client.
func New(ctx context.Context, cfg *config.FCM, opts Options) (*Client, error) {
	if cfg == nil {
		return nil, errors.New("new fcm client: no fcm config")
	}
	if cfg.ProjectID == "" {
		return nil, errors.New("new fcm client: project_id: must not be empty")
	}
	if cfg.CredentialsFile == "" {
		return nil, errors.New("new fcm client: credentials_file: must not be empty")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = delivery.SendTimeout
	}
	credJSON, err := os.ReadFile(cfg.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("new fcm client: credentials_file: %w", err)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("new fcm client: ca_file: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("new fcm client: ca_file %s: no PEM certificate found", cfg.CAFile)
		}
		tlsCfg.RootCAs = roots
	}
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		HTTP2:                 &http.HTTP2Config{SendPingTimeout: 31 * time.Second, PingTimeout: 15 * time.Second},
	}
	tokens, err := newTokenSource(credJSON, &http.Client{Transport: base, Timeout: 30 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("new fcm client: credentials_file %s: %w", cfg.CredentialsFile, err)
	}
	fopts := []option.ClientOption{
		option.WithHTTPClient(&http.Client{Transport: &authTransport{base: base, tokens: tokens}}),
		option.WithTelemetryDisabled(),
	}
	if cfg.Endpoint != "" {
		ep, err := parseEndpoint(cfg.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("new fcm client: endpoint: %w", err)
		}
		fopts = append(fopts, option.WithEndpoint(ep+"/v1"))
	}
	mc, err := newMessagingClient(ctx, cfg.ProjectID, fopts)
	if err != nil {
		return nil, fmt.Errorf("new fcm client: %w", err)
	}
	return &Client{
		msg:     mc,
		base:    base,
		sem:     make(chan struct{}, opts.MaxInFlight),
		timeout: opts.SendTimeout,
		log:     opts.Logger.Named(Provider),
	}, nil
}

func parseEndpoint(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%q: want https://host[:port]", s)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return "", fmt.Errorf("%q: must have no path or query", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Close closes idle connections.
func (c *Client) Close() error {
	c.base.CloseIdleConnections()
	return nil
}

// Notify sends a to the device's FCM registration token. See
// delivery.Notifier. It returns nil when FCM accepted the message, an error
// wrapping relay.ErrExpired (sending nothing) when a expired, and a
// *delivery.Error otherwise.
func (c *Client) Notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	// Provider messages may quote the token: keep it out of last_error and
	// logs.
	return delivery.StripToken(c.notify(ctx, d, a), d.Token)
}

func (c *Client) notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	if a == nil {
		return &delivery.Error{Provider: Provider, Outcome: delivery.Permanent, Err: errors.New("nil alert")}
	}
	if d.Token == "" {
		return &delivery.Error{Provider: Provider, Reason: "INVALID_ARGUMENT", Outcome: delivery.Permanent,
			Err: errors.New("device has no token")}
	}
	now := time.Now()
	if !a.ExpiresAt.IsZero() && !now.Before(a.ExpiresAt) {
		return &delivery.Error{Provider: Provider, Reason: "Expired", Outcome: delivery.Permanent,
			Err: fmt.Errorf("alert expired at %s: %w", a.ExpiresAt.Format(time.RFC3339), relay.ErrExpired)}
	}
	m := Message(d, a, now)
	if n := PayloadSize(m); n > MaxPayload {
		return &delivery.Error{Provider: Provider, Reason: "INVALID_ARGUMENT", Outcome: delivery.Permanent,
			Err: fmt.Errorf("payload is %d bytes, limit %d", n, MaxPayload)}
	}
	sctx, cancel := delivery.SendContext(ctx, now, a.ExpiresAt, c.timeout)
	defer cancel()
	if err := sctx.Err(); err != nil {
		// Not a wait for a slot: the caller's time ran out first.
		return &delivery.Error{Provider: Provider, Outcome: delivery.Retry,
			Err: fmt.Errorf("message %w: %w", delivery.ErrNotSent, err)}
	}
	select {
	case c.sem <- struct{}{}:
	case <-sctx.Done():
		return &delivery.Error{Provider: Provider, Outcome: delivery.Retry,
			Err: fmt.Errorf("wait for a free send slot: %w", sctx.Err())}
	}
	defer func() { <-c.sem }()
	_, err := c.msg.Send(sctx, m)
	if err == nil {
		return nil
	}
	e := Classify(err, time.Now())
	if e.RetryAfter > 0 && !a.ExpiresAt.IsZero() {
		e.RetryAfter = min(e.RetryAfter, time.Until(a.ExpiresAt))
		if e.RetryAfter < 0 {
			e.RetryAfter = 0
		}
	}
	return e
}

// Message maps an alert for device d, sent at now, to an FCM message.
//
// Data always carries the alert's Data plus "event_id", "type" and
// "expires_at" (RFC 3339). On Android:
//   - an informational alert (no Actions) is a notification message: title
//     and body, android.notification.tag = CollapseID;
//   - an actionable alert (Actions non-empty) is data-only and high
//     priority: data also carries "title", "body", "actions" (a JSON array)
//     and, when set, "category", "sound", "thread_id" and
//     "interruption_level", for the app to build the notification;
//   - a Silent alert is data-only, normal priority, with data "withdraw":
//     "true" unless it carries a token proof (data relay.DataTokenProof).
//
// android.priority follows the alert's Priority, android.collapse_key is
// CollapseID, and android.ttl is the time left until ExpiresAt (never
// negative). For an iOS device the message carries an apns block instead
// (headers and aps as the apns package sends them).
func Message(d relay.Device, a *relay.Alert, now time.Time) *messaging.Message {
	data := make(map[string]string, len(a.Data)+10)
	for k, v := range a.Data {
		data[k] = v
	}
	data["event_id"] = a.EventID
	data["type"] = a.Type
	if !a.ExpiresAt.IsZero() {
		data["expires_at"] = a.ExpiresAt.UTC().Format(time.RFC3339)
	}
	actionable := len(a.Actions) > 0
	m := &messaging.Message{Token: d.Token, Data: data}
	switch {
	case a.Silent:
		if a.Data[relay.DataTokenProof] == "" {
			data["withdraw"] = "true"
		}
	case actionable:
		data["title"] = a.Title
		data["body"] = a.Body
		acts, _ := json.Marshal(a.Actions)
		data["actions"] = string(acts)
		// Empty fields are left out: a sealed alert has no category,
		// sound or thread id in clear.
		for k, v := range map[string]string{"category": a.Category, "sound": a.Sound, "thread_id": a.ThreadID, "interruption_level": a.InterruptionLevel} {
			if v != "" {
				data[k] = v
			}
		}
	}
	if d.Platform == relay.PlatformIOS {
		m.APNS = apnsConfig(a)
		if !a.Silent {
			m.Notification = &messaging.Notification{Title: a.Title, Body: a.Body}
		}
		return m
	}
	ac := &messaging.AndroidConfig{CollapseKey: a.CollapseID, Priority: "normal"}
	if !a.Silent && (a.Priority == relay.PriorityHigh || actionable) {
		ac.Priority = "high"
	}
	if !a.ExpiresAt.IsZero() {
		ttl := max(a.ExpiresAt.Sub(now).Truncate(time.Second), 0)
		ac.TTL = &ttl
	}
	if !a.Silent && !actionable {
		m.Notification = &messaging.Notification{Title: a.Title, Body: a.Body}
		ac.Notification = &messaging.AndroidNotification{Tag: a.CollapseID, Sound: a.Sound}
	}
	m.Android = ac
	return m
}

func apnsConfig(a *relay.Alert) *messaging.APNSConfig {
	h := map[string]string{"apns-priority": "5", "apns-push-type": "alert"}
	aps := &messaging.Aps{}
	switch {
	case a.Silent:
		// A withdraw push repeats nothing of the alert's presentation.
		h["apns-push-type"] = "background"
		aps.ContentAvailable = true
	default:
		if a.Priority == relay.PriorityHigh {
			h["apns-priority"] = "10"
		}
		aps.Alert = &messaging.ApsAlert{Title: a.Title, Body: a.Body}
		aps.Sound = a.Sound
		aps.Category = a.Category
		aps.ThreadID = a.ThreadID
		aps.MutableContent = a.MutableContent || a.Category != "" || len(a.Actions) > 0 || len(a.Data) > 0
		switch a.InterruptionLevel {
		case "passive", "active", "time-sensitive", "critical":
			aps.CustomData = map[string]any{"interruption-level": a.InterruptionLevel}
		}
	}
	if a.CollapseID != "" {
		h["apns-collapse-id"] = a.CollapseID
	}
	if !a.ExpiresAt.IsZero() {
		h["apns-expiration"] = strconv.FormatInt(a.ExpiresAt.Unix(), 10)
	}
	return &messaging.APNSConfig{Headers: h, Payload: &messaging.APNSPayload{Aps: aps}}
}

// PayloadSize approximates FCM's measure of a message against MaxPayload:
// the JSON size of its data and notification parts.
func PayloadSize(m *messaging.Message) int {
	n := 0
	if len(m.Data) > 0 {
		b, _ := json.Marshal(m.Data)
		n += len(b)
	}
	if m.Notification != nil {
		b, _ := json.Marshal(m.Notification)
		n += len(b)
	}
	if m.Android != nil && m.Android.Notification != nil {
		b, _ := json.Marshal(m.Android.Notification)
		n += len(b)
	}
	return n
}

// Classify turns an error from messaging.Client.Send into a delivery error.
// It must get the SDK's error unwrapped: the SDK's helpers use plain type
// assertions.
//
//   - UNREGISTERED, SENDER_ID_MISMATCH, INVALID_ARGUMENT about the token:
//     DropToken;
//   - other INVALID_ARGUMENT and SDK validation errors: Permanent;
//   - THIRD_PARTY_AUTH_ERROR, and UNAUTHENTICATED/PERMISSION_DENIED/
//     NOT_FOUND without an FcmError (OAuth, IAM, project, endpoint):
//     ConfigError;
//   - QUOTA_EXCEEDED: Retry after max(Retry-After, QuotaRetryFloor);
//   - UNAVAILABLE, INTERNAL, RESOURCE_EXHAUSTED, transport failures and
//     context deadlines: Retry, after Retry-After when the answer had one.
func Classify(err error, now time.Time) *delivery.Error {
	e := &delivery.Error{Provider: Provider, Err: err}
	if res := errorutils.HTTPResponse(err); res != nil {
		e.Status = res.StatusCode
		e.RetryAfter = delivery.ParseRetryAfter(res.Header.Get("Retry-After"), now)
	}
	switch {
	case messaging.IsUnregistered(err):
		e.Reason, e.Outcome = "UNREGISTERED", delivery.DropToken
	case messaging.IsSenderIDMismatch(err):
		e.Reason, e.Outcome = "SENDER_ID_MISMATCH", delivery.DropToken
	case messaging.IsInvalidArgument(err):
		e.Reason, e.Outcome = "INVALID_ARGUMENT", delivery.Permanent
		if strings.Contains(strings.ToLower(err.Error()), "not a valid fcm registration token") {
			e.Outcome = delivery.DropToken
		}
	case messaging.IsQuotaExceeded(err):
		e.Reason, e.Outcome = "QUOTA_EXCEEDED", delivery.Retry
		e.RetryAfter = max(e.RetryAfter, QuotaRetryFloor)
	case messaging.IsUnavailable(err):
		e.Reason, e.Outcome = "UNAVAILABLE", delivery.Retry
	case messaging.IsInternal(err):
		e.Reason, e.Outcome = "INTERNAL", delivery.Retry
	case messaging.IsThirdPartyAuthError(err):
		e.Reason, e.Outcome = "THIRD_PARTY_AUTH_ERROR", delivery.ConfigError
	case errorutils.IsUnauthenticated(err):
		e.Reason, e.Outcome = "UNAUTHENTICATED", delivery.ConfigError
	case errorutils.IsPermissionDenied(err):
		e.Reason, e.Outcome = "PERMISSION_DENIED", delivery.ConfigError
	case errorutils.IsNotFound(err):
		e.Reason, e.Outcome = "NOT_FOUND", delivery.ConfigError
	case errorutils.IsInvalidArgument(err):
		e.Reason, e.Outcome = "INVALID_ARGUMENT", delivery.Permanent
	case errorutils.IsResourceExhausted(err):
		e.Reason, e.Outcome = "RESOURCE_EXHAUSTED", delivery.Retry
	case errorutils.IsUnavailable(err):
		e.Reason, e.Outcome = "UNAVAILABLE", delivery.Retry
	case errorutils.IsInternal(err):
		e.Reason, e.Outcome = "INTERNAL", delivery.Retry
	case errorutils.IsDeadlineExceeded(err):
		e.Reason, e.Outcome = "DEADLINE_EXCEEDED", delivery.Retry
	case errorutils.IsUnknown(err):
		e.Reason, e.Outcome = "UNKNOWN", delivery.Retry
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		e.Outcome = delivery.Retry
	case isFirebaseError(err):
		// A platform code with no helper (CONFLICT, ABORTED, …).
		e.Outcome = delivery.Retry
		if e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests {
			e.Outcome = delivery.Permanent
		}
	default:
		// The SDK's own validation ("exactly one of token, topic or
		// condition", a bad priority): this message can never be sent.
		e.Outcome = delivery.Permanent
	}
	return e
}

// isFirebaseError reports whether err is the SDK's error type (which is
// internal), recognised by its HTTP response.
func isFirebaseError(err error) bool { return errorutils.HTTPResponse(err) != nil }
