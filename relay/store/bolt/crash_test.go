package bolt

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/edgerelay/edgerelay/relay"
)

// crashChildEnv, when set to a store path, turns TestCrashChild into the
// writer that TestCrashRecovery kills.
const crashChildEnv = "EDGERELAY_BOLT_CRASH_CHILD"

// TestCrashChild is the child half of TestCrashRecovery: it adds events
// from several goroutines forever and prints "accepted ID" once AddEvents
// has returned nil for ID.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("child process of TestCrashRecovery")
	}
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	prefix := fmt.Sprintf("p%d-", os.Getpid()) // unique per child
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for c := 0; ; c++ {
				batch := make([]relay.Event, 1+c%4)
				for i := range batch {
					batch[i] = ev("acme", fmt.Sprintf("%sw%d-c%d-%d", prefix, w, c, i))
				}
				res, err := s.AddEvents(context.Background(), batch, t0)
				if err != nil {
					fmt.Println("add:", err)
					os.Exit(2)
				}
				mu.Lock()
				for i, r := range res {
					if r == nil {
						// One write(2) per line: a kill cannot interleave lines.
						os.Stdout.WriteString("accepted " + batch[i].ID + "\n")
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrashRecovery kills a writer with SIGKILL mid-stream and checks that
// every event it was told was stored is there after reopening.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "relay.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var accepted []string
		sc := bufio.NewScanner(out)
		want := 500 + 300*round // kill at a different point each round
		for sc.Scan() {
			line := sc.Text()
			id, ok := strings.CutPrefix(line, "accepted ")
			if !ok {
				t.Errorf("child: %s", line)
				continue
			}
			accepted = append(accepted, id)
			if len(accepted) == want {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Lines written before the kill are still in the pipe; the scanner
		// read them all. A partial last line cannot happen (one write each).
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child did not die by SIGKILL: %v", err)
		}
		if len(accepted) < want {
			t.Fatalf("child printed only %d ids", len(accepted))
		}

		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkDB(t, s.db)
		undecided := map[string]bool{}
		err = s.Undecided(context.Background(), farFuture, func(e relay.Event) error {
			undecided[e.ID] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for _, id := range accepted {
			if !undecided[id] {
				missing++
				if missing < 5 {
					t.Errorf("round %d: accepted %s missing after crash", round, id)
				}
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d accepted events missing", round, missing, len(accepted))
		}
		t.Logf("round %d: %d accepted, %d stored", round, len(accepted), len(undecided))
		// Decide everything so the next round's child starts from a
		// non-empty, partly decided file.
		err = s.Undecided(context.Background(), farFuture, func(e relay.Event) error {
			return s.Decide(context.Background(), e.Key(), relay.Decision{Verdict: relay.VerdictSuppress}, nil, nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
