package policy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// goBad is the standard-Go test plugin built from testdata/gobad (nil when
// the build failed; tests that need it fail with buildErr).
var (
	goBad    []byte
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "policytest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goBad, buildErr = buildGoPlugin(dir, "./testdata/gobad")
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildGoPlugin builds a wasip1 reactor from pkg with the standard
// toolchain (relying on the build cache).
func buildGoPlugin(dir, pkg string) ([]byte, error) {
	out := filepath.Join(dir, filepath.Base(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}

func needGo(tb testing.TB) []byte {
	tb.Helper()
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return goBad
}
