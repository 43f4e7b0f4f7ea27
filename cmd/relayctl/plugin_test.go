package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestPluginNewBuildsAndPasses scaffolds a plugin, runs its tests, builds it
// to wasm and runs it with `relayctl plugin test`, as an author would.
func TestPluginNewBuildsAndPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm module")
	}
	dir := t.TempDir()
	if code, _, stderr := runCLI(t, "plugin", "new", "quiet_bots", "-dir", dir); code != 0 {
		t.Fatalf("plugin new exited %d: %s", code, stderr)
	}
	mod := filepath.Join(dir, "quiet_bots")
	for _, args := range [][]string{{"test", "./..."}, {"build", "-buildmode=c-shared", "-o", "quiet_bots.wasm", "./wasm"}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = mod
		if args[0] == "build" {
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	code, stdout, stderr := runCLI(t, "plugin", "test", filepath.Join(mod, "quiet_bots.wasm"), "-event", filepath.Join(mod, "testdata", "event.json"), "-n", "5", "-json")
	if code != 0 {
		t.Fatalf("plugin test exited %d: %s", code, stderr)
	}
	if !json.Valid([]byte(stdout)) {
		t.Fatalf("plugin test -json printed invalid JSON: %s", stdout)
	}
	// A plugin that is not wasm is refused with a clear error.
	bad := filepath.Join(dir, "bad.wasm")
	os.WriteFile(bad, []byte("not wasm"), 0o644)
	if code, _, stderr := runCLI(t, "plugin", "test", bad, "-event", filepath.Join(mod, "testdata", "event.json")); code != 1 {
		t.Fatalf("plugin test on garbage exited %d, want 1: %s", code, stderr)
	}
}
