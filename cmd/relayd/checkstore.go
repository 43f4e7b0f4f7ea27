package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/relay/store/bolt"
)

// checkStoreChildEnv, set to a store path, makes relayd check that file
// (bolt.Check) and exit: 0 sound, 1 damaged, 3 could not check. relayd
// runs itself this way, so a damaged file that crashes the check (bbolt
// panics in its own goroutines; a truncated mapping faults) crashes the
// child, not the daemon.
const checkStoreChildEnv = "EDGERELAY_CHECK_STORE_CHILD"

const (
	exitDamaged      = 1
	exitCannotCheck  = 3
	maxChildErrBytes = 4 << 10
)

func checkStoreChild(path string) int {
	err := bolt.Check(path)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, bolt.ErrDamaged):
		fmt.Fprintln(os.Stderr, err)
		return exitDamaged
	}
	fmt.Fprintln(os.Stderr, err)
	return exitCannotCheck
}

// checkTimeout bounds the check of a file of size bytes: a damaged branch
// page that points back up the tree sends bbolt's walk round in circles
// for ever (TestCheckStoreCyclicPage). A sound check reads about 350 MB/s
// here (1.6 s for a 575 MB store with a cold cache); the bound allows 10
// MB/s on top of 30 s.
var checkTimeout = func(size int64) time.Duration {
	return 30*time.Second + time.Duration(size/(10<<20))*time.Second
}

// checkStore checks the bolt store file at path in a child process. A
// damaged file, including one that crashes the check or keeps it going
// past checkTimeout, gives an error matching bolt.ErrDamaged.
func checkStore(path string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("check store %s: %w", path, err)
	}
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	limit := checkTimeout(size)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), checkStoreChildEnv+"="+path, "GOTRACEBACK=single")
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: maxChildErrBytes}
	err = cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return &bolt.DamagedError{Path: path, Detail: fmt.Sprintf("the check did not finish in %s (a page that points back up the tree)", limit)}
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("check store %s: %w", path, err)
	}
	detail := strings.TrimSpace(stderr.String())
	if ee.ExitCode() == exitCannotCheck {
		return fmt.Errorf("check store %s: %s", path, detail)
	}
	if ee.ExitCode() == exitDamaged {
		// The child printed the *DamagedError; keep its detail.
		if _, d, ok := strings.Cut(detail, bolt.ErrDamaged.Error()+" ("); ok {
			detail = strings.TrimSuffix(d, ")")
		}
		return &bolt.DamagedError{Path: path, Detail: detail}
	}
	// A crash: the first line says why (panic, fault).
	first, _, _ := strings.Cut(detail, "\n")
	if first == "" {
		first = ee.String()
	}
	return &bolt.DamagedError{Path: path, Detail: "the check crashed: " + first}
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
