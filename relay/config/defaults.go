package config

import (
	"os"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// Default returns the configuration used for everything a file leaves out.
// It is the one place defaults live. Paths in it are relative, as they would
// be written in a file; [Load] and [Parse] resolve them against the config
// file's directory. Store.Path is empty here: it defaults to
// <data_dir>/relay.db, which depends on the data_dir the file chooses.
// The result has no apps; a file must declare at least one.
func Default() *Config {
	return &Config{
		Log:     Log{Level: "info", Format: "text"},
		DataDir: "./data",
		Socket:  Socket{Path: "./run/relayd.sock", Mode: os.FileMode(0o660), MaxInflightBytes: DefaultMaxInflightBytes},
		API:     API{Address: "127.0.0.1:8480"},
		Auth:    Auth{MaxTokenLifetime: DefaultMaxTokenLifetime},
		Store:   Store{Kind: StoreBolt, Retention: DefaultRetention},
		Notifications: map[string]*Notification{
			relay.TypeIdentityVerification: {
				Type: relay.TypeIdentityVerification, Default: relay.SettingEnabled,
				TTL: 2 * time.Minute, Priority: relay.PriorityHigh,
				Category: "APPROVE_DENY", Actions: []string{"approve", "deny"}, Seal: true,
			},
			relay.TypeNewTrustedDevice: {
				Type: relay.TypeNewTrustedDevice, Default: relay.SettingEnabled,
				TTL: 10 * time.Minute, Priority: relay.PriorityHigh,
				Category: "APPROVE_DENY", Actions: []string{"approve", "deny"},
			},
			relay.TypeAccountShared: {
				Type: relay.TypeAccountShared, Default: relay.SettingEnabled,
				TTL: 24 * time.Hour, Priority: relay.PriorityNormal,
			},
			relay.TypeOTPReceived: {
				Type: relay.TypeOTPReceived, Default: relay.SettingEnabled,
				TTL: 5 * time.Minute, Priority: relay.PriorityHigh, Seal: true,
			},
		},
		Plugins: Plugins{
			Dir:         "./build/policies",
			Timeout:     250 * time.Millisecond,
			MemoryLimit: 32 << 20,
			OnError:     OnErrorSkip,
		},
		Retry:           Retry{Initial: time.Second, Max: 5 * time.Minute, Jitter: 0.2},
		Queue:           Queue{MaxOpenJobs: DefaultMaxOpenJobs, InMemory: DefaultQueueInMemory, Lease: DefaultQueueLease},
		Retention:       Retention{Answers: DefaultAnswerRetention, DeadLetters: DefaultDeadLetterRetention},
		Metrics:         Metrics{Address: "", Pprof: true},
		Audit:           Audit{Retention: DefaultAuditRetention},
		ShutdownTimeout: 10 * time.Second,
	}
}

// DefaultStoreFile is the bolt file name under data_dir when store "bolt"
// has no path.
const DefaultStoreFile = "relay.db"

// defaultAPNSConnections is apns.connections when the block leaves it out.
const defaultAPNSConnections = 2

// defaultJetStreamReplicas is store "jetstream" replicas when left out.
const defaultJetStreamReplicas = 1

// newNotification returns the defaults of a notification type the file
// declares that is not one of the built-in four.
func newNotification(name string) *Notification {
	return &Notification{
		Type:     name,
		Default:  relay.SettingEnabled,
		TTL:      5 * time.Minute,
		Priority: relay.PriorityNormal,
	}
}

// Store kinds.
const (
	StoreBolt      = "bolt"
	StoreJetStream = "jetstream"
)

// Plugin failure handling (plugins.on_error).
const (
	OnErrorSkip     = "skip"     // ignore the failed plugin, continue the chain
	OnErrorSuppress = "suppress" // treat the failure as a suppress verdict
)

// DefaultJWKSRefresh is how often auth.jwks_url is fetched again.
const DefaultJWKSRefresh = time.Hour

// Retention defaults: answers for a day (the actions stream's replay
// window), dead letters for 30 days; inactive devices are kept.
const (
	DefaultAnswerRetention     = 24 * time.Hour
	DefaultDeadLetterRetention = 30 * 24 * time.Hour
	minAnswerRetention         = time.Minute
)

// Queue defaults and bounds.
const (
	DefaultMaxOpenJobs   = 1_000_000
	DefaultQueueInMemory = 10_000
	DefaultQueueLease    = 30 * time.Second
	minQueueLease        = time.Second
	maxQueueLease        = 10 * time.Minute
	maxMaxOpenJobs       = 1_000_000_000
	minQueueInMemory     = 100
	maxQueueInMemory     = 10_000_000
)

// DefaultRetention keeps a finished event's record for a week after it
// expired.
const DefaultRetention = 7 * 24 * time.Hour

// DefaultAuditRetention keeps audit log entries for 365 days.
const DefaultAuditRetention = 365 * 24 * time.Hour

// DefaultMaxTokenLifetime is auth.max_token_lifetime when left out: an app
// API token valid for longer than a day is refused.
const DefaultMaxTokenLifetime = 24 * time.Hour

// DefaultMaxInflightBytes is socket.max_inflight_bytes when left out: room
// for one maximum batch (about 161 MiB) and smaller ones beside it.
const DefaultMaxInflightBytes = 256 << 20

// minMaxInflightBytes is the least socket.max_inflight_bytes: one maximum
// event.
const minMaxInflightBytes = 64 << 10
