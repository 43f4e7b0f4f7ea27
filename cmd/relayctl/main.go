// Command relayctl is edgerelay's operator and developer CLI. It talks to a
// running relayd over its Unix socket, and runs development helpers (push
// fakes, the demo).
//
//	relayctl [-socket PATH | -config FILE] [-json] COMMAND [ARGS]
//
// Every command and subcommand takes -h (usage on stdout, exit 0); every
// command that prints data takes -json. Run `relayctl -h` for the commands
// and the exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/edgerelay/edgerelay/relay/config"
)

var version = "dev"

// Exit codes (documented in the usage and docs/operations.md).
const (
	exitOK          = 0 // success
	exitFailure     = 1 // the command failed, or relayd refused it
	exitUsage       = 2 // unknown command, bad arguments or flags
	exitUnreachable = 3 // relayd's socket cannot be reached
	exitNotReady    = 4 // relayd answers but is not ready (health, status)
)

var (
	errUsage       = errors.New("usage")
	errHelp        = errors.New("help")
	errUnreachable = errors.New("relayd unreachable")
	errNotReady    = errors.New("relayd not ready")
)

// command is one relayctl command or subcommand.
type command struct {
	name    string // "dlq list"
	args    string // what follows the name in the usage line
	summary string
	section string
	data    bool // prints data, and takes -json
	run     func(ctx context.Context, g *globals, args []string) error
}

const (
	secSocket  = "Socket API (talks to a running relayd)"
	secPlugins = "Policy plugins"
	secDev     = "Development"
	secOther   = "Other"
)

func commandTable() []*command {
	return []*command{
		{"status", "", "one screen: version, uptime, readiness, lanes (depth, oldest, breaker), plugin failures", secSocket, true, cmdStatus},
		{"send", "[-progress] [FILE|-]", "post events: one JSON object, or NDJSON lines (stdin without FILE)", secSocket, true, cmdSend},
		{"event", "WORKSPACE ID", "show an event's decision and deliveries", secSocket, true, cmdEvent},
		{"settings", "WORKSPACE [TYPE=enabled|disabled|enforced ...]", "show or change a workspace's settings", secSocket, true, cmdSettings},
		{"prefs", "WORKSPACE USER [TYPE=on|off ...]", "show or change a user's preferences", secSocket, true, cmdPrefs},
		{"device put", "WORKSPACE USER ID -platform ios|android -token T -app A [-environment E] [-name N]", "register or replace a device", secSocket, true, cmdDevicePut},
		{"device list", "WORKSPACE USER", "list a user's devices", secSocket, true, cmdDeviceList},
		{"device rm", "WORKSPACE USER ID", "remove a device", secSocket, false, cmdDeviceRm},
		{"queue", "", "delivery backlog per lane", secSocket, true, cmdQueue},
		{"dlq list", "[-limit N] [-after ID]", "list dead letters, newest first", secSocket, true, cmdDLQList},
		{"dlq replay", "ID", "queue a dead letter's job again", secSocket, true, cmdDLQReplay},
		{"audit", "[-workspace W] [-user U] [-action A] [-since 24h|TIME] [-limit N] [-before SEQ]", "who changed what and when: settings, preferences, devices, dead letters, plugins; newest first", secSocket, true, cmdAudit},
		{"health", "", "/healthz and /readyz (exit 4 when not ready)", secSocket, true, cmdHealth},
		{"backup", "[-progress] FILE", "copy the running relayd's store into FILE: a consistent snapshot, relayd keeps running (store \"bolt\"; restore: docs/operations.md)", secSocket, true, cmdBackup},
		{"erase", "-workspace W [-user U]", "remove everything relayd holds of a user (devices, preferences, events, answers, dead letters), or of a whole workspace", secSocket, true, cmdErase},
		{"config reload", "", "make the running relayd re-read its config file (app credentials, auth keys, notification blocks, retry, queue limits); says what changed or why nothing did", secSocket, true, cmdConfigReload},
		{"import-bolt", "FILE", "copy devices, settings and preferences of a stopped relay's bolt store into the running relayd (moving to a cluster)", secSocket, true, cmdImportBolt},
		{"actions tail", "[-from SEQ]", "follow answers to actionable alerts (resumes after reconnects); -json: one object per line", secSocket, true, cmdActions},
		{"plugin test", "FILE.wasm -event EV.json [-config C.json] [-manifest M.hcl] [-enforced]", "run a plugin exactly as relayd would; print the decision and timings", secPlugins, true, cmdPluginTest},
		{"plugin new", "NAME [-dir DIR]", "scaffold a Go plugin module that builds and passes its test", secPlugins, false, cmdPluginNew},
		{"plugin list", "", "plugins loaded by the running relayd, with their counters", secPlugins, true, cmdPluginList},
		{"plugin reload", "", "make the running relayd re-read its plugin directory", secPlugins, true, cmdPluginReload},
		{"dev init", "[-dir DIR]", "write dev credentials (APNs key, FCM service account, CA, JWT secret)", secDev, true, cmdDevInit},
		{"fakes", "[-dir DIR]", "run the APNs and FCM fakes named by the config's endpoints", secDev, false, cmdFakes},
		{"demo", "[-relayd BIN] [-exit]", "start fakes + relayd, register demo phones, send one event of each type", secDev, false, cmdDemo},
		{"cluster-demo", "[-relayd BIN]", "start fakes + three relays with embedded NATS (replicas 3), kill the one that accepted an alert, show the alert delivered", secDev, false, cmdClusterDemo},
		{"token mint", "-user U -workspace WS -role R [-ttl 1h]", "app API token signed with auth.hs256_secret_file", secDev, true, cmdToken},
		{"version", "", "print relayctl's version", secOther, true, cmdVersion},
		{"help", "[COMMAND]", "show the usage of relayctl or of a command", secOther, false, nil},
	}
}

const exitCodesHelp = `Exit codes:
  0  success
  1  the command failed, or relayd refused it (an error answer, rejected events)
  2  usage: unknown command, bad arguments or flags
  3  relayd cannot be reached (no socket, connection refused)
  4  relayd answers but is not ready (health, status)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &globals{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		stderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
	})
	stop()
	os.Exit(code)
}

// globals are the global flags, the streams and the running command.
type globals struct {
	configPath string
	socket     string
	json       bool // -json: print data as JSON

	stdin          io.Reader
	stdout, stderr io.Writer
	stderrTTY      bool // draw progress bars

	cmds []*command
	cmd  *command // the command being run
	c    *client  // the socket client, made by client()
}

// client returns the client of relayd's socket (-socket, or the config's
// socket.path).
func (g *globals) client() (*client, error) {
	if g.c != nil {
		return g.c, nil
	}
	path := g.socket
	if path == "" {
		cfg, err := g.config()
		if err != nil {
			return nil, err
		}
		path = cfg.Socket.Path
	}
	g.c = newClient(path)
	return g.c, nil
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
		l.WriteDiagnostics(g.stderr, diags)
		return nil, fmt.Errorf("config %s is invalid", g.configPath)
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, g *globals) int {
	g.cmds = commandTable()
	fs := flag.NewFlagSet("relayctl", flag.ContinueOnError)
	fs.SetOutput(g.stderr)
	fs.StringVar(&g.configPath, "config", "config.hcl", "relayd config file (for the socket path and app names)")
	fs.StringVar(&g.socket, "socket", "", "relayd socket path (overrides -config)")
	fs.BoolVar(&g.json, "json", false, "print data as JSON (every command that prints data)")
	fs.Usage = func() { g.mainUsage(fs.Output(), fs) }
	// -h among the global flags: the usage on stdout (the flag package
	// would print it on stderr).
	for i := 0; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		if isHelp(args[i]) {
			fs.SetOutput(g.stdout)
			fs.Usage()
			return exitOK
		}
		if (args[i] == "-config" || args[i] == "-socket" || args[i] == "--config" || args[i] == "--socket") && i+1 < len(args) {
			i++
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(g.stdout)
			fs.Usage()
			return exitOK
		}
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return exitUsage
	}
	if rest[0] == "help" {
		return g.help(fs, rest[1:])
	}
	cmd, cmdArgs := g.lookup(rest)
	if cmd == nil {
		if group := g.group(rest[0]); len(group) > 0 {
			// A group without (or with an unknown) subcommand.
			if len(rest) > 1 && isHelp(rest[1]) {
				g.groupUsage(g.stdout, rest[0], group)
				return exitOK
			}
			if len(rest) > 1 {
				fmt.Fprintf(g.stderr, "relayctl: unknown %s command %q\n", rest[0], rest[1])
			}
			g.groupUsage(g.stderr, rest[0], group)
			return exitUsage
		}
		fmt.Fprintf(g.stderr, "relayctl: unknown command %q (run relayctl -h)\n", rest[0])
		return exitUsage
	}
	g.cmd = cmd
	err := cmd.run(ctx, g, cmdArgs)
	if g.c != nil {
		g.c.hc.CloseIdleConnections()
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	}
	fmt.Fprintln(g.stderr, "relayctl:", err)
	switch {
	case errors.Is(err, errUnreachable):
		return exitUnreachable
	case errors.Is(err, errNotReady):
		return exitNotReady
	}
	return exitFailure
}

// lookup finds the command named by the first one or two words of args.
func (g *globals) lookup(args []string) (*command, []string) {
	for _, c := range g.cmds {
		words := strings.Fields(c.name)
		if c.run != nil && len(args) >= len(words) && slicesEqual(args[:len(words)], words) {
			return c, args[len(words):]
		}
	}
	return nil, nil
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// group returns the subcommands of a group such as "dlq".
func (g *globals) group(name string) []*command {
	var out []*command
	for _, c := range g.cmds {
		if strings.HasPrefix(c.name, name+" ") {
			out = append(out, c)
		}
	}
	return out
}

func (g *globals) help(fs *flag.FlagSet, args []string) int {
	if len(args) == 0 || isHelp(args[0]) {
		fs.SetOutput(g.stdout)
		fs.Usage()
		return exitOK
	}
	if c, _ := g.lookup(args); c != nil {
		g.cmd = c
		cfs := g.flags()
		_, err := g.parse(cfs, []string{"-h"})
		_ = err // errHelp: the usage was printed
		return exitOK
	}
	if group := g.group(args[0]); len(group) > 0 {
		g.groupUsage(g.stdout, args[0], group)
		return exitOK
	}
	fmt.Fprintf(g.stderr, "relayctl help: unknown command %q\n", strings.Join(args, " "))
	return exitUsage
}

func (g *globals) mainUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, "relayctl — edgerelay operator and developer CLI\n\n")
	fmt.Fprint(w, "Usage: relayctl [-config FILE | -socket PATH] [-json] COMMAND [ARGS]\n")
	fmt.Fprint(w, "       relayctl COMMAND -h     the usage of a command\n")
	section := ""
	for _, c := range g.cmds {
		if c.section != section {
			section = c.section
			fmt.Fprintf(w, "\n%s:\n", section)
		}
		line := c.name
		if c.args != "" {
			line += " " + c.args
		}
		if len(line) > 38 {
			fmt.Fprintf(w, "  %s\n  %-38s  %s\n", line, "", c.summary)
		} else {
			fmt.Fprintf(w, "  %-38s  %s\n", line, c.summary)
		}
	}
	fmt.Fprint(w, "\nEvery command takes -h; every command that prints data takes -json.\n\n")
	fmt.Fprint(w, exitCodesHelp)
	fmt.Fprint(w, "\nGlobal flags:\n")
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

func (g *globals) groupUsage(w io.Writer, name string, cmds []*command) {
	fmt.Fprintf(w, "Usage: relayctl %s COMMAND [ARGS]\n\nCommands:\n", name)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nRun relayctl %s COMMAND -h for a command's flags.\n", name)
}

// flags returns a flag set for the running command, with -json when the
// command prints data, and a usage that names the command.
func (g *globals) flags() *flag.FlagSet {
	c := g.cmd
	fs := flag.NewFlagSet("relayctl "+c.name, flag.ContinueOnError)
	fs.SetOutput(g.stderr)
	if c.data {
		fs.BoolVar(&g.json, "json", g.json, "print the result as JSON")
	}
	fs.Usage = func() {
		w := fs.Output()
		line := "relayctl " + c.name
		if c.args != "" {
			line += " " + c.args
		}
		if c.data {
			line += " [-json]"
		}
		fmt.Fprintf(w, "Usage: %s\n\n%s.\n", line, upperFirst(c.summary))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
		fmt.Fprint(w, "\nGlobal flags (before the command): -config FILE, -socket PATH, -json. Exit codes: relayctl -h.\n")
	}
	return fs
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "--h" }

// parse parses fs's flags wherever they stand among args (flags may
// follow positional arguments) and returns the positional arguments. -h
// anywhere before "--" prints the usage on stdout and returns errHelp; a
// bad flag prints the error and usage on stderr and returns errUsage.
func (g *globals) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if isHelp(a) {
			fs.SetOutput(g.stdout)
			fs.Usage()
			return nil, errHelp
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if len(args) > 0 && args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageError reports a wrong number of arguments: the message and the
// command's usage on stderr.
func (g *globals) usageError(fs *flag.FlagSet, format string, a ...any) error {
	fmt.Fprintf(g.stderr, "relayctl %s: %s\n\n", g.cmd.name, fmt.Sprintf(format, a...))
	fs.SetOutput(g.stderr)
	fs.Usage()
	return errUsage
}

// args parses args for a command taking between min and max positional
// arguments (max < 0: any number).
func (g *globals) args(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	pos, err := g.parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		switch {
		case min == max && min == 0:
			return nil, g.usageError(fs, "takes no arguments, got %q", pos)
		case min == max:
			return nil, g.usageError(fs, "want %d arguments, got %d", min, len(pos))
		case max < 0:
			return nil, g.usageError(fs, "want at least %d arguments, got %d", min, len(pos))
		default:
			return nil, g.usageError(fs, "want %d to %d arguments, got %d", min, max, len(pos))
		}
	}
	return pos, nil
}
