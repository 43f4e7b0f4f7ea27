package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// cmdDevInit: relayctl dev init [-dir DIR]
func cmdDevInit(_ context.Context, g *globals, args []string) error {
	fs := g.flags()
	dir := fs.String("dir", "dev", "directory for the development credentials")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	c, err := relaytest.WriteDevCredentials(*dir, relaytest.DevCredentialsOptions{})
	if err != nil {
		return err
	}
	if g.json {
		return g.writeJSON(map[string]string{"dir": c.Dir, "apns_key_file": c.APNsKeyFile,
			"fcm_credentials_file": c.FCMCredentialsFile, "ca_file": c.CAFile, "jwt_secret_file": c.JWTSecretFile})
	}
	fmt.Fprintf(g.stdout, "dev credentials in %s (kept if present): %s, %s, %s, %s\n", c.Dir,
		filepath.Base(c.APNsKeyFile), filepath.Base(c.FCMCredentialsFile), filepath.Base(c.CAFile), filepath.Base(c.JWTSecretFile))
	return nil
}

// fakeTargets reads the app of the config whose endpoints point at the
// local fakes.
type fakeTargets struct {
	app                     *config.App
	apnsAddr, fcmAddr, dir  string
	topic, keyID, teamID, p string
}

func devTargets(cfg *config.Config, dir string) (*fakeTargets, error) {
	for _, a := range cfg.Apps {
		if a.APNS == nil || a.FCM == nil || a.APNS.Endpoint == "" || a.FCM.Endpoint == "" {
			continue
		}
		au, err1 := url.Parse(a.APNS.Endpoint)
		fu, err2 := url.Parse(a.FCM.Endpoint)
		if err1 != nil || err2 != nil {
			continue
		}
		if dir == "" {
			dir = filepath.Dir(a.APNS.KeyFile)
		}
		return &fakeTargets{app: a, apnsAddr: au.Host, fcmAddr: fu.Host, dir: dir,
			topic: a.APNS.Topic, keyID: a.APNS.KeyID, teamID: a.APNS.TeamID, p: a.FCM.ProjectID}, nil
	}
	return nil, fmt.Errorf("config %s has no app with both apns and fcm endpoints to fake", cfg.File)
}

// startDemoFakes starts the fakes named by cfg's endpoints; each push they
// receive is described on the returned channel (dropped when nobody reads).
func startDemoFakes(ctx context.Context, cfg *config.Config) (*fakeTargets, *relaytest.DevFakes, <-chan string, error) {
	t, err := devTargets(cfg, "")
	if err != nil {
		return nil, nil, nil, err
	}
	received := make(chan string, 64)
	fakes, err := startFakes(ctx, t, func(l string) {
		select {
		case received <- l:
		default:
		}
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return t, fakes, received, nil
}

func startFakes(ctx context.Context, t *fakeTargets, onPush func(string)) (*relaytest.DevFakes, error) {
	w := &lineWriter{fn: onPush}
	return relaytest.StartDevFakes(ctx, relaytest.DevFakesOptions{
		Dir: t.dir, APNSAddr: t.apnsAddr, FCMAddr: t.fcmAddr,
		Topic: t.topic, KeyID: t.keyID, TeamID: t.teamID, ProjectID: t.p,
		Output: w,
	})
}

// lineWriter hands each written line to fn.
type lineWriter struct {
	mu sync.Mutex
	fn func(string)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.fn(l)
	}
	return len(b), nil
}

// cmdFakes: relayctl fakes [-dir DIR] — serve the fakes until Ctrl-C.
func cmdFakes(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	dir := fs.String("dir", "", "dev credentials directory (default: the directory of the config's APNs key)")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	cfg, err := g.config()
	if err != nil {
		return err
	}
	t, err := devTargets(cfg, *dir)
	if err != nil {
		return err
	}
	f, err := startFakes(ctx, t, func(l string) { fmt.Fprintln(g.stdout, l) })
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(g.stdout, "fake APNs on https://%s, fake FCM on https://%s (CA %s); Ctrl-C stops\n", t.apnsAddr, t.fcmAddr, f.Credentials.CAFile)
	<-ctx.Done()
	return nil
}

// cmdDemo starts the fakes and relayd, registers two phones, sends one event
// of each type and shows what each phone received.
func cmdDemo(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	relaydBin := fs.String("relayd", "bin/relayd", "relayd binary")
	exit := fs.Bool("exit", false, "exit once the demo alerts arrived (default: keep running until Ctrl-C)")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	cfg, err := g.config()
	if err != nil {
		return err
	}
	t, fakes, received, err := startDemoFakes(ctx, cfg)
	if err != nil {
		return err
	}
	defer fakes.Close()
	fmt.Fprintf(g.stdout, "▶ fake APNs on https://%s and fake FCM on https://%s\n", t.apnsAddr, t.fcmAddr)

	logPath := filepath.Join(filepath.Dir(cfg.Socket.Path), "relayd.log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(*relaydBin, "-config", g.configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start relayd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopRelayd := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	defer stopRelayd()
	fmt.Fprintf(g.stdout, "▶ relayd started (pid %d), logs in %s\n", cmd.Process.Pid, logPath)

	c := newClient(cfg.Socket.Path)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.waitReady(rctx); err != nil {
		return fmt.Errorf("%w (see %s)", err, logPath)
	}

	const ws, user = "acme", "u-42"
	phones := []struct{ id, platform, token string }{
		{"alice-iphone", "ios", strings.Repeat("a1", 32)},
		{"alice-pixel", "android", "fcm-token-alice-pixel"},
	}
	for _, p := range phones {
		body := map[string]string{"platform": p.platform, "token": p.token, "app": t.app.Name, "name": p.id}
		if p.platform == "ios" {
			body["environment"] = "sandbox"
		}
		if err := c.putJSON(ctx, devicePath(ws, user, p.id), body, nil); err != nil {
			return err
		}
	}
	fmt.Fprintf(g.stdout, "▶ registered %s and %s for user %s in workspace %s\n", phones[0].id, phones[1].id, user, ws)

	run := time.Now().Format("150405")
	events := []map[string]any{
		{"type": relay.TypeIdentityVerification, "title": "Sign-in request", "body": "Approve sign-in to Acme VPN from Paris?", "data": map[string]string{"country": "FR", "ip": "203.0.113.9"}},
		{"type": relay.TypeNewTrustedDevice, "title": "New device", "body": "Trust \"MacBook Pro\"?", "data": map[string]string{"device": "MacBook Pro"}},
		{"type": relay.TypeAccountShared, "title": "Account shared with you", "body": "bob@acme.example shared \"AWS prod\"", "data": map[string]string{"owner": "bob@acme.example"}},
		{"type": relay.TypeOTPReceived, "title": "Code for GitHub", "body": "Your code is 482913", "data": map[string]string{"account": "github", "code": "482913"}},
	}
	var nd strings.Builder
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = fmt.Sprintf("demo-%s-%d", run, i+1)
		e["id"], e["workspace"], e["user"] = ids[i], ws, user
		b, _ := json.Marshal(e)
		nd.Write(b)
		nd.WriteByte('\n')
	}
	res, err := c.postEvents(ctx, []byte(nd.String()))
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, "▶ sent one event of each type:")
	for i, r := range res {
		fmt.Fprintf(g.stdout, "    %-22s %-22s %s %s\n", r.ID, events[i]["type"], r.Status, r.Error)
	}

	// Wait until every event is settled, printing pushes as they arrive.
	fmt.Fprintln(g.stdout, "▶ what the phones received (at the fake APNs / FCM):")
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var views []map[string]any
	for settled := false; !settled; {
		select {
		case l := <-received:
			fmt.Fprintln(g.stdout, "    "+l)
		case <-tick.C:
			views, settled = eventViews(ctx, c, ws, ids)
		case <-deadline:
			return fmt.Errorf("events not settled after 20s (see %s)", logPath)
		case err := <-exited:
			return fmt.Errorf("relayd exited: %v (see %s)", err, logPath)
		case <-ctx.Done():
			return nil
		}
	}
	for drained := false; !drained; {
		select {
		case l := <-received:
			fmt.Fprintln(g.stdout, "    "+l)
		default:
			drained = true
		}
	}
	fmt.Fprintln(g.stdout, "▶ decisions and delivery states (GET /v1/events/{workspace}/{id}):")
	for _, v := range views {
		dec, _ := v["decision"].(map[string]any)
		fmt.Fprintf(g.stdout, "    %-22s %-22s %s (%s)", v["id"], v["type"], dec["verdict"], dec["reason"])
		if ps, _ := dec["plugins"].([]any); len(ps) > 0 {
			var names []string
			for _, p := range ps {
				pm, _ := p.(map[string]any)
				names = append(names, fmt.Sprintf("%v:%v", pm["name"], pm["verdict"]))
			}
			fmt.Fprintf(g.stdout, " plugins[%s]", strings.Join(names, " "))
		}
		fmt.Fprintln(g.stdout)
		ds, _ := v["deliveries"].([]any)
		for _, d := range ds {
			dm, _ := d.(map[string]any)
			fmt.Fprintf(g.stdout, "        %-14s %-8s %s\n", dm["device_id"], dm["platform"], dm["state"])
		}
	}
	if *exit {
		return nil
	}
	fmt.Fprintf(g.stdout, "▶ relayd keeps running on %s — try:\n", cfg.Socket.Path)
	fmt.Fprintf(g.stdout, `    echo '{"id":"evt-1","workspace":"%s","user":"%s","type":"otp_received","title":"Code","body":"Tap to copy"}' | bin/relayctl send -`+"\n", ws, user)
	fmt.Fprintf(g.stdout, "    bin/relayctl event %s evt-1\n", ws)
	if cfg.Auth.HS256SecretFile != "" {
		fmt.Fprintln(g.stdout, "  Answer the MFA prompt as the phone would (app API), and watch answers as upstream would:")
		fmt.Fprintf(g.stdout, "    bin/relayctl actions tail &\n")
		fmt.Fprintf(g.stdout, "    TOKEN=$(bin/relayctl token mint -user %s -workspace %s -role user)\n", user, ws)
		fmt.Fprintf(g.stdout, "    curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n      -d '{\"action\":\"approve\",\"device_id\":\"%s\"}' http://%s/v1/events/%s/actions\n", phones[0].id, cfg.API.Address, ids[0])
	}
	fmt.Fprintln(g.stdout, "  Ctrl-C stops relayd and the fakes.")
	for {
		select {
		case l := <-received:
			fmt.Fprintln(g.stdout, "    "+l)
		case err := <-exited:
			return fmt.Errorf("relayd exited: %v (see %s)", err, logPath)
		case <-ctx.Done():
			fmt.Fprintln(g.stdout, "\n▶ stopping relayd")
			return nil
		}
	}
}

// eventViews fetches the events and reports whether all are settled.
func eventViews(ctx context.Context, c *client, ws string, ids []string) ([]map[string]any, bool) {
	var out []map[string]any
	settled := true
	for _, id := range ids {
		var v map[string]any
		if err := c.getJSON(ctx, "/v1/events/"+url.PathEscape(ws)+"/"+url.PathEscape(id), &v); err != nil {
			return nil, false
		}
		if v["decision"] == nil {
			settled = false
		}
		ds, _ := v["deliveries"].([]any)
		for _, d := range ds {
			dm, _ := d.(map[string]any)
			if s := dm["state"]; s == "pending" {
				settled = false
			}
		}
		out = append(out, v)
	}
	return out, settled
}
