package main

import (
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
	if code := run([]string{"plugin", "new", "quiet_bots", "-dir", dir}); code != 0 {
		t.Fatalf("plugin new exited %d", code)
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
	if code := run([]string{"plugin", "test", filepath.Join(mod, "quiet_bots.wasm"), "-event", filepath.Join(mod, "testdata", "event.json"), "-n", "5"}); code != 0 {
		t.Fatalf("plugin test exited %d", code)
	}
	// A plugin that is not wasm is refused with a clear error.
	bad := filepath.Join(dir, "bad.wasm")
	os.WriteFile(bad, []byte("not wasm"), 0o644)
	if code := run([]string{"plugin", "test", bad, "-event", filepath.Join(mod, "testdata", "event.json")}); code != 1 {
		t.Fatalf("plugin test on garbage exited %d, want 1", code)
	}
}
