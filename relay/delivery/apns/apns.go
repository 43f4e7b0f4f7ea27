package apns

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/delivery"
	"github.com/edgerelay/edgerelay/relay/delivery/coalesce"
	"github.com/edgerelay/edgerelay/relay/jsonstr"
)

// Provider is the name in delivery errors and logs.
const Provider = "apns"

// Defaults and limits.
const (
	// DefaultConnections is the number of HTTP/2 connections per APNs host
	// when the config leaves connections at 0.
	DefaultConnections = 1
	// DefaultMaxInFlight caps concurrent pushes per connection, under APNs'
	// usual limit of about 1000 streams.
	DefaultMaxInFlight = 500
	// MaxPayload is APNs' size limit for an alert or background payload.
	MaxPayload = 4096
	// MaxCollapseID is APNs' limit on apns-collapse-id.
	MaxCollapseID = 64
	// tokenRefreshMin is the least time between forced JWT refreshes
	// (Apple: no more than once every 20 minutes).
	tokenRefreshMin = 20 * time.Minute
)

var _ delivery.Notifier = (*Client)(nil)

// Options are a Client's settings beyond the config block.
type Options struct {
	// Logger for connection-level events. Nil: no logging.
	Logger hclog.Logger
	// MaxInFlight caps concurrent pushes per connection (default
	// DefaultMaxInFlight).
	MaxInFlight int
	// SendTimeout bounds one push when the context and the alert's expiry
	// allow longer (default delivery.SendTimeout).
	SendTimeout time.Duration
}

// Client sends alerts to APNs. It is safe for concurrent use; keep one per
// app for the life of the process (APNs treats rapid reconnects as abuse).
type Client struct {
	token    *token.Token // nil with certificate auth
	endpoint *pool        // set when the config names an endpoint
	prod     *pool        // Apple's hosts, by device environment
	sandbox  *pool
	timeout  time.Duration
	log      hclog.Logger

	topicHeader []string // apns-topic
	authHeader  atomic.Pointer[authHeader]

	refreshMu   sync.Mutex
	lastRefresh time.Time
}

// pool is the connections to one host, used round-robin, with a shared
// in-flight cap. Each transport holds one HTTP/2 connection.
type pool struct {
	host  string // host[:port] of the request URLs
	conns []*http2.Transport
	next  atomic.Uint64
	sem   chan struct{}
}

// New builds a client from an app's apns block. It reads the key or
// certificate and the CA file but opens no connection.
func New(cfg *config.APNS, opts Options) (*Client, error) {
	if cfg == nil {
		return nil, errors.New("new apns client: no apns config")
	}
	if cfg.Topic == "" {
		return nil, errors.New("new apns client: topic: must not be empty")
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
	conns := cfg.Connections
	if conns <= 0 {
		conns = DefaultConnections
	}
	c := &Client{topicHeader: []string{cfg.Topic}, timeout: opts.SendTimeout, log: opts.Logger.Named(Provider)}

	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cfg.KeyFile != "" && cfg.CertFile != "":
		return nil, errors.New("new apns client: key_file and cert_file: set one, not both")
	case cfg.KeyFile != "":
		if cfg.KeyID == "" {
			return nil, errors.New("new apns client: key_id: required with key_file")
		}
		if cfg.TeamID == "" {
			return nil, errors.New("new apns client: team_id: required with key_file")
		}
		key, err := token.AuthKeyFromFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("new apns client: key_file %s: %w", cfg.KeyFile, err)
		}
		c.token = &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
	case cfg.CertFile != "":
		var cert tls.Certificate
		var err error
		switch strings.ToLower(filepath.Ext(cfg.CertFile)) {
		case ".p12", ".pfx":
			cert, err = certificate.FromP12File(cfg.CertFile, cfg.CertPassword)
		case ".pem", ".crt":
			cert, err = certificate.FromPemFile(cfg.CertFile, cfg.CertPassword)
		default:
			return nil, fmt.Errorf("new apns client: cert_file %s: want a .p12 or .pem file", cfg.CertFile)
		}
		if err != nil {
			return nil, fmt.Errorf("new apns client: cert_file %s: %w", cfg.CertFile, err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	default:
		return nil, errors.New("new apns client: key_file or cert_file: one is required")
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("new apns client: ca_file: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("new apns client: ca_file %s: no PEM certificate found", cfg.CAFile)
		}
		tlsCfg.RootCAs = roots
	}
	if cfg.Endpoint != "" {
		host, err := parseEndpoint(cfg.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("new apns client: endpoint: %w", err)
		}
		c.endpoint = c.newPool(host, conns, opts.MaxInFlight, tlsCfg)
	} else {
		c.prod = c.newPool(apns2.HostProduction, conns, opts.MaxInFlight, tlsCfg)
		c.sandbox = c.newPool(apns2.HostDevelopment, conns, opts.MaxInFlight, tlsCfg)
	}
	return c, nil
}

func parseEndpoint(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("%q: want https://host[:port]", s)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return "", fmt.Errorf("%q: must have no path or query", s)
	}
	return "https://" + u.Host, nil
}

// newPool makes the pool for base, an https URL with no path (as
// parseEndpoint returns and apns2's host constants are).
func (c *Client) newPool(base string, conns, inFlight int, tlsCfg *tls.Config) *pool {
	p := &pool{host: strings.TrimPrefix(base, "https://"), sem: make(chan struct{}, conns*inFlight)}
	for range conns {
		// No timeout of its own: every push's context has a deadline
		// (notify).
		p.conns = append(p.conns, &http2.Transport{
			TLSClientConfig: tlsCfg.Clone(),
			DialTLSContext:  dialTLS,
			ReadIdleTimeout: apns2.ReadIdleTimeout,
			PingTimeout:     apns2.ReadIdleTimeout,
			// APNs answers a few bytes of JSON, never compressed: no
			// accept-encoding header to encode and send with every push.
			DisableCompression: true,
		})
	}
	return p
}

// dialTLS dials APNs. The connection's writes are coalesced: the HTTP/2
// client flushes each push's HEADERS and DATA frames separately, and with
// many pushes in flight the frames written during one write leave in the
// next (package coalesce).
func dialTLS(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: apns2.TLSDialTimeout, KeepAlive: apns2.TCPKeepAlive},
		Config:    cfg,
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return coalesce.New(c, 0), nil
}

// Close closes idle connections. Pushes in flight are not interrupted.
func (c *Client) Close() error {
	for _, p := range []*pool{c.endpoint, c.prod, c.sandbox} {
		if p == nil {
			continue
		}
		for _, tr := range p.conns {
			tr.CloseIdleConnections()
		}
	}
	return nil
}

// pool returns the pool for a device: the configured endpoint, else Apple's
// sandbox host for sandbox tokens and the production host otherwise.
func (c *Client) pool(d relay.Device) *pool {
	switch {
	case c.endpoint != nil:
		return c.endpoint
	case d.Environment == relay.EnvironmentSandbox:
		return c.sandbox
	}
	return c.prod
}

// Notify sends a to the device's APNs token. See delivery.Notifier. It
// returns nil when APNs accepted the push, an error wrapping
// relay.ErrExpired (sending nothing) when a expired, and a *delivery.Error
// otherwise.
func (c *Client) Notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	// The request URL holds the token: keep it out of last_error and logs.
	return delivery.StripToken(c.notify(ctx, d, a), d.Token)
}

func (c *Client) notify(ctx context.Context, d relay.Device, a *relay.Alert) error {
	if a == nil {
		return &delivery.Error{Provider: Provider, Outcome: delivery.Permanent, Err: errors.New("nil alert")}
	}
	if d.Token == "" {
		return &delivery.Error{Provider: Provider, Reason: "MissingDeviceToken", Outcome: delivery.Permanent,
			Err: errors.New("device has no token")}
	}
	now := time.Now()
	if !a.ExpiresAt.IsZero() && !now.Before(a.ExpiresAt) {
		return &delivery.Error{Provider: Provider, Reason: "Expired", Outcome: delivery.Permanent,
			Err: fmt.Errorf("alert expired at %s: %w", a.ExpiresAt.Format(time.RFC3339), relay.ErrExpired)}
	}
	req, err := c.request(d, a)
	if err != nil {
		return err
	}
	p := c.pool(d)
	sctx, cancel := delivery.SendContext(ctx, now, a.ExpiresAt, c.timeout)
	defer cancel()
	if err := sctx.Err(); err != nil {
		// Not a wait for a stream: the caller's time ran out first.
		return &delivery.Error{Provider: Provider, Outcome: delivery.Retry,
			Err: fmt.Errorf("push %w: %w", delivery.ErrNotSent, err)}
	}
	select {
	case p.sem <- struct{}{}:
	case <-sctx.Done():
		return &delivery.Error{Provider: Provider, Outcome: delivery.Retry,
			Err: fmt.Errorf("wait for a free stream: %w", sctx.Err())}
	}
	defer func() { <-p.sem }()
	tr := p.conns[p.next.Add(1)%uint64(len(p.conns))]
	req.URL.Host, req.Host = p.host, p.host
	res, err := tr.RoundTrip(req.WithContext(sctx))
	if err != nil {
		return &delivery.Error{Provider: Provider, Outcome: delivery.Retry, Err: fmt.Errorf("push: %w", err)}
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		return nil
	}
	// A refusal's body is {"reason": ..., "timestamp": ms} (apns2.Response
	// reads both).
	var r apns2.Response
	bodyErr := json.NewDecoder(io.LimitReader(res.Body, maxErrorBody)).Decode(&r)
	if bodyErr != nil {
		r = apns2.Response{} // not APNs' answer (a proxy's page?): judged by the status alone
	}
	e := Classify(res.StatusCode, r.Reason, r.Timestamp.Time)
	if bodyErr != nil {
		e.Err = fmt.Errorf("unreadable error body: %w", bodyErr)
	}
	e.RetryAfter = delivery.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())
	if e.Reason == apns2.ReasonExpiredProviderToken && c.token != nil {
		c.refreshToken()
	}
	return e
}

// refreshToken re-signs the shared JWT after APNs called it expired, at most
// once per tokenRefreshMin.
func (c *Client) refreshToken() {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if !c.lastRefresh.IsZero() && time.Since(c.lastRefresh) < tokenRefreshMin {
		return
	}
	c.lastRefresh = time.Now()
	c.token.Lock()
	defer c.token.Unlock()
	if _, err := c.token.Generate(); err != nil {
		c.log.Error("refresh provider token", relay.LogKeyError, err)
	}
}

// Header values every push of a kind shares (the transport only reads a
// request's header).
var (
	contentTypeJSON    = []string{"application/json; charset=utf-8"}
	noUserAgent        = []string{""} // the transport then sends none (APNs reads none)
	pushTypeAlert      = []string{string(apns2.PushTypeAlert)}
	pushTypeBackground = []string{string(apns2.PushTypeBackground)}
	priorityLow        = []string{strconv.Itoa(apns2.PriorityLow)}
	priorityHigh       = []string{strconv.Itoa(apns2.PriorityHigh)}
)

// maxErrorBody bounds the error body read from APNs (a reason and a
// timestamp).
const maxErrorBody = 64 << 10

// request maps an alert to an APNs request (its host still unset): the
// POST /3/device/{token} that apns2.Client.PushWithContext sends for the
// same apns2.Notification, built without its URL parsing, header
// canonicalisation, JSON re-validation and http.Client layer (together
// ~8 % of relayd's CPU at saturation, docs/benchmarks.md), and with the
// response headers in reach (Retry-After).
func (c *Client) request(d relay.Device, a *relay.Alert) (*http.Request, error) {
	if len(a.CollapseID) > MaxCollapseID {
		return nil, &delivery.Error{Provider: Provider, Reason: apns2.ReasonBadCollapseID, Outcome: delivery.Permanent,
			Err: fmt.Errorf("collapse id is %d bytes, limit %d", len(a.CollapseID), MaxCollapseID)}
	}
	body, err := Payload(a)
	if err != nil {
		return nil, &delivery.Error{Provider: Provider, Outcome: delivery.Permanent, Err: err}
	}
	if len(body) > MaxPayload {
		return nil, &delivery.Error{Provider: Provider, Reason: apns2.ReasonPayloadTooLarge, Outcome: delivery.Permanent,
			Err: fmt.Errorf("payload is %d bytes, limit %d", len(body), MaxPayload)}
	}
	h := make(http.Header, 8)
	h["User-Agent"] = noUserAgent
	h["Content-Type"] = contentTypeJSON
	h["Apns-Topic"] = c.topicHeader
	switch {
	case a.Silent:
		h["Apns-Push-Type"], h["Apns-Priority"] = pushTypeBackground, priorityLow
	case a.Priority == relay.PriorityHigh:
		h["Apns-Push-Type"], h["Apns-Priority"] = pushTypeAlert, priorityHigh
	default:
		h["Apns-Push-Type"], h["Apns-Priority"] = pushTypeAlert, priorityLow
	}
	if a.ExpiresAt.After(time.Unix(0, 0)) {
		h["Apns-Expiration"] = []string{strconv.FormatInt(a.ExpiresAt.Unix(), 10)}
	}
	if a.CollapseID != "" {
		h["Apns-Collapse-Id"] = []string{a.CollapseID}
	}
	if c.token != nil {
		h["Authorization"] = c.bearer()
	}
	return &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Scheme: "https", Path: "/3/device/" + d.Token},
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
	}, nil
}

// bearer returns the authorization header for token auth, re-signing the
// JWT when it is due (apns2's token.Token: every 50 minutes).
func (c *Client) bearer() []string {
	jwt := c.token.GenerateIfExpired()
	if h := c.authHeader.Load(); h != nil && h.jwt == jwt {
		return h.value
	}
	h := &authHeader{jwt: jwt, value: []string{"bearer " + jwt}}
	c.authHeader.Store(h)
	return h.value
}

// authHeader is the authorization header for one JWT.
type authHeader struct {
	jwt   string
	value []string
}

// Interruption levels APNs knows.
var interruptionLevels = map[string]bool{"passive": true, "active": true, "time-sensitive": true, "critical": true}

// Payload renders the JSON body APNs receives for a:
//
//   - aps.alert {title, body}, sound, category, interruption-level,
//     thread-id and mutable-content (set when the alert asks for it,
//     offers actions or carries data, so the app's notification service
//     extension can decrypt, fetch or enrich it); empty fields are left
//     out (a sealed alert has no category, sound or thread id);
//   - for a Silent alert instead aps.content-available = 1 only: a
//     withdraw push repeats nothing of the alert's presentation;
//   - the alert's Data as top-level string keys, then "event_id", "type",
//     "expires_at" (RFC 3339) and, when Silent and not a token proof (Data
//     relay.DataTokenProof), "withdraw": "true"; these
//     keys win over Data keys of the same name, and a Data key "aps" is
//     dropped.
func Payload(a *relay.Alert) ([]byte, error) {
	// Written by hand, the bytes encoding/json gives for the same maps
	// (keys sorted, HTML-safe escaping; TestPayloadMatchesMaps): building
	// maps and marshalling them by reflection was ~9% of relayd's CPU.
	type field struct{ key, value string }
	root := make([]field, 0, len(a.Data)+5)
	for k, v := range a.Data {
		switch k {
		case "aps", "event_id", "type":
			continue // ours win
		case "expires_at":
			if !a.ExpiresAt.IsZero() {
				continue
			}
		case "withdraw":
			if a.Silent && a.Data[relay.DataTokenProof] == "" {
				continue
			}
		}
		root = append(root, field{k, v})
	}
	root = append(root, field{"aps", ""}, field{"event_id", a.EventID}, field{"type", a.Type})
	if !a.ExpiresAt.IsZero() {
		root = append(root, field{key: "expires_at"}) // written below, without a string
	}
	if a.Silent && a.Data[relay.DataTokenProof] == "" {
		root = append(root, field{"withdraw", "true"})
	}
	slices.SortFunc(root, func(x, y field) int { return strings.Compare(x.key, y.key) })

	b := make([]byte, 0, 256)
	b = append(b, '{')
	for i, f := range root {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonstr.Append(b, f.key)
		b = append(b, ':')
		switch {
		case f.key == "aps":
			b = appendAPS(b, a)
		case f.key == "expires_at" && !a.ExpiresAt.IsZero():
			// RFC 3339 has nothing JSON escapes.
			b = append(a.ExpiresAt.UTC().AppendFormat(append(b, '"'), time.RFC3339), '"')
		default:
			b = jsonstr.Append(b, f.value)
		}
	}
	return append(b, '}'), nil
}

// appendAPS appends the "aps" object of a, its keys in sorted order.
func appendAPS(b []byte, a *relay.Alert) []byte {
	if a.Silent {
		return append(b, `{"content-available":1}`...)
	}
	b = append(b, `{"alert":{`...)
	if a.Body != "" {
		b = jsonstr.Append(append(b, `"body":`...), a.Body)
		if a.Title != "" {
			b = append(b, ',')
		}
	}
	if a.Title != "" {
		b = jsonstr.Append(append(b, `"title":`...), a.Title)
	}
	b = append(b, '}')
	if a.Category != "" {
		b = jsonstr.Append(append(b, `,"category":`...), a.Category)
	}
	if interruptionLevels[a.InterruptionLevel] {
		b = jsonstr.Append(append(b, `,"interruption-level":`...), a.InterruptionLevel)
	}
	if a.MutableContent || a.Category != "" || len(a.Actions) > 0 || len(a.Data) > 0 {
		b = append(b, `,"mutable-content":1`...)
	}
	if a.Sound != "" {
		b = jsonstr.Append(append(b, `,"sound":`...), a.Sound)
	}
	if a.ThreadID != "" {
		b = jsonstr.Append(append(b, `,"thread-id":`...), a.ThreadID)
	}
	return append(b, '}')
}

// Classify turns an APNs answer other than 200 into a delivery error:
//
//   - 410 Unregistered/ExpiredToken and 400 BadDeviceToken/
//     DeviceTokenNotForTopic: DropToken (TokenDeadAt = the 410 timestamp);
//   - BadTopic, MissingTopic, TopicDisallowed, and every 403 but
//     ExpiredProviderToken: ConfigError;
//   - 400 IdleTimeout, 403 ExpiredProviderToken, 429, 5xx: Retry;
//   - any other 4xx (a malformed request): Permanent.
func Classify(status int, reason string, timestamp time.Time) *delivery.Error {
	e := &delivery.Error{Provider: Provider, Status: status, Reason: reason}
	switch reason {
	case apns2.ReasonUnregistered, apns2.ReasonExpiredToken, apns2.ReasonBadDeviceToken, apns2.ReasonDeviceTokenNotForTopic:
		e.Outcome = delivery.DropToken
		if status == http.StatusGone && timestamp.After(time.Unix(0, 0)) {
			e.TokenDeadAt = timestamp
		}
		return e
	case apns2.ReasonBadTopic, apns2.ReasonMissingTopic, apns2.ReasonTopicDisallowed:
		e.Outcome = delivery.ConfigError
		return e
	case apns2.ReasonIdleTimeout, apns2.ReasonExpiredProviderToken:
		e.Outcome = delivery.Retry
		return e
	}
	switch {
	case status == http.StatusGone:
		e.Outcome = delivery.DropToken
		if timestamp.After(time.Unix(0, 0)) {
			e.TokenDeadAt = timestamp
		}
	case status == http.StatusForbidden:
		e.Outcome = delivery.ConfigError
	case status == http.StatusTooManyRequests || status >= 500 || status == 0:
		e.Outcome = delivery.Retry
	default:
		e.Outcome = delivery.Permanent
	}
	return e
}
