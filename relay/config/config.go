package config

import (
	"os"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// Config is a loaded, validated and defaulted config.hcl. Every path in it is
// absolute (relative paths in the file are resolved against the file's
// directory). Durations and sizes are parsed.
type Config struct {
	File    string // absolute path of the file it was loaded from
	Log     Log
	DataDir string
	Socket  Socket
	API     API
	Auth    Auth
	Store   Store
	// Apps in file order; AppByName indexes them.
	Apps []*App
	// Notifications holds one entry per known type: the four built-in types
	// (with DESIGN.md defaults when the file has no block for them) plus any
	// type the file declares. Keyed by type name.
	Notifications map[string]*Notification
	Plugins       Plugins
	Retry         Retry
	Queue         Queue
	Retention     Retention
	NATS          *NATS // nil: no embedded NATS server
	Metrics       Metrics
	Audit         Audit
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight sends.
	ShutdownTimeout time.Duration
}

// Defaults returns each configured notification type's default setting,
// the input of relay.EffectiveSettings.
func (c *Config) Defaults() map[string]relay.Setting {
	out := make(map[string]relay.Setting, len(c.Notifications))
	for t, n := range c.Notifications {
		out[t] = n.Default
	}
	return out
}

// AppByName returns the app block with that label, or nil.
func (c *Config) AppByName(name string) *App {
	for _, a := range c.Apps {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Log is the log {} block.
type Log struct {
	Level  string // trace | debug | info | warn | error
	Format string // text | json
}

// Socket is the socket {} block.
type Socket struct {
	Path string
	Mode os.FileMode
	// MaxInflightBytes bounds the NDJSON batch bytes of all requests in
	// flight together; beyond it the socket answers 503 with Retry-After.
	MaxInflightBytes int64
}

// API is the api {} block (the app API, HTTP over TCP).
type API struct {
	Address     string
	TLSCertFile string // empty: plain HTTP (only on a loopback address)
	TLSKeyFile  string
}

// Auth is the auth {} block: how app API bearer tokens are verified.
type Auth struct {
	Issuer          string
	Audience        string
	HS256SecretFile string
	PublicKeyFile   string
	// MaxTokenLifetime refuses tokens valid for longer (exp - iat, or
	// exp - now without iat); 0 means no maximum ("off").
	MaxTokenLifetime time.Duration
	// JWKSURL is an identity provider's JSON Web Key Set (RS256, ES256 or
	// EdDSA keys, chosen by the token's kid), instead of a key file.
	JWKSURL string
	// JWKSRefresh is how often the key set is fetched again (a token with
	// an unknown kid also fetches it, at most every 5 minutes).
	JWKSRefresh time.Duration
}

// Store is the store "kind" {} block.
type Store struct {
	Kind     string // bolt | jetstream
	Path     string // bolt
	URL      string // jetstream: an existing NATS cluster ("" with a nats {} block: the embedded server)
	Replicas int    // jetstream
	// jetstream with URL: TLS and credentials (nats.go options)
	CredentialsFile string
	CAFile          string
	CertFile        string
	KeyFile         string
	// Retention is how long a finished event's record (decision, delivery
	// states) is kept after its expires_at; the idempotency window for
	// (workspace, id) ends with it.
	Retention time.Duration
}

// NATS is the nats {} block: a NATS server (JetStream on) run inside
// relayd, for store "jetstream".
type NATS struct {
	// Name is the server's name, unique in the cluster; it also names this
	// relay in job leases. Default: the host name.
	Name string
	// Listen is the client address ("" = no client port: in-process only).
	Listen   string
	StoreDir string
	// SyncInterval is how often JetStream fsyncs; 0 means every write
	// (the default), so an accepted event survives a power cut.
	SyncInterval time.Duration
	Cluster      *NATSCluster // nil: a single server
}

// NATSCluster is the nats { cluster {} } block: routes to the other relays'
// servers.
type NATSCluster struct {
	Name   string
	Listen string
	Routes []string
}

// App is an app "name" {} block: push credentials for one mobile app.
type App struct {
	Name string
	APNS *APNS // nil when the block is absent
	FCM  *FCM  // nil when the block is absent
}

// APNS is an app's apns {} block.
type APNS struct {
	Topic        string
	KeyFile      string // token auth (.p8) ...
	KeyID        string
	TeamID       string
	CertFile     string // ... or certificate auth (.p12 or .pem)
	CertPassword string
	Endpoint     string // base URL; empty: Apple's host by device environment
	CAFile       string
	Connections  int
}

// FCM is an app's fcm {} block.
type FCM struct {
	ProjectID       string
	CredentialsFile string
	Endpoint        string // base URL; empty: Google's host
	CAFile          string
}

// Notification is a notification "type" {} block.
type Notification struct {
	Type     string
	Default  relay.Setting // the workspace setting when the workspace never set one
	TTL      time.Duration
	Priority relay.Priority
	Category string   // APNs category for actionable types
	Actions  []string // offered answers; non-empty means actionable
	Seal     bool     // seal title/body/data to the device's public key
	// SealRequired (seal = "required", implies Seal): a device without a
	// public key gets a generic alert with no content; the app fetches the
	// content with GET /v1/events/{id}.
	SealRequired bool
}

// SealRequired is the seal value that keeps content off keyless devices.
const SealRequired = "required"

// Actionable reports whether alerts of this type offer answers.
func (n *Notification) Actionable() bool { return len(n.Actions) > 0 }

// Plugins is the plugins {} block.
type Plugins struct {
	Dir         string
	Timeout     time.Duration
	MemoryLimit int64  // bytes
	OnError     string // skip | suppress
}

// Queue is the queue {} block: how much undelivered work relayd keeps.
type Queue struct {
	// MaxOpenJobs is the backlog (open delivery jobs, on disk) at which the
	// socket answers 503 instead of accepting more events.
	MaxOpenJobs int
	// InMemory is accepted for old config files and ignored: the queue
	// holds only the sends in flight.
	InMemory int
	// Lease is how long a job leased by one relay is its own; a relay that
	// dies mid-send has its jobs sent by the others after it.
	Lease time.Duration
}

// Retention is the retention {} block: how long data other than events
// is kept (events: store.retention). 0 means kept until erased ("off").
type Retention struct {
	// Answers is how long answers stay in the answer log that the actions
	// stream and GET /v1/answers read (the first-answer record stays with
	// its event).
	Answers time.Duration
	// DeadLetters is how long a dead letter is kept after it failed.
	DeadLetters time.Duration
	// InactiveDevices removes devices not registered again (updated_at)
	// for this long: apps re-register at every start, so a device silent
	// that long is gone.
	InactiveDevices time.Duration
}

// Retry is the retry {} block.
type Retry struct {
	Initial time.Duration
	Max     time.Duration
	Jitter  float64
}

// Metrics is the metrics {} block.
type Metrics struct {
	Address string // empty: no metrics listener
	// AllowRemote must be set for an Address that is not loopback: the
	// listener has no authentication.
	AllowRemote bool
	// Pprof serves /debug/pprof/ on the metrics listener.
	Pprof bool
}

// Audit is the audit {} block.
type Audit struct {
	// Retention is how long audit log entries are kept; older ones are
	// pruned with the event records.
	Retention time.Duration
}
