package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/fsperm"
)

// Limits checked by validation.
const (
	maxSocketPath      = 107 // sun_path is 108 bytes including the NUL
	maxAPNSConnections = 64
	minMemoryLimit     = 64 << 10 // one wasm page
	maxMemoryLimit     = 4 << 30  // the wasm32 address space
)

var (
	typeNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	appNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// builder turns a decoded fileSchema into a Config, collecting every problem.
type builder struct {
	top        hcl.Range // the file's range, for problems with no attribute
	dir        string    // absolute directory of the config file
	checkFiles bool
	diags      hcl.Diagnostics
}

func (b *builder) errorf(r hcl.Range, summary, format string, args ...any) {
	rng := r
	b.diags = append(b.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  &rng,
	})
}

// isSet reports whether gohcl captured a range, i.e. the item is in the file.
func isSet(r hcl.Range) bool { return r.Filename != "" }

// failed reports whether an error was already reported inside r (say, gohcl
// could not convert the attribute's value), so r gets no second complaint.
func (b *builder) failed(r hcl.Range) bool {
	if !isSet(r) {
		return false
	}
	for _, d := range b.diags {
		if d.Severity == hcl.DiagError && d.Subject != nil && d.Subject.Filename == r.Filename &&
			d.Subject.Start.Byte >= r.Start.Byte && d.Subject.End.Byte <= r.End.Byte {
			return true
		}
	}
	return false
}

// resolve makes p absolute against the config file's directory; "" stays "".
func (b *builder) resolve(p string) string {
	if p == "" {
		return ""
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(b.dir, p)
}

// require reports a missing or empty required string attribute. It reports
// at the attribute when present (empty or null), else at the block.
func (b *builder) require(v *string, r, block hcl.Range, name, why string) bool {
	if v != nil && *v != "" {
		return true
	}
	if b.failed(r) {
		return false
	}
	if isSet(r) {
		b.errorf(r, "Missing required value", "%s must not be empty%s", name, why)
	} else {
		b.errorf(block, "Missing required attribute", "%s is required%s", name, why)
	}
	return false
}

// str assigns a plain string attribute.
func str(v *string, dst *string) {
	if v != nil {
		*dst = *v
	}
}

// path assigns a path attribute, resolved. Empty means "not set" unless
// nonEmpty, in which case it is an error.
func (b *builder) path(v *string, r hcl.Range, name string, nonEmpty bool, dst *string) {
	if v == nil {
		return
	}
	if *v == "" && nonEmpty {
		b.errorf(r, "Invalid path", "%s must not be empty (leave the attribute out for the default)", name)
		return
	}
	*dst = b.resolve(*v)
}

// fileKind says how much a referenced file is trusted.
type fileKind int

const (
	fileAny    fileKind = iota
	filePublic          // integrity matters (CA bundle, public key): not writable by others
	fileSecret          // a secret (key, credential): not readable by others either
)

// file assigns a path attribute naming a file that must exist, and be safe
// for its kind (both checked only by Load).
func (b *builder) file(v *string, r hcl.Range, name string, kind fileKind, dst *string) {
	if v == nil {
		return
	}
	*dst = b.resolve(*v)
	if *dst == "" || !b.checkFiles {
		return
	}
	fi, err := os.Stat(*dst)
	switch {
	case err != nil && os.IsNotExist(err):
		b.errorf(r, "Missing file", "%s: %s does not exist", name, *dst)
	case err != nil:
		b.errorf(r, "Unreadable file", "%s: %s: %v", name, *dst, err)
	case fi.IsDir():
		b.errorf(r, "Missing file", "%s: %s is a directory, not a file", name, *dst)
	case kind == fileSecret:
		if err := fsperm.CheckSecretFile(*dst); err != nil {
			b.errorf(r, "Unsafe file permissions", "%s: %v", name, err)
		}
	case kind == filePublic:
		if err := fsperm.CheckPublicFile(*dst); err != nil {
			b.errorf(r, "Unsafe file permissions", "%s: %v", name, err)
		}
	}
}

func (b *builder) duration(v *string, r hcl.Range, name string, dst *time.Duration) {
	if v == nil {
		return
	}
	d, err := time.ParseDuration(*v)
	if err != nil {
		b.errorf(r, "Invalid duration", `%s = %q: not a duration; use Go syntax such as "250ms", "5m" or "24h"`, name, *v)
		return
	}
	if d <= 0 {
		b.errorf(r, "Invalid duration", "%s = %q: must be greater than zero", name, *v)
		return
	}
	*dst = d
}

func (b *builder) enum(v *string, r hcl.Range, name string, allowed []string, dst *string) {
	if v == nil {
		return
	}
	for _, a := range allowed {
		if *v == a {
			*dst = a
			return
		}
	}
	b.errorf(r, "Invalid value", "%s = %q: must be one of %s", name, *v, strings.Join(allowed, ", "))
}

func (b *builder) build(s *fileSchema, top hcl.Range) *Config {
	b.top = top
	c := Default()
	c.DataDir = b.resolve(c.DataDir)
	c.Socket.Path = b.resolve(c.Socket.Path)
	c.Plugins.Dir = b.resolve(c.Plugins.Dir)

	b.path(s.DataDir, s.DataDirR, "data_dir", true, &c.DataDir)
	b.duration(s.ShutdownTimeout, s.ShutdownR, "shutdown_timeout", &c.ShutdownTimeout)
	if l := s.Log; l != nil {
		b.enum(l.Level, l.LevelR, "log.level", []string{"trace", "debug", "info", "warn", "error"}, &c.Log.Level)
		b.enum(l.Format, l.FormatR, "log.format", []string{"text", "json"}, &c.Log.Format)
	}
	b.socket(s.Socket, top, &c.Socket)
	b.api(s.API, &c.API)
	b.auth(s.Auth, &c.Auth)
	b.store(s.Store, c)
	b.nats(s.NATS, s.Store, c)
	b.apps(s.Apps, top, c)
	b.notifications(s.Notifications, c)
	b.plugins(s.Plugins, &c.Plugins)
	if s.Plugins == nil {
		b.pluginsDir(hcl.Range{}, c.Plugins.Dir)
	}
	b.retry(s.Retry, &c.Retry)
	b.queue(s.Queue, &c.Queue)
	b.retention(s.Retention, &c.Retention)
	if a := s.Audit; a != nil {
		b.duration(a.Retention, a.RetentionR, "audit.retention", &c.Audit.Retention)
	}
	if m := s.Metrics; m != nil {
		if m.AllowRemote != nil {
			c.Metrics.AllowRemote = *m.AllowRemote
		}
		if m.Pprof != nil {
			c.Metrics.Pprof = *m.Pprof
		}
		if m.Address != nil && *m.Address != "" && b.address(*m.Address, m.AddressR, "metrics.address") {
			c.Metrics.Address = *m.Address
			if host, _, _ := splitHostPort(*m.Address); !isLoopback(host) && !c.Metrics.AllowRemote {
				b.errorf(m.AddressR, "Metrics exposed", `metrics.address = %q is not loopback: /metrics%s would be served to the network without authentication; listen on 127.0.0.1, or set allow_remote = true (behind a firewall or proxy that restricts it)%s`, *m.Address, pprofNote(c.Metrics.Pprof), pprofFix(c.Metrics.Pprof))
			}
		}
	}
	return c
}

func (b *builder) socket(s *socketBlock, top hcl.Range, dst *Socket) {
	pathR := top
	if s != nil {
		b.path(s.Path, s.PathR, "socket.path", true, &dst.Path)
		if isSet(s.PathR) {
			pathR = s.PathR
		}
		if s.Mode != nil {
			if m, ok := parseMode(*s.Mode); ok && m&0o002 != 0 {
				b.errorf(s.ModeR, "Unsafe file mode", `socket.mode = %q: writable by others, so any local user could post events and change settings; use "0660" (owner and group) or "0600"`, *s.Mode)
			} else if ok {
				dst.Mode = m
			} else {
				b.errorf(s.ModeR, "Invalid file mode", `socket.mode = %q: must be an octal permission string such as "0660" (at most "0777")`, *s.Mode)
			}
		}
	}
	if s != nil && s.MaxInflight != nil {
		n, err := parseSize(*s.MaxInflight)
		switch {
		case err != nil:
			b.errorf(s.MaxInflightR, "Invalid size", `socket.max_inflight_bytes = %q: %v; use a byte count or a size such as "256MiB"`, *s.MaxInflight, err)
		case n < minMaxInflightBytes:
			b.errorf(s.MaxInflightR, "Invalid size", `socket.max_inflight_bytes = %q: must be at least 64KiB`, *s.MaxInflight)
		default:
			dst.MaxInflightBytes = n
		}
	}
	if len(dst.Path) > maxSocketPath && !b.failed(pathR) {
		b.errorf(pathR, "Socket path too long", "socket.path: %s is %d bytes; a Unix socket path may have at most %d", dst.Path, len(dst.Path), maxSocketPath)
	}
}

func (b *builder) api(a *apiBlock, dst *API) {
	addrR := hcl.Range{}
	if a != nil {
		addrR = a.Def
		if a.Address != nil {
			addrR = a.AddressR
			if *a.Address == "" {
				b.errorf(a.AddressR, "Invalid address", "api.address must not be empty")
			} else if b.address(*a.Address, a.AddressR, "api.address") {
				dst.Address = *a.Address
			}
		}
		if t := a.TLS; t != nil {
			b.file(t.CertFile, t.CertFileR, "api.tls.cert_file", filePublic, &dst.TLSCertFile)
			b.file(t.KeyFile, t.KeyFileR, "api.tls.key_file", fileSecret, &dst.TLSKeyFile)
			if dst.TLSCertFile != "" && dst.TLSKeyFile == "" {
				b.require(t.KeyFile, t.KeyFileR, t.Def, "api.tls.key_file", " when cert_file is set")
			}
			if dst.TLSKeyFile != "" && dst.TLSCertFile == "" {
				b.require(t.CertFile, t.CertFileR, t.Def, "api.tls.cert_file", " when key_file is set")
			}
		}
	}
	if dst.TLSCertFile == "" && dst.TLSKeyFile == "" && !b.failed(addrR) {
		host, _, err := splitHostPort(dst.Address)
		if err == nil && !isLoopback(host) {
			b.errorf(addrR, "Plain HTTP refused", "api.address = %q: plain HTTP refused unless the address is loopback; set api.tls { cert_file, key_file } or listen on 127.0.0.1", dst.Address)
		}
	}
}

func (b *builder) auth(a *authBlock, dst *Auth) {
	if a == nil {
		return
	}
	if b.require(a.Issuer, a.IssuerR, a.Def, "auth.issuer", "") {
		dst.Issuer = *a.Issuer
	}
	if b.require(a.Audience, a.AudienceR, a.Def, "auth.audience", "") {
		dst.Audience = *a.Audience
	}
	b.file(a.HS256Secret, a.HS256R, "auth.hs256_secret_file", fileSecret, &dst.HS256SecretFile)
	b.file(a.PublicKey, a.PublicKeyR, "auth.public_key_file", filePublic, &dst.PublicKeyFile)
	if a.MaxLifetime != nil && *a.MaxLifetime == "off" {
		dst.MaxTokenLifetime = 0
	} else {
		b.duration(a.MaxLifetime, a.MaxLifetimeR, "auth.max_token_lifetime", &dst.MaxTokenLifetime)
	}
	if a.JWKSURL != nil {
		if err := checkJWKSURL(*a.JWKSURL); err != nil {
			b.errorf(a.JWKSURLR, "Invalid value", "auth.jwks_url = %q: %v", *a.JWKSURL, err)
		} else {
			dst.JWKSURL = *a.JWKSURL
		}
	}
	if a.JWKSRefresh != nil {
		if a.JWKSURL == nil {
			b.errorf(a.JWKSRefreshR, "Unsupported attribute", "auth.jwks_refresh needs auth.jwks_url")
		}
		var d time.Duration
		b.duration(a.JWKSRefresh, a.JWKSRefreshR, "auth.jwks_refresh", &d)
		if d != 0 && d < time.Minute {
			b.errorf(a.JWKSRefreshR, "Invalid value", "auth.jwks_refresh = %q: must be at least 1m", *a.JWKSRefresh)
		} else if d != 0 {
			dst.JWKSRefresh = d
		}
	}
	if dst.JWKSURL != "" && dst.JWKSRefresh == 0 {
		dst.JWKSRefresh = DefaultJWKSRefresh
	}
	n, last := 0, a.Def // the second key source is the one named
	for _, k := range []struct {
		set bool
		r   hcl.Range
	}{{dst.HS256SecretFile != "" || b.failed(a.HS256R), a.HS256R}, {dst.PublicKeyFile != "" || b.failed(a.PublicKeyR), a.PublicKeyR}, {a.JWKSURL != nil, a.JWKSURLR}} {
		if k.set {
			n++
			if n == 2 {
				last = k.r
			}
		}
	}
	switch {
	case n > 1:
		b.errorf(last, "Conflicting attributes", "auth: set exactly one of hs256_secret_file, public_key_file and jwks_url")
	case n == 0:
		b.errorf(a.Def, "Missing required attribute", "auth: set exactly one of hs256_secret_file (HS256), public_key_file (EdDSA or RS256) or jwks_url (a key set)")
	}
}

// checkJWKSURL accepts https URLs, and http only on a loopback host (a
// key set fetched in the clear could be replaced on the way).
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch {
	case u.Host == "":
		return errors.New("not an absolute URL")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errors.New("plain http is refused unless the host is loopback: use https")
	}
	return fmt.Errorf("scheme %q: use https", u.Scheme)
}

func (b *builder) store(s *storeBlock, c *Config) {
	dst := &c.Store
	if s != nil {
		switch s.Kind {
		case StoreBolt:
			dst.Kind = StoreBolt
			b.path(s.Path, s.PathR, "store.path", true, &dst.Path)
			if s.URL != nil {
				b.errorf(s.URLR, "Unsupported attribute", `store.url is only valid in store "jetstream"`)
			}
			if s.Replicas != nil {
				b.errorf(s.ReplicasR, "Unsupported attribute", `store.replicas is only valid in store "jetstream"`)
			}
			for _, a := range []struct {
				v    *string
				r    hcl.Range
				name string
			}{{s.CredentialsFile, s.CredentialsFileR, "credentials_file"}, {s.CAFile, s.CAFileR, "ca_file"}, {s.CertFile, s.CertFileR, "cert_file"}, {s.KeyFile, s.KeyFileR, "key_file"}} {
				if a.v != nil {
					b.errorf(a.r, "Unsupported attribute", `store.%s is only valid in store "jetstream"`, a.name)
				}
			}
		case StoreJetStream:
			dst.Kind = StoreJetStream
			if s.Path != nil {
				b.errorf(s.PathR, "Unsupported attribute", `store.path is only valid in store "bolt"`)
			}
			if s.URL != nil {
				if err := checkNATSURLs(*s.URL); err != nil {
					b.errorf(s.URLR, "Invalid URL", "store.url = %q: %v", *s.URL, err)
				} else {
					dst.URL = *s.URL
				}
			}
			b.path(s.CredentialsFile, s.CredentialsFileR, "store.credentials_file", true, &dst.CredentialsFile)
			b.path(s.CAFile, s.CAFileR, "store.ca_file", true, &dst.CAFile)
			b.path(s.CertFile, s.CertFileR, "store.cert_file", true, &dst.CertFile)
			b.path(s.KeyFile, s.KeyFileR, "store.key_file", true, &dst.KeyFile)
			if (dst.CertFile == "") != (dst.KeyFile == "") {
				b.errorf(s.Def, "Incomplete TLS client identity", "store: set both cert_file and key_file, or neither")
			}
			dst.Replicas = defaultJetStreamReplicas
			if s.Replicas != nil {
				if *s.Replicas != 1 && *s.Replicas != 3 {
					b.errorf(s.ReplicasR, "Invalid value", "store.replicas = %d: must be 1 or 3", *s.Replicas)
				} else {
					dst.Replicas = *s.Replicas
				}
			}
		default:
			b.errorf(s.KindR, "Invalid store kind", `store %q: kind must be "bolt" or "jetstream"`, s.Kind)
		}
		b.duration(s.Retention, s.RetentionR, "store.retention", &dst.Retention)
	}
	if dst.Kind == StoreBolt && dst.Path == "" {
		dst.Path = filepath.Join(c.DataDir, DefaultStoreFile)
	}
}

func (b *builder) apps(blocks []*appBlock, top hcl.Range, c *Config) {
	if len(blocks) == 0 {
		b.errorf(top, "Missing app block", `at least one app "NAME" { apns { … } fcm { … } } block is required`)
		return
	}
	seen := map[string]hcl.Range{}
	for _, ab := range blocks {
		if !appNameRE.MatchString(ab.Name) {
			b.errorf(ab.NameR, "Invalid app name", `app %q: the name must match %s`, ab.Name, appNameRE)
			continue
		}
		if first, dup := seen[ab.Name]; dup {
			b.errorf(ab.Def, "Duplicate app block", "app %q is already defined at %s", ab.Name, first)
			continue
		}
		seen[ab.Name] = ab.Def
		app := &App{Name: ab.Name}
		if ab.APNS == nil && ab.FCM == nil {
			b.errorf(ab.Def, "Missing provider", "app.%s: needs an apns block, an fcm block or both", ab.Name)
		}
		if ab.APNS != nil {
			app.APNS = b.apns(ab.APNS, "app."+ab.Name+".apns")
		}
		if ab.FCM != nil {
			app.FCM = b.fcm(ab.FCM, "app."+ab.Name+".fcm")
		}
		c.Apps = append(c.Apps, app)
	}
}

func (b *builder) apns(a *apnsBlock, name string) *APNS {
	dst := &APNS{Connections: defaultAPNSConnections}
	if b.require(a.Topic, a.TopicR, a.Def, name+".topic", "") {
		dst.Topic = *a.Topic
	}
	b.file(a.KeyFile, a.KeyFileR, name+".key_file", fileSecret, &dst.KeyFile)
	str(a.KeyID, &dst.KeyID)
	str(a.TeamID, &dst.TeamID)
	b.file(a.CertFile, a.CertFileR, name+".cert_file", fileSecret, &dst.CertFile)
	str(a.CertPassword, &dst.CertPassword)
	b.file(a.CAFile, a.CAFileR, name+".ca_file", filePublic, &dst.CAFile)
	b.endpoint(a.Endpoint, a.EndpointR, name+".endpoint", &dst.Endpoint)

	token := dst.KeyFile != "" || dst.KeyID != "" || dst.TeamID != ""
	cert := dst.CertFile != ""
	switch {
	case token && cert:
		b.errorf(a.CertFileR, "Conflicting attributes", "%s: use either token auth (key_file, key_id, team_id) or certificate auth (cert_file), not both", name)
	case token:
		const why = " for token auth (with key_file, key_id, team_id)"
		b.require(a.KeyFile, a.KeyFileR, a.Def, name+".key_file", why)
		b.require(a.KeyID, a.KeyIDR, a.Def, name+".key_id", why)
		b.require(a.TeamID, a.TeamIDR, a.Def, name+".team_id", why)
	case !cert && !b.failed(a.KeyFileR) && !b.failed(a.CertFileR) && !b.failed(a.KeyIDR) && !b.failed(a.TeamIDR):
		b.errorf(a.Def, "Missing credentials", "%s: set key_file, key_id and team_id (token auth) or cert_file (certificate auth)", name)
	}
	if dst.CertPassword != "" && !cert {
		b.errorf(a.CertPasswordR, "Unsupported attribute", "%s.cert_password is only valid with cert_file", name)
	}
	if a.Connections != nil {
		if n := *a.Connections; n < 1 || n > maxAPNSConnections {
			b.errorf(a.ConnectionsR, "Invalid value", "%s.connections = %d: must be between 1 and %d", name, n, maxAPNSConnections)
		} else {
			dst.Connections = n
		}
	}
	return dst
}

func (b *builder) fcm(f *fcmBlock, name string) *FCM {
	dst := &FCM{}
	if b.require(f.ProjectID, f.ProjectIDR, f.Def, name+".project_id", "") {
		dst.ProjectID = *f.ProjectID
	}
	if b.require(f.Credentials, f.CredentialsR, f.Def, name+".credentials_file", "") {
		b.file(f.Credentials, f.CredentialsR, name+".credentials_file", fileSecret, &dst.CredentialsFile)
	}
	b.file(f.CAFile, f.CAFileR, name+".ca_file", filePublic, &dst.CAFile)
	b.endpoint(f.Endpoint, f.EndpointR, name+".endpoint", &dst.Endpoint)
	return dst
}

func (b *builder) endpoint(v *string, r hcl.Range, name string, dst *string) {
	if v == nil || *v == "" {
		return
	}
	u, err := checkBaseURL(*v)
	if err != nil {
		b.errorf(r, "Invalid endpoint", "%s = %q: %v", name, *v, err)
		return
	}
	*dst = u
}

func (b *builder) notifications(blocks []*notificationBlock, c *Config) {
	seen := map[string]hcl.Range{}
	for _, nb := range blocks {
		if !typeNameRE.MatchString(nb.Type) {
			b.errorf(nb.TypeR, "Invalid notification type", "notification %q: the type must match %s", nb.Type, typeNameRE)
			continue
		}
		if first, dup := seen[nb.Type]; dup {
			b.errorf(nb.Def, "Duplicate notification block", "notification %q is already defined at %s", nb.Type, first)
			continue
		}
		seen[nb.Type] = nb.Def
		n := newNotification(nb.Type)
		if builtin, ok := c.Notifications[nb.Type]; ok {
			cp := *builtin
			cp.Actions = append([]string(nil), builtin.Actions...)
			n = &cp
		}
		name := "notification." + nb.Type
		if nb.Default != nil {
			var s string
			b.enum(nb.Default, nb.DefaultR, name+".default", []string{"enabled", "disabled", "enforced"}, &s)
			if s != "" {
				n.Default = relay.Setting(s)
			}
		}
		b.duration(nb.TTL, nb.TTLR, name+".ttl", &n.TTL)
		if nb.Priority != nil {
			var s string
			b.enum(nb.Priority, nb.PriorityR, name+".priority", []string{"high", "normal"}, &s)
			if s != "" {
				n.Priority = relay.Priority(s)
			}
		}
		str(nb.Category, &n.Category)
		if nb.Actions != nil {
			if err := checkActions(*nb.Actions); err != nil {
				b.errorf(nb.ActionsR, "Invalid actions", "%s.actions: %v", name, err)
			} else {
				n.Actions = nil // an empty list makes a type non-actionable
				if len(*nb.Actions) > 0 {
					n.Actions = append([]string{}, *nb.Actions...)
				}
			}
		}
		b.seal(nb.Seal, nb.SealR, name+".seal", n)
		c.Notifications[nb.Type] = n
	}
}

// seal decodes a notification's seal attribute: true, false or
// "required" (true, and devices without a key get no content).
func (b *builder) seal(e hcl.Expression, r hcl.Range, name string, n *Notification) {
	if e == nil {
		return
	}
	v, diags := e.Value(nil)
	if diags.HasErrors() {
		b.diags = append(b.diags, diags...)
		return
	}
	switch {
	case v.IsNull():
		return
	case !v.IsKnown():
	case v.Type() == cty.Bool:
		n.Seal, n.SealRequired = v.True(), false
		return
	case v.Type() == cty.String && v.AsString() == SealRequired:
		n.Seal, n.SealRequired = true, true
		return
	case v.Type() == cty.String:
		b.errorf(r, "Invalid value", "%s = %q: must be true, false or %q", name, v.AsString(), SealRequired)
		return
	}
	b.errorf(r, "Invalid value", "%s: must be true, false or %q, not a %s", name, SealRequired, v.Type().FriendlyName())
}

func (b *builder) plugins(p *pluginsBlock, dst *Plugins) {
	if p == nil {
		return
	}
	b.path(p.Dir, p.DirR, "plugins.dir", true, &dst.Dir)
	b.pluginsDir(p.DirR, dst.Dir)
	b.duration(p.Timeout, p.TimeoutR, "plugins.timeout", &dst.Timeout)
	if p.MemoryLimit != nil {
		n, err := parseSize(*p.MemoryLimit)
		switch {
		case err != nil:
			b.errorf(p.MemoryLimitR, "Invalid size", `plugins.memory_limit = %q: %v; use a byte count or a size such as "512KiB", "32MiB", "1GiB"`, *p.MemoryLimit, err)
		case n < minMemoryLimit || n > maxMemoryLimit:
			b.errorf(p.MemoryLimitR, "Invalid size", "plugins.memory_limit = %q: must be between 64KiB and 4GiB", *p.MemoryLimit)
		default:
			dst.MemoryLimit = n
		}
	}
	b.enum(p.OnError, p.OnErrorR, "plugins.on_error", []string{OnErrorSkip, OnErrorSuppress}, &dst.OnError)
}

// pluginsDir checks, when the directory exists (it may not yet: it is
// watched), that only relayd's user or root can put plugins in it.
func (b *builder) pluginsDir(r hcl.Range, dir string) {
	if !b.checkFiles || b.failed(r) {
		return
	}
	if _, err := os.Stat(dir); err != nil {
		return
	}
	if err := fsperm.CheckDir(dir); err != nil {
		if !isSet(r) {
			r = b.top
		}
		b.errorf(r, "Unsafe directory permissions", "plugins.dir: %v (anyone who can write there can load policy plugins into relayd)", err)
	}
}

func (b *builder) retry(r *retryBlock, dst *Retry) {
	if r == nil {
		return
	}
	b.duration(r.Initial, r.InitialR, "retry.initial", &dst.Initial)
	b.duration(r.Max, r.MaxR, "retry.max", &dst.Max)
	if r.Jitter != nil {
		if j := *r.Jitter; j < 0 || j > 1 || j != j {
			b.errorf(r.JitterR, "Invalid value", "retry.jitter = %v: must be between 0 and 1", j)
		} else {
			dst.Jitter = j
		}
	}
	if dst.Max < dst.Initial && !b.failed(r.MaxR) && !b.failed(r.InitialR) {
		rng := r.MaxR
		if !isSet(rng) {
			rng = r.InitialR
		}
		b.errorf(rng, "Invalid retry policy", "retry.max (%s) must be at least retry.initial (%s)", dst.Max, dst.Initial)
	}
}

// nats builds the nats {} block and checks it against the store block.
func (b *builder) nats(n *natsBlock, sb *storeBlock, c *Config) {
	js := c.Store.Kind == StoreJetStream
	if n == nil {
		if js && sb != nil && sb.URL == nil {
			b.errorf(sb.Def, "Missing NATS server", `store "jetstream": set url (an existing NATS cluster) or add a nats {} block (a server inside relayd)`)
		}
		return
	}
	if !js {
		b.errorf(n.Def, "Unused block", `nats {}: the embedded NATS server is for store "jetstream"; this config uses store %q`, c.Store.Kind)
		return
	}
	dst := &NATS{StoreDir: filepath.Join(c.DataDir, "nats")}
	if n.Name != nil {
		if err := checkNATSName(*n.Name); err != nil {
			b.errorf(n.NameR, "Invalid value", "nats.name = %q: %v", *n.Name, err)
		}
		dst.Name = *n.Name
	}
	if n.Listen != nil && *n.Listen != "" && b.address(*n.Listen, n.ListenR, "nats.listen") {
		dst.Listen = *n.Listen
	}
	b.path(n.StoreDir, n.StoreDirR, "nats.store_dir", true, &dst.StoreDir)
	if n.SyncInterval != nil && *n.SyncInterval != "always" {
		b.duration(n.SyncInterval, n.SyncIntervalR, "nats.sync_interval", &dst.SyncInterval)
	}
	if cl := n.Cluster; cl != nil {
		dst.Cluster = &NATSCluster{Name: "edgerelay"}
		if cl.Name != nil && *cl.Name != "" {
			if err := checkNATSName(*cl.Name); err != nil {
				b.errorf(cl.NameR, "Invalid value", "nats.cluster.name = %q: %v", *cl.Name, err)
			}
			dst.Cluster.Name = *cl.Name
		}
		if b.require(cl.Listen, cl.ListenR, cl.Def, "nats.cluster.listen", "") && b.address(*cl.Listen, cl.ListenR, "nats.cluster.listen") {
			dst.Cluster.Listen = *cl.Listen
		}
		if cl.Routes != nil {
			for _, r := range *cl.Routes {
				u, err := url.Parse(r)
				if err != nil || (u.Scheme != "nats" && u.Scheme != "nats-route" && u.Scheme != "tls") || u.Host == "" {
					b.errorf(cl.RoutesR, "Invalid URL", `nats.cluster.routes: %q: want a route URL such as "nats://relay-2:6222"`, r)
					continue
				}
				dst.Cluster.Routes = append(dst.Cluster.Routes, r)
			}
		}
	}
	if dst.Cluster == nil && c.Store.Replicas > 1 && c.Store.URL == "" && sb != nil {
		b.errorf(sb.ReplicasR, "Invalid value", "store.replicas = %d: a single embedded NATS server keeps one copy; add nats { cluster {} } with routes to the other relays, or set replicas = 1", c.Store.Replicas)
	}
	c.NATS = dst
}

func (b *builder) queue(q *queueBlock, dst *Queue) {
	if q == nil {
		return
	}
	if q.Lease != nil {
		var d time.Duration
		b.duration(q.Lease, q.LeaseR, "queue.lease", &d)
		switch {
		case d == 0:
		case d < minQueueLease || d > maxQueueLease:
			b.errorf(q.LeaseR, "Invalid value", "queue.lease = %q: must be between %s and %s", *q.Lease, minQueueLease, maxQueueLease)
		default:
			dst.Lease = d
		}
	}
	if q.MaxOpenJobs != nil {
		if n := *q.MaxOpenJobs; n < 1 || n > maxMaxOpenJobs {
			b.errorf(q.MaxOpenJobsR, "Invalid value", "queue.max_open_jobs = %d: must be between 1 and %d", n, maxMaxOpenJobs)
		} else {
			dst.MaxOpenJobs = n
		}
	}
	if q.InMemory != nil {
		if n := *q.InMemory; n < minQueueInMemory || n > maxQueueInMemory {
			b.errorf(q.InMemoryR, "Invalid value", "queue.in_memory = %d: must be between %d and %d", n, minQueueInMemory, maxQueueInMemory)
		} else {
			dst.InMemory = n
		}
	}
}

func (b *builder) retention(r *retentionBlock, dst *Retention) {
	if r == nil {
		return
	}
	if r.Answers != nil {
		var d time.Duration
		b.duration(r.Answers, r.AnswersR, "retention.answers", &d)
		switch {
		case d == 0:
		case d < minAnswerRetention:
			b.errorf(r.AnswersR, "Invalid value", "retention.answers = %q: must be at least %s (apps resuming the actions stream need the recent answers)", *r.Answers, minAnswerRetention)
		default:
			dst.Answers = d
		}
	}
	b.durationOrOff(r.DeadLetters, r.DeadLettersR, "retention.dead_letters", &dst.DeadLetters)
	b.durationOrOff(r.InactiveDevices, r.InactiveDevicesR, "retention.inactive_devices", &dst.InactiveDevices)
}

// durationOrOff is duration that also takes "off" (0: never pruned).
func (b *builder) durationOrOff(v *string, r hcl.Range, name string, dst *time.Duration) {
	if v != nil && *v == "off" {
		*dst = 0
		return
	}
	b.duration(v, r, name, dst)
}

func (b *builder) address(addr string, r hcl.Range, name string) bool {
	if _, _, err := splitHostPort(addr); err != nil {
		b.errorf(r, "Invalid address", "%s = %q: %v", name, addr, err)
		return false
	}
	return true
}

// dropFailed clears every schema attribute whose value gohcl could not
// decode (it may leave a zero value behind), so validation treats it as
// unusable rather than as an empty value, and reports it only once.
func (b *builder) dropFailed(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			b.dropFailed(v.Elem())
		}
		return
	case reflect.Slice:
		for i := range v.Len() {
			b.dropFailed(v.Index(i))
		}
		return
	case reflect.Struct:
	default:
		return
	}
	t := v.Type()
	ranges := map[string]hcl.Range{}
	for i := range t.NumField() {
		if name, kind, _ := strings.Cut(t.Field(i).Tag.Get("hcl"), ","); kind == "attr_range" {
			ranges[name] = v.Field(i).Interface().(hcl.Range)
		}
	}
	for i := range t.NumField() {
		name, kind, _ := strings.Cut(t.Field(i).Tag.Get("hcl"), ",")
		switch kind {
		case "optional":
			if b.failed(ranges[name]) {
				v.Field(i).SetZero()
			}
		case "block":
			b.dropFailed(v.Field(i))
		}
	}
}

func pprofNote(on bool) string {
	if on {
		return " and /debug/pprof/"
	}
	return ""
}

func pprofFix(on bool) string {
	if on {
		return ", and consider pprof = false"
	}
	return ""
}
