// Command relayctl is edgerelay's operator and developer CLI. It talks to a
// running relayd over its Unix socket, and runs development helpers (push
// fakes, the demo).
//
//	relayctl [-socket PATH | -config FILE] COMMAND [ARGS]
//
// Run `relayctl help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/edgerelay/edgerelay/relay/config"
)

var version = "dev"

const usage = `relayctl — edgerelay operator and developer CLI

Usage: relayctl [-config FILE | -socket PATH] COMMAND [ARGS]

Socket API (talks to a running relayd):
  send [FILE|-]                         post events (one JSON object or NDJSON lines)
  event WORKSPACE ID                    show an event's decision and deliveries
  settings WORKSPACE [TYPE=STATE...]    show or change workspace settings
  prefs WORKSPACE USER [TYPE=on|off...] show or change a user's preferences
  device put WORKSPACE USER ID -platform ios|android -token T -app A [-environment E] [-name N]
  device list WORKSPACE USER
  device rm WORKSPACE USER ID
  queue                                 queue depth per lane
  dlq list [-limit N] [-after ID] | dlq replay ID   list or replay dead letters
  health                                /healthz and /readyz
  actions tail [-from SEQ] [-json]      follow answers to actionable alerts (resumes after reconnects)

Policy plugins:
  plugin test FILE.wasm -event EV.json [-config C.json] [-manifest M.hcl] [-enforced]
                                        run a plugin exactly as relayd would; print the decision and timings
  plugin new NAME [-dir DIR]            scaffold a Go plugin module that builds and passes its test
  plugin list | plugin reload           loaded plugins of a running relayd / reload them

Development:
  dev init [-dir DIR]                   write dev credentials (APNs key, FCM service account, CA, JWT secret)
  fakes [-dir DIR]                      run the APNs and FCM fakes named by the config's endpoints
  demo [-relayd BIN] [-exit]            start fakes + relayd, register demo phones, send one event of each type
  token mint -user U -workspace WS -role R [-ttl 1h]   app API token signed with auth.hs256_secret_file

Global flags:
`

func main() {
	os.Exit(run(os.Args[1:]))
}

type globals struct {
	configPath string
	socket     string
}

func (g *globals) client() (*client, error) {
	if g.socket != "" {
		return newClient(g.socket), nil
	}
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	return newClient(cfg.Socket.Path), nil
}

// config loads the config file without checking that referenced files
// exist (the CLI only needs names and addresses from it).
func (g *globals) config() (*config.Config, error) {
	src, err := os.ReadFile(g.configPath)
	if err != nil {
		return nil, fmt.Errorf("read config: %w (use -config FILE or -socket PATH)", err)
	}
	l := config.NewLoader()
	cfg, diags := l.Parse(src, g.configPath)
	if diags.HasErrors() {
		l.WriteDiagnostics(os.Stderr, diags)
		return nil, fmt.Errorf("config %s is invalid", g.configPath)
	}
	return cfg, nil
}

func run(args []string) int {
	var g globals
	fs := flag.NewFlagSet("relayctl", flag.ContinueOnError)
	fs.StringVar(&g.configPath, "config", "config.hcl", "relayd config file (for the socket path and app names)")
	fs.StringVar(&g.socket, "socket", "", "relayd socket path (overrides -config)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var err error
	switch cmd {
	case "help", "-h", "--help":
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return 0
	case "version":
		fmt.Printf("relayctl %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "send":
		err = cmdSend(ctx, &g, rest)
	case "event":
		err = cmdEvent(ctx, &g, rest)
	case "settings":
		err = cmdSettings(ctx, &g, rest)
	case "prefs":
		err = cmdPrefs(ctx, &g, rest)
	case "device":
		err = cmdDevice(ctx, &g, rest)
	case "queue":
		err = cmdGet(ctx, &g, "/v1/queue")
	case "dlq":
		err = cmdDLQ(ctx, &g, rest)
	case "health":
		err = cmdHealth(ctx, &g)
	case "actions":
		err = cmdActions(ctx, &g, rest)
	case "token":
		err = cmdToken(ctx, &g, rest)
	case "plugin":
		err = cmdPlugin(ctx, &g, rest)
	case "dev":
		err = cmdDev(ctx, &g, rest)
	case "fakes":
		err = cmdFakes(ctx, &g, rest)
	case "demo":
		err = cmdDemo(ctx, &g, rest)
	default:
		err = fmt.Errorf("unknown command %q (run relayctl help)", cmd)
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintln(os.Stderr, "relayctl:", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")
