package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

var pluginName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// cmdPluginNew scaffolds a Go plugin module: the rule as plain Go with a
// unit test, the wasm glue, a manifest, a sample event and a Makefile.
func cmdPluginNew(_ context.Context, g *globals, args []string) error {
	fs := g.flags()
	dir := fs.String("dir", ".", "parent directory of the new plugin")
	repo := fs.String("edgerelay", "", "path of an edgerelay checkout for the module's replace directive (default: found from the working directory)")
	pos, err := g.args(fs, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if !pluginName.MatchString(name) {
		return g.usageError(fs, "NAME %q: lowercase letters, digits and _, starting with a letter", name)
	}
	root := *repo
	if root == "" {
		if root, err = findRepo(); err != nil {
			return err
		}
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return err
	}
	target := filepath.Join(*dir, name)
	if _, err := os.Stat(target); err == nil {
		return fmt.Errorf("%s already exists", target)
	}
	data := map[string]string{"Name": name, "Repo": root}
	for path, tmpl := range scaffold {
		p := filepath.Join(target, strings.ReplaceAll(path, "NAME", name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := template.Must(template.New(path).Delims("<<", ">>").Parse(tmpl)).Execute(&buf, data); err != nil {
			return err
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	tidy := exec.Command("go", "mod", "tidy")
	tidy.Dir = target
	if out, err := tidy.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod tidy in %s: %v\n%s", target, err, out)
	}
	fmt.Fprintf(g.stdout, "created %s — next:\n  cd %s && make test && make build\n  relayctl plugin test %s.wasm -event testdata/event.json\n", target, target, name)
	return nil
}

// findRepo walks up from the working directory to the edgerelay checkout.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/edgerelay/edgerelay\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no edgerelay checkout above the working directory: pass -edgerelay PATH")
		}
		dir = parent
	}
}

var scaffold = map[string]string{
	"go.mod": `module example.com/plugins/<<.Name>>

go 1.26

require github.com/edgerelay/edgerelay v0.0.0

// The plugin SDK comes from this edgerelay checkout.
replace github.com/edgerelay/edgerelay => <<.Repo>>
`,
	"rule.go": `// Package <<.Name>> is a policy plugin for edgerelay. The rule is plain Go,
// tested on the host with go test; wasm/ exports it to relayd.
package <<.Name>>

import "github.com/edgerelay/edgerelay/plugins/abi"

// Evaluate decides one event. This example suppresses account_shared
// alerts whose data "owner" is listed in the plugin config, and lets every
// other event through unchanged.
func Evaluate(in abi.Input, cfg Config) abi.Output {
	if in.Event.Type == "account_shared" {
		for _, o := range cfg.QuietOwners {
			if in.Event.Data["owner"] == o {
				return abi.Suppress("owner_is_quiet")
			}
		}
	}
	return abi.Allow()
}
`,
	"config.go": `package <<.Name>>

import (
	"encoding/json"
	"fmt"
)

// Config is the manifest's config {} block.
type Config struct {
	QuietOwners []string ` + "`json:\"quiet_owners\"`" + `
}

// ParseConfig decodes the config block (raw JSON; nil when absent).
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	if len(raw) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("<<.Name>> config: %w", err)
	}
	return c, nil
}
`,
	"rule_test.go": `package <<.Name>>

import (
	"testing"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

func TestEvaluate(t *testing.T) {
	cfg, err := ParseConfig([]byte(` + "`" + `{"quiet_owners":["bot@example.com"]}` + "`" + `))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, typ, owner, want string
	}{
		{"quiet owner suppressed", "account_shared", "bot@example.com", abi.VerdictSuppress},
		{"other owner allowed", "account_shared", "alice@example.com", abi.VerdictAllow},
		{"other type allowed", "otp_received", "bot@example.com", abi.VerdictAllow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := abi.Input{Event: abi.Event{Type: tc.typ, Data: map[string]string{"owner": tc.owner}}}
			if got := Evaluate(in, cfg).Verdict; got != tc.want {
				t.Fatalf("verdict %q, want %q", got, tc.want)
			}
		})
	}
}
`,
	"wasm/main.go": `//go:build wasip1

// Command wasm exports the <<.Name>> rule to relayd.
package main

import (
	"github.com/edgerelay/edgerelay/plugins/sdk"

	rule "example.com/plugins/<<.Name>>"
)

func init() { sdk.HandleConfig(rule.ParseConfig, rule.Evaluate) }

func main() {}
`,
	"NAME.hcl": `# Manifest of the <<.Name>> plugin: deploy it beside <<.Name>>.wasm.
order    = 100
types    = ["account_shared"]
on_error = "skip"      # skip | suppress
mode     = "shadow"    # shadow: record what it would do; enforce: act

config {
  quiet_owners = ["bot@example.com"]
}
`,
	"testdata/event.json": `{"id":"evt-1","workspace":"acme","user":"u-42","type":"account_shared",
 "title":"Account shared with you","body":"bot@example.com shared \"CI secrets\"",
 "data":{"owner":"bot@example.com"}}
`,
	"Makefile": `# build: <<.Name>>.wasm for relayd's plugins.dir; test: the rule on the host.
.PHONY: build test
build: <<.Name>>.wasm
<<.Name>>.wasm: $(wildcard *.go wasm/*.go) go.mod
	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o $@ ./wasm
test:
	go test ./...
`,
	"README.md": `# <<.Name>>

An edgerelay policy plugin. The rule is rule.go (plain Go, tested by rule_test.go);
wasm/main.go exports it through the SDK.

    make test                      # unit tests on the host
    make build                     # <<.Name>>.wasm
    relayctl plugin test <<.Name>>.wasm -event testdata/event.json

Deploy: copy <<.Name>>.wasm and <<.Name>>.hcl into relayd's plugins.dir (write to a
temporary name, then rename). The manifest starts in shadow mode. See docs/plugins.md
in the edgerelay repository.
`,
}
