package config

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// minimalApp is the smallest valid app block; cases append their lines to it.
const minimalApp = `app "demo" {
  fcm {
    project_id       = "p"
    credentials_file = "creds.json"
  }
}
`

func errorsOf(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, d)
		}
	}
	return out
}

// lineOf returns the 1-based line on which the last occurrence of at in src
// ends (cases append to minimalApp, so the last occurrence is theirs).
func lineOf(t *testing.T, src, at string) int {
	t.Helper()
	i := strings.LastIndex(src, at)
	if i < 0 {
		t.Fatalf("marker %q not in source", at)
	}
	return strings.Count(src[:i+len(at)], "\n") + 1
}

// invalidCases each add one mistake to minimalApp. They also seed FuzzParse.
var invalidCases = []struct {
	name string
	src  string // appended to minimalApp unless noApp
	at   string // text on the line the error must point at
	want string // text the message must contain (names the attribute)
}{
	{"unknown top attribute", `colour = "red"`, "colour", `"colour"`},
	{"unknown block", `frobnicate {}`, "frobnicate", `"frobnicate"`},
	{"unknown nested attribute", "log {\n  lvl = \"x\"\n}", "lvl", `"lvl"`},
	{"unknown attribute in app", "app \"x\" {\n  fcm {\n    project_id = \"p\"\n    credentials_file = \"c\"\n    region = \"eu\"\n  }\n}", "region", `"region"`},
	{"duplicate log block", "log {}\nlog {}", "log {}\nlog", "Duplicate log block"},
	{"log level", `log { level = "loud" }`, "loud", `log.level = "loud": must be one of trace`},
	{"log format", `log { format = "xml" }`, "xml", "log.format"},
	{"data_dir empty", `data_dir = ""`, "data_dir", "data_dir must not be empty"},
	{"shutdown_timeout syntax", `shutdown_timeout = "10 seconds"`, "shutdown_timeout", `shutdown_timeout = "10 seconds": not a duration`},
	{"shutdown_timeout zero", `shutdown_timeout = "0s"`, "shutdown_timeout", "shutdown_timeout = \"0s\": must be greater than zero"},
	{"shutdown_timeout negative", `shutdown_timeout = "-1s"`, "shutdown_timeout", "must be greater than zero"},
	{"socket mode digits", `socket { mode = "0999" }`, "0999", `socket.mode = "0999"`},
	{"socket mode word", `socket { mode = "rw-rw----" }`, "rw-", "socket.mode"},
	{"socket mode sticky", `socket { mode = "01777" }`, "01777", "socket.mode"},
	{"socket path empty", `socket { path = "" }`, "path", "socket.path must not be empty"},
	{"socket path too long", `socket { path = "/` + strings.Repeat("d", 120) + `" }`, "path", "socket.path: /" + strings.Repeat("d", 120)},
	{"api address", `api { address = "localhost" }`, "localhost", `api.address = "localhost": must be "host:port"`},
	{"api port", `api { address = "127.0.0.1:99999" }`, "99999", "api.address"},
	{"api plain public", `api { address = "0.0.0.0:8480" }`, "0.0.0.0", "plain HTTP refused unless the address is loopback"},
	{"api plain all interfaces", `api { address = ":8480" }`, ":8480", "plain HTTP refused"},
	{"api tls without key", "api {\n  address = \"0.0.0.0:8480\"\n  tls { cert_file = \"c.pem\" }\n}", "tls", "api.tls.key_file is required when cert_file is set"},
	{"api tls empty key", "api {\n  tls {\n    cert_file = \"c.pem\"\n    key_file = \"\"\n  }\n}", "key_file", "api.tls.key_file must not be empty"},
	{"auth both keys", "auth {\n  issuer = \"u\"\n  audience = \"e\"\n  hs256_secret_file = \"s\"\n  public_key_file = \"k.pem\"\n}", "public_key_file", "exactly one of hs256_secret_file, public_key_file and jwks_url"},
	{"auth key and jwks", "auth {\n  issuer = \"u\"\n  audience = \"e\"\n  hs256_secret_file = \"s\"\n  jwks_url = \"https://idp.example/jwks.json\"\n}", "jwks_url", "exactly one of hs256_secret_file, public_key_file and jwks_url"},
	{"auth jwks plain http", "auth {\n  issuer = \"u\"\n  audience = \"e\"\n  jwks_url = \"http://idp.example/jwks.json\"\n}", "jwks_url", "auth.jwks_url = \"http://idp.example/jwks.json\": plain http is refused"},
	{"auth jwks refresh", "auth {\n  issuer = \"u\"\n  audience = \"e\"\n  jwks_url = \"https://idp.example/jwks.json\"\n  jwks_refresh = \"10s\"\n}", "jwks_refresh", "auth.jwks_refresh = \"10s\": must be at least 1m"},
	{"auth no key", "auth {\n  issuer = \"u\"\n  audience = \"e\"\n}", "auth {", "auth: set exactly one of hs256_secret_file"},
	{"auth no issuer", "auth {\n  audience = \"e\"\n  hs256_secret_file = \"s\"\n}", "auth {", "auth.issuer is required"},
	{"auth empty audience", "auth {\n  issuer = \"u\"\n  audience = \"\"\n  hs256_secret_file = \"s\"\n}", "audience", "auth.audience must not be empty"},
	{"store kind", `store "redis" {}`, "redis", `store "redis": kind must be "bolt" or "jetstream"`},
	{"store bolt url", `store "bolt" { url = "nats://x:4222" }`, "url", `store.url is only valid in store "jetstream"`},
	{"store bolt empty path", `store "bolt" { path = "" }`, "path", "store.path must not be empty"},
	{"store jetstream no url", `store "jetstream" { replicas = 3 }`, "jetstream", "set url (an existing NATS cluster) or add a nats {} block"},
	{"nats block with bolt", `nats { listen = "" }`, "nats", `the embedded NATS server is for store "jetstream"`},
	{"nats replicas without cluster", "store \"jetstream\" { replicas = 3 }\nnats {}", "replicas", "a single embedded NATS server keeps one copy"},
	{"nats bad name", "store \"jetstream\" {}\nnats { name = \"a.b\" }", "name", `nats.name = "a.b"`},
	{"nats route scheme", "store \"jetstream\" {}\nnats {\n cluster {\n listen = \"127.0.0.1:6222\"\n routes = [\"http://x:1\"]\n }\n}", "routes", "want a route URL"},
	{"queue lease too short", `queue { lease = "10ms" }`, "lease", "queue.lease = \"10ms\": must be between 1s and 10m0s"},
	{"store jetstream url scheme", `store "jetstream" { url = "http://x:4222" }`, "url", `store.url = "http://x:4222"`},
	{"store jetstream replicas", `store "jetstream" {` + "\n" + `  url = "nats://a:4222,nats://b:4222"` + "\n  replicas = 9\n}", "replicas", "store.replicas = 9: must be 1 or 3"},
	{"store jetstream path", `store "jetstream" {` + "\n" + `  url = "nats://a:4222"` + "\n  path = \"x\"\n}", "path", `store.path is only valid in store "bolt"`},
	{"duplicate store", "store \"bolt\" {}\nstore \"bolt\" {}", "store \"bolt\" {}\nstore", "Duplicate store block"},
	{"duplicate app", minimalApp, `app "demo"`, `app "demo" is already defined at test.hcl:1`},
	{"app name", "app \"no spaces\" {\n  fcm {\n    project_id = \"p\"\n    credentials_file = \"c\"\n  }\n}", "no spaces", `app "no spaces": the name must match`},
	{"app without providers", `app "empty" {}`, "empty", "app.empty: needs an apns block, an fcm block or both"},
	{"apns no topic", "app \"x\" {\n  apns {\n    cert_file = \"c.p12\"\n  }\n}", "apns", "app.x.apns.topic is required"},
	{"apns no credentials", "app \"x\" {\n  apns {\n    topic = \"t\"\n  }\n}", "apns", "app.x.apns: set key_file, key_id and team_id"},
	{"apns token and cert", "app \"x\" {\n  apns {\n    topic = \"t\"\n    key_file = \"k.p8\"\n    key_id = \"K\"\n    team_id = \"T\"\n    cert_file = \"c.p12\"\n  }\n}", "cert_file", "app.x.apns: use either token auth"},
	{"apns token no key_id", "app \"x\" {\n  apns {\n    topic = \"t\"\n    key_file = \"k.p8\"\n    team_id = \"T\"\n  }\n}", "apns", "app.x.apns.key_id is required for token auth"},
	{"apns cert_password without cert", "app \"x\" {\n  apns {\n    topic = \"t\"\n    key_file = \"k.p8\"\n    key_id = \"K\"\n    team_id = \"T\"\n    cert_password = \"pw\"\n  }\n}", "cert_password", "app.x.apns.cert_password is only valid with cert_file"},
	{"apns endpoint path", "app \"x\" {\n  apns {\n    topic = \"t\"\n    cert_file = \"c.p12\"\n    endpoint = \"https://h:8443/3/device\"\n  }\n}", "endpoint", `app.x.apns.endpoint = "https://h:8443/3/device": must be a base URL with no path`},
	{"apns endpoint scheme", "app \"x\" {\n  apns {\n    topic = \"t\"\n    cert_file = \"c.p12\"\n    endpoint = \"ftp://h\"\n  }\n}", "endpoint", "app.x.apns.endpoint"},
	{"apns connections", "app \"x\" {\n  apns {\n    topic = \"t\"\n    cert_file = \"c.p12\"\n    connections = 0\n  }\n}", "connections", "app.x.apns.connections = 0: must be between 1 and 64"},
	{"apns connections type", "app \"x\" {\n  apns {\n    topic = \"t\"\n    cert_file = \"c.p12\"\n    connections = \"two\"\n  }\n}", "connections", "number is required"},
	{"fcm no project", "app \"x\" {\n  fcm {\n    credentials_file = \"c\"\n  }\n}", "fcm", "app.x.fcm.project_id is required"},
	{"fcm no credentials", "app \"x\" {\n  fcm {\n    project_id = \"p\"\n  }\n}", "fcm", "app.x.fcm.credentials_file is required"},
	{"fcm endpoint query", "app \"x\" {\n  fcm {\n    project_id = \"p\"\n    credentials_file = \"c\"\n    endpoint = \"https://h:8444?x=1\"\n  }\n}", "endpoint", "app.x.fcm.endpoint"},
	{"notification type name", `notification "OTP" {}`, "OTP", `notification "OTP": the type must match`},
	{"notification duplicate", "notification \"otp_received\" {}\nnotification \"otp_received\" {}", "{}\nnotification", `notification "otp_received" is already defined at test.hcl:7`},
	{"notification default", `notification "otp_received" { default = "on" }`, "default", `notification.otp_received.default = "on": must be one of enabled, disabled, enforced`},
	{"notification ttl", `notification "pager" { ttl = "soon" }`, "ttl", `notification.pager.ttl = "soon": not a duration`},
	{"notification priority", `notification "pager" { priority = "urgent" }`, "priority", "notification.pager.priority"},
	{"notification empty action", `notification "pager" { actions = ["ok", ""] }`, "actions", "notification.pager.actions: action 2 is empty"},
	{"notification duplicate action", `notification "pager" { actions = ["ok", "ok"] }`, "actions", `notification.pager.actions: action "ok" is listed twice`},
	{"notification many actions", `notification "pager" { actions = ["a","b","c","d","e","f","g","h","i"] }`, "actions", "notification.pager.actions: 9 actions; at most 8"},
	{"notification seal word", `notification "pager" { seal = "always" }`, "seal", `notification.pager.seal = "always": must be true, false or "required"`},
	{"notification seal number", `notification "pager" { seal = 1 }`, "seal", `notification.pager.seal: must be true, false or "required"`},
	{"plugins timeout", `plugins { timeout = "fast" }`, "timeout", "plugins.timeout"},
	{"plugins memory unit", `plugins { memory_limit = "16MB" }`, "memory_limit", `plugins.memory_limit = "16MB": not a size`},
	{"plugins memory small", `plugins { memory_limit = "1KiB" }`, "memory_limit", "plugins.memory_limit = \"1KiB\": must be between 64KiB and 4GiB"},
	{"plugins memory huge", `plugins { memory_limit = "99999999999999999999" }`, "memory_limit", "plugins.memory_limit"},
	{"plugins on_error", `plugins { on_error = "retry" }`, "on_error", `plugins.on_error = "retry": must be one of skip, suppress`},
	{"plugins dir empty", `plugins { dir = "" }`, "dir", "plugins.dir must not be empty"},
	{"retry initial", `retry { initial = "1" }`, "initial", `retry.initial = "1": not a duration`},
	{"retry max below initial", "retry {\n  initial = \"10s\"\n  max = \"5s\"\n}", "max", "retry.max (5s) must be at least retry.initial (10s)"},
	{"retry initial above default max", `retry { initial = "10m" }`, "initial", "retry.max (5m0s) must be at least retry.initial (10m0s)"},
	{"retry jitter high", `retry { jitter = 1.5 }`, "jitter", "retry.jitter = 1.5: must be between 0 and 1"},
	{"retry jitter negative", `retry { jitter = -0.1 }`, "jitter", "retry.jitter"},
	{"store retention bad", `store "bolt" { retention = "forever" }`, "retention", "store.retention"},
	{"audit retention bad", `audit { retention = "365d" }`, "retention", `audit.retention = "365d": not a duration`},
	{"audit retention zero", `audit { retention = "0s" }`, "retention", `audit.retention = "0s": must be greater than zero`},
	{"audit unknown attribute", `audit { keep = "1h" }`, "keep", "keep"},
	{"queue max_open_jobs zero", `queue { max_open_jobs = 0 }`, "max_open_jobs", "queue.max_open_jobs = 0: must be between 1 and"},
	{"queue in_memory small", `queue { in_memory = 5 }`, "in_memory", "queue.in_memory = 5: must be between 100 and"},
	{"queue unknown attribute", `queue { max_bytes = 5 }`, "max_bytes", "max_bytes"},
	{"auth max_token_lifetime", "auth {\n  issuer = \"i\"\n  audience = \"a\"\n  hs256_secret_file = \"s\"\n  max_token_lifetime = \"0\"\n}", "max_token_lifetime", `auth.max_token_lifetime = "0": must be greater than zero`},
	{"socket mode world-writable", `socket { mode = "0666" }`, "mode", `socket.mode = "0666": writable by others`},
	{"socket max_inflight_bytes small", `socket { max_inflight_bytes = "1KiB" }`, "max_inflight_bytes", `socket.max_inflight_bytes = "1KiB": must be at least 64KiB`},
	{"socket max_inflight_bytes unit", `socket { max_inflight_bytes = "1GB" }`, "max_inflight_bytes", `socket.max_inflight_bytes = "1GB": not a size`},
	{"metrics not loopback", `metrics { address = "0.0.0.0:9480" }`, "0.0.0.0", `metrics.address = "0.0.0.0:9480" is not loopback: /metrics and /debug/pprof/ would be served`},
	{"metrics all interfaces", `metrics { address = ":9480" }`, ":9480", `set allow_remote = true`},
	{"metrics address", `metrics { address = "9480" }`, "9480", `metrics.address = "9480"`},
	{"variables", `data_dir = var.dir`, "var.dir", "Variables not allowed"},
	{"syntax", `log {`, "log", "Unclosed configuration block"},
}

func TestParseInvalid(t *testing.T) {
	// Further errors expected: gohcl reports an unknown value twice.
	more := map[string]int{"variables": 1}
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			src := minimalApp + tc.src + "\n"
			cfg, diags := Parse([]byte(src), "test.hcl")
			errs := errorsOf(diags)
			if len(errs) != 1+more[tc.name] {
				t.Fatalf("want exactly %d error(s), got %d:\n%v", 1+more[tc.name], len(errs), diags)
			}
			if cfg != nil {
				t.Errorf("config returned despite errors")
			}
			msg := errs[0].Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q\ndoes not contain %q", msg, tc.want)
			}
			if pos := fmt.Sprintf("test.hcl:%d,", lineOf(t, src, tc.at)); !strings.HasPrefix(msg, pos) {
				t.Errorf("message %q\ndoes not start with %q", msg, pos)
			}
		})
	}
}

func TestParseNoApp(t *testing.T) {
	_, diags := Parse([]byte("log { level = \"debug\" }\n"), "test.hcl")
	errs := errorsOf(diags)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "test.hcl:1,1-1: Missing app block; at least one app") {
		t.Fatalf("got %v", diags)
	}
}

func TestParseDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg, diags := Parse([]byte(minimalApp), filepath.Join(dir, "relay.hcl"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := Default()
	if cfg.Log != want.Log || cfg.ShutdownTimeout != 10*time.Second || cfg.Retry != want.Retry ||
		cfg.Metrics.Address != "" || cfg.API.Address != "127.0.0.1:8480" || cfg.Socket.Mode != 0o660 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.File != filepath.Join(dir, "relay.hcl") {
		t.Errorf("File = %q", cfg.File)
	}
	for got, want := range map[string]string{
		cfg.DataDir:                           filepath.Join(dir, "data"),
		cfg.Socket.Path:                       filepath.Join(dir, "run", "relayd.sock"),
		cfg.Store.Path:                        filepath.Join(dir, "data", "relay.db"),
		cfg.Plugins.Dir:                       filepath.Join(dir, "build", "policies"),
		cfg.Apps[0].FCM.CredentialsFile:       filepath.Join(dir, "creds.json"),
		cfg.Store.Kind:                        StoreBolt,
		cfg.Plugins.OnError:                   OnErrorSkip,
		formatSize(cfg.Plugins.MemoryLimit):   "32MiB",
		cfg.Plugins.Timeout.String():          "250ms",
		string(cfg.Notifications["x"].nilS()): "",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if len(cfg.Notifications) != 4 {
		t.Fatalf("want the 4 built-in types, got %v", cfg.Notifications)
	}
	iv := cfg.Notifications[relay.TypeIdentityVerification]
	if iv.TTL != 2*time.Minute || iv.Priority != relay.PriorityHigh || !iv.Seal || !iv.Actionable() ||
		iv.Category != "APPROVE_DENY" || iv.Default != relay.SettingEnabled {
		t.Errorf("identity_verification = %+v", iv)
	}
	if as := cfg.Notifications[relay.TypeAccountShared]; as.TTL != 24*time.Hour || as.Priority != relay.PriorityNormal || as.Actionable() {
		t.Errorf("account_shared = %+v", as)
	}
	// Default() must hand out fresh values: mutating one config must not
	// leak into the next.
	cfg.Notifications[relay.TypeOTPReceived].TTL = time.Hour
	if Default().Notifications[relay.TypeOTPReceived].TTL != 5*time.Minute {
		t.Error("Default shares state between calls")
	}
}

// nilS lets the defaults table above include a lookup of an unknown type.
func (n *Notification) nilS() string {
	if n == nil {
		return ""
	}
	return n.Type
}

func TestNotificationOverride(t *testing.T) {
	src := minimalApp + `
notification "identity_verification" { ttl = "90s" }
notification "new_trusted_device" { actions = [] }
notification "pager" { priority = "high" }
`
	cfg, diags := Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	iv := cfg.Notifications[relay.TypeIdentityVerification]
	if iv.TTL != 90*time.Second || !iv.Seal || !reflect.DeepEqual(iv.Actions, []string{"approve", "deny"}) || iv.Priority != relay.PriorityHigh {
		t.Errorf("override touched more than ttl: %+v", iv)
	}
	if nt := cfg.Notifications[relay.TypeNewTrustedDevice]; nt.Actionable() || nt.Category != "APPROVE_DENY" {
		t.Errorf("new_trusted_device = %+v", nt)
	}
	want := &Notification{Type: "pager", Default: relay.SettingEnabled, TTL: 5 * time.Minute, Priority: relay.PriorityHigh}
	if got := cfg.Notifications["pager"]; !reflect.DeepEqual(got, want) {
		t.Errorf("pager = %+v, want %+v", got, want)
	}
}

func TestParseCollectsAllErrors(t *testing.T) {
	src := minimalApp + `
log { level = "loud" }
retry { jitter = 2 }
plugins { on_error = "explode" }
`
	_, diags := Parse([]byte(src), "test.hcl")
	if n := len(errorsOf(diags)); n != 3 {
		t.Fatalf("want 3 errors, got %d: %v", n, diags)
	}
}

func TestLoadMissingFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"jwt.secret", "AuthKey.p8"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	src := `auth {
  issuer = "u"
  audience = "e"
  hs256_secret_file = "jwt.secret"
}
api {
  address = "0.0.0.0:8480"
  tls {
    cert_file = "tls.crt"
    key_file = "/nonexistent/tls.key"
  }
}
app "demo" {
  apns {
    topic = "t"
    key_file = "AuthKey.p8"
    key_id = "K"
    team_id = "T"
    ca_file = "adir"
  }
  fcm {
    project_id = "p"
    credentials_file = "sub/creds.json"
    ca_file = "ca.pem"
  }
}
`
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	l := NewLoader()
	cfg, diags := l.Load(path)
	if cfg != nil {
		t.Error("config returned despite errors")
	}
	want := []string{
		path + ":9,5-26: Missing file; api.tls.cert_file: " + filepath.Join(dir, "tls.crt") + " does not exist",
		path + ":10,5-38: Missing file; api.tls.key_file: /nonexistent/tls.key does not exist",
		path + ":19,5-21: Missing file; app.demo.apns.ca_file: " + filepath.Join(dir, "adir") + " is a directory, not a file",
		path + ":23,5-40: Missing file; app.demo.fcm.credentials_file: " + filepath.Join(dir, "sub", "creds.json") + " does not exist",
		path + ":24,5-23: Missing file; app.demo.fcm.ca_file: " + filepath.Join(dir, "ca.pem") + " does not exist",
	}
	var got []string
	for _, d := range diags {
		got = append(got, d.Error())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The same source through Parse skips the existence checks.
	if _, diags := Parse([]byte(src), path); diags.HasErrors() {
		t.Errorf("Parse checked files: %v", diags)
	}
	// Diagnostics print with a snippet of the offending line.
	var buf bytes.Buffer
	if err := l.WriteDiagnostics(&buf, diags); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `24:     ca_file = "ca.pem"`) {
		t.Errorf("no snippet in:\n%s", buf.String())
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, diags := Load(filepath.Join(t.TempDir(), "nope.hcl"))
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "nope.hcl") {
		t.Fatalf("got %v", diags)
	}
}

// TestRepoConfig checks the sample config.hcl at the repository root, which
// `make run` uses. Its ./dev files are generated at run time, so file
// existence is not checked.
func TestRepoConfig(t *testing.T) {
	path := filepath.Join("..", "..", "config.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := Parse(src, path)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	demo := cfg.AppByName("demo")
	if demo == nil || demo.APNS == nil || demo.FCM == nil {
		t.Fatalf("app demo = %+v", demo)
	}
	checks := map[string][2]string{
		"apns.endpoint":   {demo.APNS.Endpoint, "https://127.0.0.1:8443"},
		"fcm.endpoint":    {demo.FCM.Endpoint, "https://127.0.0.1:8444"},
		"apns.key_file":   {demo.APNS.KeyFile, filepath.Join(root, "dev", "AuthKey.p8")},
		"fcm.ca_file":     {demo.FCM.CAFile, filepath.Join(root, "dev", "fakes-ca.pem")},
		"auth.secret":     {cfg.Auth.HS256SecretFile, filepath.Join(root, "dev", "jwt.secret")},
		"store.path":      {cfg.Store.Path, filepath.Join(root, "data", "relay.db")},
		"plugins.dir":     {cfg.Plugins.Dir, filepath.Join(root, "build", "policies")},
		"metrics.address": {cfg.Metrics.Address, "127.0.0.1:9480"},
		"iv.default":      {string(cfg.Notifications[relay.TypeIdentityVerification].Default), "enforced"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
}

// TestGolden parses each testdata/*.hcl and compares the normalized config
// (or, when it has errors, the printed diagnostics) with testdata/*.golden.
// Run with -update to rewrite the golden files.
// TestSealRequired: seal = "required" seals like true and marks the type
// so keyless devices get no content; true and false leave it unmarked.
func TestSealRequired(t *testing.T) {
	src := minimalApp + `
notification "identity_verification" { seal = "required" }
notification "otp_received" { seal = false }
notification "pager" { seal = true }
`
	cfg, diags := Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for typ, want := range map[string][2]bool{
		relay.TypeIdentityVerification: {true, true}, relay.TypeOTPReceived: {false, false}, "pager": {true, false},
		relay.TypeNewTrustedDevice: {false, false},
	} {
		n := cfg.Notifications[typ]
		if n.Seal != want[0] || n.SealRequired != want[1] {
			t.Errorf("%s: seal %v required %v, want %v", typ, n.Seal, n.SealRequired, want)
		}
	}
	roundTrip(t, cfg)
	if !strings.Contains(string(cfg.format(false)), `seal     = "required"`) {
		t.Errorf("normalized form lost seal = \"required\":\n%s", cfg.format(false))
	}
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.hcl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			l := NewLoader()
			cfg, diags := l.Parse(src, f)
			var out bytes.Buffer
			if diags.HasErrors() {
				if err := l.WriteDiagnostics(&out, diags); err != nil {
					t.Fatal(err)
				}
			} else {
				out.WriteString(cfg.String())
				roundTrip(t, cfg)
			}
			got := strings.ReplaceAll(out.String(), dir, "$DIR")
			golden := strings.TrimSuffix(f, ".hcl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (run go test -update to accept):\n%s", f, golden, got)
			}
		})
	}
}

// roundTrip checks that the normalized form parses back to an equal config.
func roundTrip(tb testing.TB, cfg *Config) {
	tb.Helper()
	again, diags := Parse(cfg.format(false), cfg.File)
	if diags.HasErrors() {
		tb.Fatalf("normalized config does not parse: %v\n%s", diags, cfg.format(false))
	}
	if !reflect.DeepEqual(cfg, again) {
		tb.Fatalf("round trip changed the config:\n%s\nvs\n%s", cfg.format(false), again.format(false))
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"1048576B", 1 << 20, true},
		{"512KiB", 512 << 10, true},
		{"16MiB", 16 << 20, true},
		{"1GiB", 1 << 30, true},
		{"16 MiB", 16 << 20, true},
		{"16MB", 0, false},
		{"-1MiB", 0, false},
		{"1.5MiB", 0, false},
		{"MiB", 0, false},
		{"", 0, false},
		{"9999999999999GiB", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, n := range []int64{1, 1023, 1 << 10, 3 << 20, 5 << 30, 1<<20 + 1} {
		if back, err := parseSize(formatSize(n)); err != nil || back != n {
			t.Errorf("formatSize(%d) = %q does not parse back", n, formatSize(n))
		}
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.hcl"))
	seeds = append(seeds, filepath.Join("..", "..", "config.hcl"))
	for _, s := range seeds {
		if src, err := os.ReadFile(s); err == nil {
			f.Add(src)
		}
	}
	f.Add([]byte(minimalApp))
	f.Add([]byte(minimalApp + `notification "otp_received" { seal = "required" }`))
	for _, tc := range invalidCases {
		f.Add([]byte(minimalApp + tc.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, diags := Parse(src, "fuzz.hcl")
		if cfg == nil {
			if !diags.HasErrors() {
				t.Fatal("nil config without an error")
			}
			for _, d := range diags {
				_ = d.Error()
			}
			return
		}
		roundTrip(t, cfg)
	})
}

// Secret files readable by others, trusted files writable by others and a
// plugin directory others can write to are refused at load, like ssh's
// StrictModes, naming the file and the fix.
func TestLoadUnsafePermissions(t *testing.T) {
	dir := t.TempDir()
	files := map[string]os.FileMode{"jwt.secret": 0o644, "AuthKey.p8": 0o640, "creds.json": 0o604, "ca.pem": 0o666}
	for f, mode := range files {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(plugins, 0o777)
	src := `auth {
  issuer = "u"
  audience = "e"
  hs256_secret_file = "jwt.secret"
}
app "demo" {
  apns {
    topic = "t"
    key_file = "AuthKey.p8"
    key_id = "K"
    team_id = "T"
  }
  fcm {
    project_id = "p"
    credentials_file = "creds.json"
    ca_file = "ca.pem"
  }
}
plugins { dir = "plugins" }
`
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, diags := Load(path)
	var lines []string
	for _, d := range diags {
		lines = append(lines, d.Error())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"auth.hs256_secret_file: " + filepath.Join(dir, "jwt.secret") + " is accessible by others (mode 0644), and it holds a secret; fix: chmod 600 " + filepath.Join(dir, "jwt.secret"),
		"app.demo.fcm.credentials_file: " + filepath.Join(dir, "creds.json") + " is accessible by others (mode 0604)",
		"app.demo.fcm.ca_file: " + filepath.Join(dir, "ca.pem") + " is writable by group and others (mode 0666); fix: chmod go-w",
		"plugins.dir: " + plugins + " is writable by group or others (mode 0777); fix: chmod go-w " + plugins,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "AuthKey.p8") {
		t.Errorf("a 0640 key (group-readable) is refused:\n%s", got)
	}
	if n := len(errorsOf(diags)); n != 4 {
		t.Errorf("%d errors, want 4:\n%s", n, got)
	}
}
