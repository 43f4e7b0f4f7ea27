package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/relay/config"
)

// repoRoot is the checkout's root, two levels above this package.
const repoRoot = "../.."

// unitFile is a parsed systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestUnitFileHardening checks that dist/relayd.service runs relayd as a
// dedicated user with the usual sandboxing, keeps its data and socket in
// systemd-managed directories and reloads with SIGHUP.
func TestUnitFileHardening(t *testing.T) {
	u := parseUnit(t, filepath.Join(repoRoot, "dist", "relayd.service"))
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	want := map[string]string{
		"User":                    "relayd",
		"Group":                   "relayd",
		"ExecStart":               "/usr/bin/relayd -config /etc/relayd/relayd.hcl",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"StateDirectory":          "relayd",
		"RuntimeDirectory":        "relayd",
		"ConfigurationDirectory":  "relayd",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectControlGroups":    "yes",
		"RestrictSUIDSGID":        "yes",
		"RestrictNamespaces":      "yes",
		"LockPersonality":         "yes",
		"SystemCallArchitectures": "native",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
	}
	for k, v := range want {
		got, ok := svc[k]
		if !ok {
			t.Errorf("[Service] %s missing (want %q)", k, v)
			continue
		}
		if got[len(got)-1] != v {
			t.Errorf("[Service] %s=%q, want %q", k, got[len(got)-1], v)
		}
	}
	if got := svc["ExecStartPre"]; !slices.Contains(got, "/usr/bin/relayd -config /etc/relayd/relayd.hcl -check") {
		t.Errorf("ExecStartPre %q: want the config checked before start", got)
	}
	if !slices.Contains(svc["SystemCallFilter"], "@system-service") {
		t.Errorf("SystemCallFilter %q: want @system-service", svc["SystemCallFilter"])
	}
	// wazero compiles plugins to native code: W^X would break every plugin.
	if v, ok := svc["MemoryDenyWriteExecute"]; ok && v[len(v)-1] == "yes" {
		t.Error("MemoryDenyWriteExecute=yes breaks wazero's compiler")
	}
	if _, ok := svc["DynamicUser"]; ok {
		t.Error("DynamicUser: the socket's group must be stable for upstream services")
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("[Install] WantedBy=%q", got)
	}
	// The paths the unit grants must be the sample config's.
	cfg := parseSample(t)
	for _, p := range []struct{ what, path, dir string }{
		{"data_dir", cfg.DataDir, "/var/lib/relayd"},
		{"socket.path", cfg.Socket.Path, "/run/relayd"},
		{"store path", cfg.Store.Path, "/var/lib/relayd"},
	} {
		if !strings.HasPrefix(p.path, p.dir) {
			t.Errorf("sample %s = %q: not under the unit's %s", p.what, p.path, p.dir)
		}
	}
}

// TestUnitFileVerifies runs systemd-analyze verify on the unit where
// systemd is installed; any warning (an unknown or misspelt directive)
// fails. The binaries are swapped for one that exists here.
func TestUnitFileVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "dist", "relayd.service"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "relayd.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(src), "/usr/bin/relayd", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func parseSample(t *testing.T) *config.Config {
	t.Helper()
	path := filepath.Join(repoRoot, "dist", "relayd.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := config.NewLoader()
	cfg, diags := l.Parse(src, path)
	if diags.HasErrors() {
		var b strings.Builder
		l.WriteDiagnostics(&b, diags)
		t.Fatalf("%s is invalid:\n%s", path, b.String())
	}
	return cfg
}

// TestSampleConfigParses checks the production sample shipped in the
// archives and the image (its key files exist only on a real host).
func TestSampleConfigParses(t *testing.T) {
	cfg := parseSample(t)
	if cfg.API.TLSCertFile == "" {
		t.Error("the sample listens on 0.0.0.0 and must use TLS")
	}
}

// TestVersionStamp builds both binaries the way make does, with
// -ldflags "-X main.version=…", and checks what `version` prints.
func TestVersionStamp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds relayd and relayctl")
	}
	const stamp = "v0.0.0-stamp-test"
	dir := t.TempDir()
	for _, cmd := range []string{"relayd", "relayctl"} {
		bin := filepath.Join(dir, cmd)
		build := exec.Command(goTool(), "build", "-ldflags", "-X main.version="+stamp, "-o", bin, "./cmd/"+cmd)
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
		args := [][]string{{"version"}}
		if cmd == "relayd" {
			args = append(args, []string{"-version"})
		}
		for _, a := range args {
			out, err := exec.Command(bin, a...).Output()
			if err != nil {
				t.Fatalf("%s %v: %v", cmd, a, err)
			}
			if !strings.HasPrefix(string(out), cmd+" "+stamp+" ") {
				t.Errorf("%s %v printed %q, want %q first", cmd, a, out, cmd+" "+stamp)
			}
		}
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// TestDistArchives checks the archives `make dist` left in build/dist
// (skipped when there are none): every platform's archive holds the
// binaries, sample config, unit, policies and docs, and the archive for
// this machine's platform runs and prints the version in its name.
func TestDistArchives(t *testing.T) {
	archives, _ := filepath.Glob(filepath.Join(repoRoot, "build", "dist", "edgerelay-*.tar.gz"))
	if len(archives) == 0 {
		t.Skip("no release archives in build/dist (run make dist)")
	}
	for _, a := range archives {
		name := strings.TrimSuffix(filepath.Base(a), ".tar.gz")
		t.Run(name, func(t *testing.T) {
			files := readArchive(t, a)
			for _, want := range []string{"bin/relayd", "bin/relayctl", "relayd.hcl", "relayd.service", "relayd.sysusers",
				"README.md", "docs/operations.md", "docs/config.md", "deploy/grafana/edgerelay.json", "deploy/prometheus/alerts.yml"} {
				if _, ok := files[name+"/"+want]; !ok {
					t.Errorf("%s: no %s", filepath.Base(a), want)
				}
			}
			wasm := 0
			for f := range files {
				if strings.HasPrefix(f, name+"/policies/") && strings.HasSuffix(f, ".wasm") {
					wasm++
				}
			}
			if wasm == 0 {
				t.Errorf("%s: no policies/*.wasm", filepath.Base(a))
			}
			platform := runtime.GOOS + "-" + runtime.GOARCH
			if !strings.HasSuffix(name, "-"+platform) {
				return
			}
			version := strings.TrimSuffix(strings.TrimPrefix(name, "edgerelay-"), "-"+platform)
			dir := t.TempDir()
			for _, cmd := range []string{"relayd", "relayctl"} {
				bin := filepath.Join(dir, cmd)
				if err := os.WriteFile(bin, files[name+"/bin/"+cmd], 0o755); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(bin, "version").Output()
				if err != nil {
					t.Fatalf("%s version: %v", cmd, err)
				}
				if !strings.HasPrefix(string(out), cmd+" "+version+" ") {
					t.Errorf("%s version printed %q, want %s %s", cmd, out, cmd, version)
				}
			}
		})
	}
}

// readArchive returns the regular files of a .tar.gz with their contents
// (binaries only; other files map to nil).
func readArchive(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		var data []byte
		if strings.Contains(h.Name, "/bin/") {
			if data, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
		files[h.Name] = data
	}
}
