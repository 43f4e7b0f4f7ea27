package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/daemon"
	"github.com/edgerelay/edgerelay/relay/relaytest"
	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runCLI runs relayctl with args and returns its exit code and output.
func runCLI(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	return runCLIContext(context.Background(), t, args...)
}

func runCLIContext(ctx context.Context, t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &globals{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr})
	return code, stdout.String(), stderr.String()
}

// TestHelpEveryCommand: every command, subcommand and group takes -h and
// --help anywhere, prints its usage on stdout and exits 0, without running.
func TestHelpEveryCommand(t *testing.T) {
	cases := [][]string{{"-h"}, {"--help"}, {"help"}, {"help", "-h"}}
	groups := map[string]bool{}
	for _, c := range commandTable() {
		words := strings.Fields(c.name)
		if len(words) == 2 {
			groups[words[0]] = true
		}
		if c.run == nil {
			continue
		}
		cases = append(cases,
			append(append([]string{}, words...), "-h"),
			append(append([]string{}, words...), "--help"),
			append([]string{"help"}, words...),
		)
		// -h wins over arguments, even a file named like a flag value.
		cases = append(cases, append(append([]string{"-socket", "/nonexistent.sock"}, words...), "x", "-h"))
	}
	for g := range groups {
		cases = append(cases, []string{g, "-h"}, []string{g, "--help"}, []string{"help", g})
	}
	for _, args := range cases {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d, want 0; stderr: %s", code, stderr)
			}
			if !strings.HasPrefix(stdout, "Usage: relayctl") && !strings.HasPrefix(stdout, "relayctl — ") {
				t.Fatalf("stdout does not start with the usage:\n%s", stdout)
			}
			if stderr != "" {
				t.Fatalf("stderr: %s", stderr)
			}
		})
	}
	// The main usage documents the exit codes.
	_, stdout, _ := runCLI(t, "-h")
	for _, want := range []string{"Exit codes:", "3  relayd cannot be reached", "-json"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("relayctl -h lacks %q", want)
		}
	}
}

// TestUsageErrors: wrong arguments exit 2 with the usage on stderr.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nosuch"}, {"dlq"}, {"dlq", "nosuch"}, {"event", "only-one"}, {"queue", "extra"},
		{"send", "-nosuchflag"}, {"device", "put", "ws"},
	} {
		code, stdout, stderr := runCLI(t, args...)
		if code != exitUsage || stdout != "" || stderr == "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2, usage on stderr", args, code, stdout, stderr)
		}
	}
	// No relayd on the socket: exit 3.
	code, _, stderr := runCLI(t, "-socket", filepath.Join(t.TempDir(), "none.sock"), "queue")
	if code != exitUnreachable {
		t.Errorf("queue without relayd: exit %d, want 3; stderr %s", code, stderr)
	}
}

// relayd runs a real relayd in process, with its fakes, and returns the
// path of its config file.
func startRelayd(t *testing.T) (string, *relaytest.DevFakes) {
	t.Helper()
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "rl") // sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	apnsAddr, fcmAddr, apiAddr := free(), free(), free()
	ctx, cancel := context.WithCancel(context.Background())
	fakes, err := relaytest.StartDevFakes(ctx, relaytest.DevFakesOptions{
		Dir: filepath.Join(dir, "dev"), APNSAddr: apnsAddr, FCMAddr: fcmAddr,
		Topic: "com.example.ctl", KeyID: "KEY1234567", TeamID: "TEAM123456",
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := fakes.Credentials
	cfgPath := filepath.Join(dir, "config.hcl")
	cfg := fmt.Sprintf(`
log { level = "error" }
data_dir = %q
socket { path = %q }
api { address = %q }
auth {
  issuer = "upstream"
  audience = "edgerelay"
  hs256_secret_file = %q
}
store "bolt" {}
app "demo" {
  apns {
    topic = "com.example.ctl"
    key_file = %q
    key_id = "KEY1234567"
    team_id = "TEAM123456"
    endpoint = "https://%s"
    ca_file = %q
  }
  fcm {
    project_id = %q
    credentials_file = %q
    endpoint = "https://%s"
    ca_file = %q
  }
}
plugins { dir = %q }
`, filepath.Join(dir, "data"), filepath.Join(sockDir, "r.sock"), apiAddr, c.JWTSecretFile,
		c.APNsKeyFile, apnsAddr, c.CAFile, c.FCMProjectID, c.FCMCredentialsFile, fcmAddr, c.CAFile,
		filepath.Join(dir, "plugins"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, diags := config.Load(cfgPath)
	if diags.HasErrors() {
		cancel()
		fakes.Close()
		t.Fatal(diags)
	}
	d := daemon.New(loaded, hclog.NewNullLogger())
	d.Version = "v0.0.0-ctl"
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relayd: %v", err)
		}
		fakes.Close()
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("relayd: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("relayd not ready after 30s")
	}
	return cfgPath, fakes
}

// TestJSONEveryDataCommand runs every command that prints data with -json
// against a real relayd and checks it prints valid JSON (and exits 0).
func TestJSONEveryDataCommand(t *testing.T) {
	cfg, fakes := startRelayd(t)
	dir := t.TempDir()
	// The iPhone's first push is refused for good: a dead letter to replay.
	iosToken := strings.Repeat("ab", 32)
	fakes.APNs.Script(iosToken, relaytest.Rule{Reason: "PayloadTooLarge", Times: 1})
	event := filepath.Join(dir, "event.json")
	os.WriteFile(event, []byte(`{
  "id": "evt-1", "workspace": "acme", "user": "u1", "type": "otp_received",
  "title": "Code", "body": "Tap to copy"
}`), 0o600)

	tests := []struct {
		name   string
		args   []string
		code   int
		ndjson bool // one JSON value per line (possibly none)
	}{
		{"version", []string{"version"}, 0, false},
		{"device put", []string{"device", "put", "acme", "u1", "pixel", "-platform", "android", "-token", "tok-1", "-app", "demo"}, 0, false},
		{"device put", []string{"device", "put", "acme", "u1", "iphone", "-platform", "ios", "-token", iosToken, "-app", "demo", "-environment", "production"}, 0, false},
		{"device list", []string{"device", "list", "acme", "u1"}, 0, false},
		{"send", []string{"send", event}, 0, false},
		{"event", []string{"event", "acme", "evt-1"}, 0, false},
		{"settings", []string{"settings", "acme"}, 0, false},
		{"settings set", []string{"settings", "acme", "otp_received=enforced"}, 0, false},
		{"prefs", []string{"prefs", "acme", "u1"}, 0, false},
		{"prefs set", []string{"prefs", "acme", "u1", "account_shared=off"}, 0, false},
		{"queue", []string{"queue"}, 0, false},
		{"dlq list", []string{"dlq", "list", "-limit", "5"}, 0, false},
		{"health", []string{"health"}, 0, false},
		{"audit", []string{"audit", "-limit", "5"}, 0, false},
		{"status", []string{"status"}, 0, false},
		{"plugin list", []string{"plugin", "list"}, 0, false},
		{"plugin reload", []string{"plugin", "reload"}, 0, false},
		{"token mint", []string{"token", "mint", "-user", "u1", "-workspace", "acme", "-role", "user"}, 0, false},
		{"dev init", []string{"dev", "init", "-dir", filepath.Join(dir, "dev")}, 0, false},
		{"actions tail", []string{"actions", "tail"}, 0, true},
		{"import-bolt", []string{"import-bolt", emptyBolt(t)}, 0, false},
		{"backup", []string{"backup", filepath.Join(dir, "backup.db")}, 0, false},
		{"erase", []string{"erase", "-workspace", "gone", "-user", "u9"}, 0, false},
		{"config reload", []string{"config", "reload"}, 0, false},
	}
	covered := map[string]bool{"plugin test": true} // TestPluginNewBuildsAndPasses
	for _, tc := range tests {
		covered[strings.TrimSuffix(tc.name, " set")] = true
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.ndjson {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
				defer cancel()
			}
			// -json as a global flag, and after the command.
			for _, args := range [][]string{append([]string{"-config", cfg, "-json"}, tc.args...), append(append([]string{"-config", cfg}, tc.args...), "-json")} {
				code, stdout, stderr := runCLIContext(ctx, t, args...)
				if code != tc.code {
					t.Fatalf("%q: exit %d, want %d; stderr: %s", args, code, tc.code, stderr)
				}
				if tc.ndjson {
					sc := bufio.NewScanner(strings.NewReader(stdout))
					for sc.Scan() {
						if !json.Valid(sc.Bytes()) {
							t.Fatalf("%q: line is not JSON: %s", args, sc.Text())
						}
					}
					continue
				}
				if !json.Valid([]byte(stdout)) {
					t.Fatalf("%q: stdout is not JSON:\n%s", args, stdout)
				}
			}
		})
	}
	// dlq replay: the iPhone's dead letter, once it is there.
	covered["dlq replay"] = true
	var id string
	for deadline := time.Now().Add(15 * time.Second); id == ""; {
		_, stdout, _ := runCLI(t, "-config", cfg, "-json", "dlq", "list")
		var list struct {
			DeadLetters []struct{ ID string } `json:"dead_letters"`
		}
		json.Unmarshal([]byte(stdout), &list)
		if len(list.DeadLetters) > 0 {
			id = list.DeadLetters[0].ID
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter after 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, stdout, stderr := runCLI(t, "-config", cfg, "dlq", "replay", id, "-json")
	if code != 0 || !json.Valid([]byte(stdout)) {
		t.Errorf("dlq replay %s -json: exit %d, stdout %q, stderr %q", id, code, stdout, stderr)
	}
	// Replayed before: an error, not half a JSON answer.
	code, stdout, stderr = runCLI(t, "-config", cfg, "dlq", "replay", id, "-json")
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, "409") {
		t.Errorf("dlq replay again: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Every data command is in the table.
	for _, c := range commandTable() {
		if c.data && !covered[c.name] {
			t.Errorf("data command %q has no -json case", c.name)
		}
	}

	// The backup is a store file holding what relayd held when it ran.
	bk, err := bolt.Open(filepath.Join(dir, "backup.db"), bolt.Options{})
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	if devs, err := bk.Devices(context.Background(), "acme", "u1"); err != nil || len(devs) != 2 {
		t.Errorf("devices in the backup: %+v %v", devs, err)
	}
	bk.Close(context.Background())

	// The human status screen names what an operator looks for first.
	code, stdout, stderr = runCLI(t, "-config", cfg, "status")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"relayd v0.0.0-ctl", "ready: yes", "LANE", "demo/ios", "plugins: 0 loaded"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
}

// TestSendProgress: -progress draws a bar on stderr and still sends.
func TestSendProgress(t *testing.T) {
	cfg, _ := startRelayd(t)
	var nd strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&nd, `{"id":"bulk-%d","workspace":"acme","user":"u1","type":"account_shared","title":"%s","body":"%s"}`+"\n", i, strings.Repeat("t", 200), strings.Repeat("b", 200))
	}
	file := filepath.Join(t.TempDir(), "bulk.ndjson")
	os.WriteFile(file, []byte(nd.String()), 0o600)
	code, stdout, stderr := runCLI(t, "-config", cfg, "send", "-progress", file)
	if code != 0 {
		t.Fatalf("send: exit %d: %.300s\n%.2000s", code, stdout, stderr)
	}
	if n := strings.Count(stdout, "accepted"); n != 2000 {
		t.Errorf("%d accepted, want 2000", n)
	}
	if !strings.Contains(stderr, "sending") {
		t.Errorf("no progress bar on stderr: %q", stderr)
	}
}

// emptyBolt returns the path of a new, empty bolt store file.
func emptyBolt(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "empty.db")
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close(context.Background())
	return path
}

// TestImportBolt: the directory of a stopped relay's bolt file reaches the
// running relayd (the way to a cluster, docs/cluster.md).
func TestImportBolt(t *testing.T) {
	cfg, _ := startRelayd(t)
	path := filepath.Join(t.TempDir(), "old.db")
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st.RegisterDevice(ctx, relay.Device{Workspace: "acme", User: "u9", ID: "old-phone", Platform: relay.PlatformAndroid, Token: "tok-old", App: "demo", Name: "Pixel"})
	st.PutSettings(ctx, "acme", map[string]relay.Setting{relay.TypeAccountShared: relay.SettingDisabled})
	st.PutPreferences(ctx, "acme", "u9", map[string]bool{relay.TypeOTPReceived: false})
	st.Close(ctx)

	code, stdout, stderr := runCLI(t, "-config", cfg, "import-bolt", path)
	if code != 0 || !strings.Contains(stdout, "imported 1 devices, the settings of 1 workspaces and the preferences of 1 users") {
		t.Fatalf("import: %d %s %s", code, stdout, stderr)
	}
	_, stdout, _ = runCLI(t, "-config", cfg, "-json", "device", "list", "acme", "u9")
	if !strings.Contains(stdout, `"old-phone"`) || !strings.Contains(stdout, `"tok-old"`) {
		t.Fatalf("device not imported: %s", stdout)
	}
	_, stdout, _ = runCLI(t, "-config", cfg, "-json", "settings", "acme")
	if !strings.Contains(stdout, `"account_shared": "disabled"`) {
		t.Fatalf("settings not imported: %s", stdout)
	}
	_, stdout, _ = runCLI(t, "-config", cfg, "-json", "prefs", "acme", "u9")
	if !strings.Contains(stdout, `"otp_received": false`) {
		t.Fatalf("preferences not imported: %s", stdout)
	}
}
