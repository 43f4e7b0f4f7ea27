// Command relayd is the edgerelay daemon: events in on a Unix socket,
// decided by workspace settings, user preferences and policy plugins, out to
// APNs and FCM.
//
//	relayd -config config.hcl          run
//	relayd -config config.hcl -check   validate the config and exit
//	relayd version                     print the version and exit
//	relayd -config config.hcl -check-store   check the store file for damage and exit
//
// Signals: SIGINT/SIGTERM shut down gracefully (a second one stops at once,
// still closing the store, and exits 1);
// SIGHUP re-reads config.hcl (app credentials, auth keys, notification
// blocks, retry and queue limits; a file that cannot be applied is logged
// and the running config stays) and reloads policy plugins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/daemon"
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 1 && args[0] == "version" {
		fmt.Println(versionLine())
		return 0
	}
	if p := os.Getenv(checkStoreChildEnv); p != "" {
		return checkStoreChild(p)
	}
	fs := flag.NewFlagSet("relayd", flag.ContinueOnError)
	cfgPath := fs.String("config", "config.hcl", "path to the config file")
	check := fs.Bool("check", false, "validate the config and exit (non-zero on any error)")
	checkStoreOnly := fs.Bool("check-store", false, "check the store file for damage and exit (non-zero if damaged); run it while relayd is stopped")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println(versionLine())
		return 0
	}

	loader := config.NewLoader()
	cfg, diags := loader.Load(*cfgPath)
	if len(diags) > 0 {
		loader.WriteDiagnostics(os.Stderr, diags)
	}
	if diags.HasErrors() {
		fmt.Fprintf(os.Stderr, "relayd: configuration file %s is invalid (%d errors)\n", *cfgPath, countErrors(diags))
		return 1
	}
	if *check {
		fmt.Printf("relayd: configuration file %s is valid\n", *cfgPath)
		return 0
	}
	// A damaged store file would crash the daemon (bbolt panics, or faults
	// on a truncated file): check it first, in a child process.
	if cfg.Store.Kind == config.StoreBolt {
		if err := checkStore(cfg.Store.Path); err != nil {
			fmt.Fprintf(os.Stderr, "relayd: %v\n", err)
			return 1
		}
		if *checkStoreOnly {
			fmt.Printf("relayd: store %s is sound\n", cfg.Store.Path)
			return 0
		}
	} else if *checkStoreOnly {
		fmt.Fprintf(os.Stderr, "relayd: -check-store: store %q has no file to check\n", cfg.Store.Kind)
		return 1
	}

	log := hclog.New(&hclog.LoggerOptions{
		Name:       "relayd",
		Level:      hclog.LevelFromString(cfg.Log.Level),
		JSONFormat: cfg.Log.Format == "json",
		Output:     os.Stderr,
	})
	gogc := collectorTarget(os.Getenv, cfg.Store.Kind == config.StoreBolt)
	log.Info("starting", "version", version, "config", cfg.File, "gogc", gogc)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	d := daemon.New(cfg, log)
	d.Version = version
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	// This loop is the only reader of the signal channels, so no signal is
	// lost to a race; main returns through its defers in every case.
	stopping, aborted := false, false
	for {
		select {
		case err := <-done:
			if aborted {
				log.Warn("relayd stopped without draining", "error", err)
				return 1
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error("relayd failed", "error", err)
				return 1
			}
			return 0
		case s := <-sigs:
			if !stopping {
				stopping = true
				log.Info("shutting down; in-flight sends drain", "signal", s.String(), "timeout", cfg.ShutdownTimeout)
				cancel(errors.New(s.String()))
				continue
			}
			if !aborted {
				// A second signal stops at once: queued work is on disk;
				// the store is still closed before exiting.
				aborted = true
				log.Warn("second signal: stopping now without draining", "signal", s.String())
				d.Abort()
			}
		case <-hup:
			log.Info("SIGHUP: reloading config and policy plugins")
			d.Reload()
		}
	}
}

// versionLine is what `relayd version` prints: the stamp make sets with
// -ldflags "-X main.version=…", the Go release and the platform.
func versionLine() string {
	return fmt.Sprintf("relayd %s %s %s/%s", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func countErrors(diags interface{ Errs() []error }) int { return len(diags.Errs()) }

// defaultGOGC is the collector's target relayd sets, with the bolt store,
// when the environment sets no GOGC: the heap may grow to three times what
// is live between collections instead of twice. relayd's live heap is
// small (3–4 MB at 2,000 events/s) and it allocates with every event, so
// at GOGC=100 it collected every 40–60 ms, and the slowest events were
// those a collection caught. Measured (docs/benchmarks.md, "Session 14"):
// paced p99 −25 %, CPU per event −3 %, for 5–10 MiB more peak RSS.
// GOGC=100 trades back. With JetStream the embedded NATS server makes the
// heap 100–270 MiB under load, and 200 grew it by a third to two thirds:
// Go's default stays.
const defaultGOGC = 200

// collectorTarget applies defaultGOGC when bolt is the store and
// getenv("GOGC") is unset (a value set is the operator's choice, which the
// runtime has applied) and returns the target that applies.
func collectorTarget(getenv func(string) string, bolt bool) string {
	if v := getenv("GOGC"); v != "" {
		return v
	}
	if !bolt {
		return "100"
	}
	debug.SetGCPercent(defaultGOGC)
	return strconv.Itoa(defaultGOGC)
}
