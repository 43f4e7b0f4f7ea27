// Package fsperm checks, as ssh's StrictModes does, that the files and
// directories relayd trusts (the socket's directory, the plugin directory,
// keys and credentials) can be changed, or for secrets read, only by
// relayd's user or root. Every error names the file and the fix.
//
// It only inspects: it never changes a mode or an owner.
package fsperm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// owner returns the file's owner uid, or -1 where the platform has none.
func owner(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func checkOwner(path string, fi os.FileInfo) error {
	uid, euid := owner(fi), os.Geteuid()
	if uid >= 0 && uid != euid && uid != 0 {
		return fmt.Errorf("%s is owned by uid %d, not relayd's user (uid %d) or root; fix: chown %d %s", path, uid, euid, euid, path)
	}
	return nil
}

// CheckDir checks that only relayd's user or root can change what dir
// holds: dir and every directory above it must be owned by the effective
// user or root and not writable by group or others. A directory above dir
// may be writable by others if it has the sticky bit (like /tmp), as no one
// can then rename or remove what they do not own in it. Symlinks in dir
// are resolved first.
func CheckDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
		if err := checkOwner(p, fi); err != nil {
			return err
		}
		perm := fi.Mode().Perm()
		if perm&0o022 != 0 && (p == real || fi.Mode()&os.ModeSticky == 0) {
			return fmt.Errorf("%s is writable by group or others (mode %04o); fix: chmod go-w %s", p, uint32(perm), p)
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

// CheckSecretFile checks a file holding a secret (a private key, a
// service-account credential, a shared secret): owned by relayd's user or
// root, not writable by group, and no access at all for others. Group read
// is allowed, for a key owned by root and readable by relayd's group.
func CheckSecretFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := checkOwner(path, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return fmt.Errorf("%s is accessible by %s (mode %04o), and it holds a secret; fix: chmod 600 %s (or 640 with a group only relayd is in)", path, who(perm&0o027), uint32(perm), path)
	}
	return nil
}

// CheckPublicFile checks a file whose integrity matters but that may be
// read by anyone (a CA bundle, a public key, a certificate): owned by
// relayd's user or root and not writable by group or others.
func CheckPublicFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := checkOwner(path, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s is writable by %s (mode %04o); fix: chmod go-w %s", path, who(perm&0o022), uint32(perm), path)
	}
	return nil
}

func who(bits os.FileMode) string {
	var w []string
	if bits&0o070 != 0 {
		w = append(w, "group")
	}
	if bits&0o007 != 0 {
		w = append(w, "others")
	}
	return strings.Join(w, " and ")
}

// ErrOutside is wrapped by WithinDir's error for a path that leads out of
// its directory.
var ErrOutside = errors.New("leads outside its directory")

// WithinDir checks that path, with every symlink resolved, is inside dir
// (also resolved): a symlink in the plugin directory may point at another
// file of it, never elsewhere. A missing path gives an error matching
// os.ErrNotExist.
func WithinDir(dir, path string) error {
	rdir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	rpath, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(rdir, rpath)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fmt.Errorf("%s %w %s (it resolves to %s); fix: copy the file into the directory instead of linking it", path, ErrOutside, dir, rpath)
	}
	return nil
}
