package fsperm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestCheckSecretFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		mode os.FileMode
		want string // "" = accepted
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, ""},
		{0o644, "accessible by others (mode 0644)"},
		{0o660, "accessible by group (mode 0660)"},
		{0o604, "accessible by others"},
		{0o666, "accessible by group and others"},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, "k-"+tc.mode.String())
		write(t, p, tc.mode)
		err := CheckSecretFile(p)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.mode, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Errorf("%v: %v, want %q", tc.mode, err, tc.want)
		}
	}
	if os.Geteuid() == 0 {
		p := filepath.Join(dir, "foreign")
		write(t, p, 0o600)
		if err := os.Chown(p, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if err := CheckSecretFile(p); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
			t.Errorf("foreign owner: %v", err)
		}
	}
}

func TestCheckPublicFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ca.pem")
	write(t, p, 0o644)
	if err := CheckPublicFile(p); err != nil {
		t.Fatal(err)
	}
	write(t, p, 0o666)
	if err := CheckPublicFile(p); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Fatalf("%v", err)
	}
}

func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "plugins")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(sub); err != nil {
		t.Fatal(err)
	}
	os.Chmod(sub, 0o777)
	if err := CheckDir(sub); err == nil || !strings.Contains(err.Error(), "chmod go-w "+sub) {
		t.Fatalf("%v", err)
	}
	os.Chmod(sub, 0o755)
	os.Chmod(dir, 0o777) // a parent without the sticky bit
	if err := CheckDir(sub); err == nil || !strings.Contains(err.Error(), dir+" is writable") {
		t.Fatalf("%v", err)
	}
	os.Chmod(dir, 0o777|os.ModeSticky) // like /tmp
	if err := CheckDir(sub); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
}

func TestWithinDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "plugins")
	os.Mkdir(dir, 0o755)
	write(t, filepath.Join(dir, "a.wasm"), 0o644)
	write(t, filepath.Join(root, "outside.wasm"), 0o644)
	os.Symlink("a.wasm", filepath.Join(dir, "b.wasm"))
	os.Symlink(filepath.Join(root, "outside.wasm"), filepath.Join(dir, "c.wasm"))
	os.Symlink("../outside.wasm", filepath.Join(dir, "d.wasm"))
	os.Symlink("/etc/passwd", filepath.Join(dir, "e.wasm"))
	for name, ok := range map[string]bool{"a.wasm": true, "b.wasm": true, "c.wasm": false, "d.wasm": false, "e.wasm": false} {
		err := WithinDir(dir, filepath.Join(dir, name))
		if ok != (err == nil) {
			t.Errorf("%s: %v", name, err)
		}
		if !ok && !errors.Is(err, ErrOutside) {
			t.Errorf("%s: %v, want ErrOutside", name, err)
		}
	}
	if err := WithinDir(dir, filepath.Join(dir, "missing.hcl")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
