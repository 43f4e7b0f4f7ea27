package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// String renders the config as normalized HCL: every default filled in,
// every path absolute, durations and sizes in canonical form, notification
// types sorted by name. cert_password is redacted, so the output is for
// humans (relayd -check -v, logs of a reload), not for storing secrets.
// Apart from a redacted password, parsing the output yields an equal Config.
func (c *Config) String() string { return string(c.format(true)) }

func (c *Config) format(redact bool) []byte {
	f := hclwrite.NewEmptyFile()
	root := f.Body()
	setStr := func(b *hclwrite.Body, name, v string) { b.SetAttributeValue(name, cty.StringVal(v)) }
	optStr := func(b *hclwrite.Body, name, v string) {
		if v != "" {
			setStr(b, name, v)
		}
	}
	block := func(name string, labels ...string) *hclwrite.Body {
		root.AppendNewline()
		return root.AppendNewBlock(name, labels).Body()
	}

	setStr(root, "data_dir", c.DataDir)
	setStr(root, "shutdown_timeout", formatDuration(c.ShutdownTimeout))

	b := block("log")
	setStr(b, "level", c.Log.Level)
	setStr(b, "format", c.Log.Format)

	b = block("socket")
	setStr(b, "path", c.Socket.Path)
	setStr(b, "mode", fmt.Sprintf("%04o", uint32(c.Socket.Mode.Perm())))
	setStr(b, "max_inflight_bytes", formatSize(c.Socket.MaxInflightBytes))

	b = block("api")
	setStr(b, "address", c.API.Address)
	if c.API.TLSCertFile != "" || c.API.TLSKeyFile != "" {
		t := b.AppendNewBlock("tls", nil).Body()
		optStr(t, "cert_file", c.API.TLSCertFile)
		optStr(t, "key_file", c.API.TLSKeyFile)
	}

	if c.Auth.Issuer != "" || c.Auth.Audience != "" || c.Auth.HS256SecretFile != "" || c.Auth.PublicKeyFile != "" {
		b = block("auth")
		setStr(b, "issuer", c.Auth.Issuer)
		setStr(b, "audience", c.Auth.Audience)
		optStr(b, "hs256_secret_file", c.Auth.HS256SecretFile)
		optStr(b, "public_key_file", c.Auth.PublicKeyFile)
		optStr(b, "jwks_url", c.Auth.JWKSURL)
		if c.Auth.JWKSURL != "" {
			setStr(b, "jwks_refresh", formatDuration(c.Auth.JWKSRefresh))
		}
		if c.Auth.MaxTokenLifetime > 0 {
			setStr(b, "max_token_lifetime", formatDuration(c.Auth.MaxTokenLifetime))
		} else {
			setStr(b, "max_token_lifetime", "off")
		}
	}

	b = block("store", c.Store.Kind)
	optStr(b, "path", c.Store.Path)
	optStr(b, "url", c.Store.URL)
	if c.Store.Kind == StoreJetStream {
		b.SetAttributeValue("replicas", cty.NumberIntVal(int64(c.Store.Replicas)))
	}
	optStr(b, "credentials_file", c.Store.CredentialsFile)
	optStr(b, "ca_file", c.Store.CAFile)
	optStr(b, "cert_file", c.Store.CertFile)
	optStr(b, "key_file", c.Store.KeyFile)
	setStr(b, "retention", formatDuration(c.Store.Retention))
	if n := c.NATS; n != nil {
		b = block("nats")
		optStr(b, "name", n.Name)
		setStr(b, "listen", n.Listen)
		setStr(b, "store_dir", n.StoreDir)
		if n.SyncInterval == 0 {
			setStr(b, "sync_interval", "always")
		} else {
			setStr(b, "sync_interval", formatDuration(n.SyncInterval))
		}
		if cl := n.Cluster; cl != nil {
			cb := b.AppendNewBlock("cluster", nil).Body()
			setStr(cb, "name", cl.Name)
			setStr(cb, "listen", cl.Listen)
			routes := make([]cty.Value, len(cl.Routes))
			for i, r := range cl.Routes {
				routes[i] = cty.StringVal(r)
			}
			if len(routes) == 0 {
				cb.SetAttributeValue("routes", cty.ListValEmpty(cty.String))
			} else {
				cb.SetAttributeValue("routes", cty.ListVal(routes))
			}
		}
	}

	for _, a := range c.Apps {
		b = block("app", a.Name)
		if p := a.APNS; p != nil {
			ab := b.AppendNewBlock("apns", nil).Body()
			setStr(ab, "topic", p.Topic)
			optStr(ab, "key_file", p.KeyFile)
			optStr(ab, "key_id", p.KeyID)
			optStr(ab, "team_id", p.TeamID)
			optStr(ab, "cert_file", p.CertFile)
			if p.CertPassword != "" {
				pw := p.CertPassword
				if redact {
					pw = "REDACTED"
				}
				setStr(ab, "cert_password", pw)
			}
			optStr(ab, "endpoint", p.Endpoint)
			optStr(ab, "ca_file", p.CAFile)
			ab.SetAttributeValue("connections", cty.NumberIntVal(int64(p.Connections)))
		}
		if p := a.FCM; p != nil {
			fb := b.AppendNewBlock("fcm", nil).Body()
			setStr(fb, "project_id", p.ProjectID)
			setStr(fb, "credentials_file", p.CredentialsFile)
			optStr(fb, "endpoint", p.Endpoint)
			optStr(fb, "ca_file", p.CAFile)
		}
	}

	types := make([]string, 0, len(c.Notifications))
	for t := range c.Notifications {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		n := c.Notifications[t]
		b = block("notification", t)
		setStr(b, "default", string(n.Default))
		setStr(b, "ttl", formatDuration(n.TTL))
		setStr(b, "priority", string(n.Priority))
		setStr(b, "category", n.Category)
		actions := make([]cty.Value, len(n.Actions))
		for i, a := range n.Actions {
			actions[i] = cty.StringVal(a)
		}
		if len(actions) == 0 {
			b.SetAttributeValue("actions", cty.ListValEmpty(cty.String))
		} else {
			b.SetAttributeValue("actions", cty.ListVal(actions))
		}
		if n.SealRequired {
			setStr(b, "seal", SealRequired)
		} else {
			b.SetAttributeValue("seal", cty.BoolVal(n.Seal))
		}
	}

	b = block("plugins")
	setStr(b, "dir", c.Plugins.Dir)
	setStr(b, "timeout", formatDuration(c.Plugins.Timeout))
	setStr(b, "memory_limit", formatSize(c.Plugins.MemoryLimit))
	setStr(b, "on_error", c.Plugins.OnError)

	b = block("queue")
	b.SetAttributeValue("max_open_jobs", cty.NumberIntVal(int64(c.Queue.MaxOpenJobs)))
	setStr(b, "lease", formatDuration(c.Queue.Lease))
	b = block("retention")
	setStr(b, "answers", formatDuration(c.Retention.Answers))
	setStr(b, "dead_letters", offOr(c.Retention.DeadLetters))
	setStr(b, "inactive_devices", offOr(c.Retention.InactiveDevices))
	b = block("retry")
	setStr(b, "initial", formatDuration(c.Retry.Initial))
	setStr(b, "max", formatDuration(c.Retry.Max))
	b.SetAttributeValue("jitter", cty.NumberFloatVal(c.Retry.Jitter))

	b = block("metrics")
	setStr(b, "address", c.Metrics.Address)
	b.SetAttributeValue("allow_remote", cty.BoolVal(c.Metrics.AllowRemote))
	b.SetAttributeValue("pprof", cty.BoolVal(c.Metrics.Pprof))

	b = block("audit")
	setStr(b, "retention", formatDuration(c.Audit.Retention))
	return hclwrite.Format(f.Bytes())
}

// offOr renders a retention: "off" for 0 (kept).
func offOr(d time.Duration) string {
	if d == 0 {
		return "off"
	}
	return formatDuration(d)
}

// formatDuration renders d like time.Duration.String without the trailing
// zero units ("24h", "1h30m", "5m", "250ms").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
