package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/config"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

// demoNode is one relay of the cluster demo.
type demoNode struct {
	name, cfgPath, logPath string
	cfg                    *config.Config
	cmd                    *exec.Cmd
	exited                 chan error
	c                      *client
}

// cmdClusterDemo: three relays on this machine, each with an embedded NATS
// server routed to the others (replicas = 3), against the fakes; an MFA
// prompt accepted by relay-1 is delivered after relay-1 is killed.
func cmdClusterDemo(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	relaydBin := fs.String("relayd", "bin/relayd", "relayd binary")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	base, err := g.config()
	if err != nil {
		return err
	}
	t, fakes, received, err := startDemoFakes(ctx, base)
	if err != nil {
		return err
	}
	defer fakes.Close()
	// Slow providers, so that relay-1 is still sending when it dies.
	fakes.APNs.Script("", relaytest.Rule{Latency: 1500 * time.Millisecond})
	fakes.FCM.Script("", relaytest.Rule{Latency: 1500 * time.Millisecond})
	fmt.Fprintf(g.stdout, "▶ fake APNs on https://%s and fake FCM on https://%s (answering after 1.5 s)\n", t.apnsAddr, t.fcmAddr)

	dir := filepath.Join(filepath.Dir(base.Socket.Path), "cluster")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	nodes, err := clusterConfigs(base, dir, 3)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if err := n.start(*relaydBin); err != nil {
			return err
		}
		defer n.stop()
	}
	fmt.Fprintf(g.stdout, "▶ started relay-1, relay-2 and relay-3 (configs and logs in %s); waiting for JetStream's quorum\n", dir)
	for _, n := range nodes {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := n.c.waitReady(rctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w (see %s)", n.name, err, n.logPath)
		}
	}
	fmt.Fprintln(g.stdout, "▶ all three relays ready")

	const ws, user = "acme", "alice"
	r1, r2 := nodes[0], nodes[1]
	phones := []struct{ id, platform, token string }{
		{"alice-iphone", "ios", strings.Repeat("c1", 32)},
		{"alice-pixel", "android", "fcm-token-alice-pixel-cluster"},
	}
	for _, p := range phones {
		body := map[string]string{"platform": p.platform, "token": p.token, "app": t.app.Name}
		if p.platform == "ios" {
			body["environment"] = "sandbox"
		}
		if err := r1.c.putJSON(ctx, devicePath(ws, user, p.id), body, nil); err != nil {
			return err
		}
	}
	fmt.Fprintf(g.stdout, "▶ registered alice's iPhone and Pixel through relay-1\n")

	id := "cluster-demo-" + time.Now().Format("150405")
	ev := fmt.Sprintf(`{"id":%q,"workspace":%q,"user":%q,"type":%q,"title":"Sign-in request","body":"Approve sign-in to Acme VPN?"}`+"\n",
		id, ws, user, relay.TypeIdentityVerification)
	res, err := r1.c.postEvents(ctx, []byte(ev))
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "▶ relay-1 answered %s for MFA prompt %s\n", res[0].Status, id)
	time.Sleep(300 * time.Millisecond)
	r1.cmd.Process.Signal(syscall.SIGKILL)
	<-r1.exited
	r1.cmd = nil
	fmt.Fprintln(g.stdout, "▶ relay-1 killed (SIGKILL): its leases end after queue.lease (5 s); relay-2 and relay-3 carry on")

	fmt.Fprintln(g.stdout, "▶ what the phones received (at the fake APNs / FCM):")
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var views []map[string]any
	for settled := false; !settled; {
		select {
		case l := <-received:
			fmt.Fprintln(g.stdout, "    "+l)
		case <-tick.C:
			views, settled = eventViews(ctx, r2.c, ws, []string{id})
		case <-deadline:
			return errors.New("the prompt was not delivered within 60 s after relay-1 died (see the logs)")
		case <-ctx.Done():
			return nil
		}
	}
	for drained := false; !drained; {
		select {
		case l := <-received:
			fmt.Fprintln(g.stdout, "    "+l)
		case <-time.After(300 * time.Millisecond):
			drained = true
		}
	}
	fmt.Fprintln(g.stdout, "▶ the prompt as relay-2 sees it (GET /v1/events):")
	for _, v := range views {
		ds, _ := v["deliveries"].([]any)
		for _, d := range ds {
			dm, _ := d.(map[string]any)
			fmt.Fprintf(g.stdout, "    %-14s %-8s %s (attempts %v)\n", dm["device_id"], dm["platform"], dm["state"], dm["attempts"])
		}
	}
	fmt.Fprintln(g.stdout, "▶ done: the alert survived the death of the relay that accepted it")
	return nil
}

// clusterConfigs writes n relay configs derived from base into dir: the
// same apps, notifications, auth and plugins; each its own socket, data,
// app API port and NATS server, routed to the others; metrics off.
func clusterConfigs(base *config.Config, dir string, n int) ([]*demoNode, error) {
	ports := make([]int, 2*n) // routes, then app APIs
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		defer ln.Close()
	}
	var nodes []*demoNode
	for i := range n {
		name := fmt.Sprintf("relay-%d", i+1)
		nd := filepath.Join(dir, name)
		if err := os.MkdirAll(nd, 0o700); err != nil {
			return nil, err
		}
		cfg := *base
		cfg.DataDir = filepath.Join(nd, "data")
		cfg.Socket.Path = filepath.Join(nd, "relayd.sock")
		cfg.API.Address, cfg.API.TLSCertFile, cfg.API.TLSKeyFile = fmt.Sprintf("127.0.0.1:%d", ports[n+i]), "", ""
		cfg.Metrics.Address = ""
		cfg.Queue.Lease = 5 * time.Second
		cfg.Store = config.Store{Kind: config.StoreJetStream, Replicas: 3, Retention: base.Store.Retention}
		var routes []string
		for j, p := range ports[:n] {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		cfg.NATS = &config.NATS{Name: name, StoreDir: filepath.Join(nd, "nats"),
			Cluster: &config.NATSCluster{Name: "edgerelay-demo", Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes}}
		path := filepath.Join(nd, "config.hcl")
		if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
			return nil, err
		}
		nodes = append(nodes, &demoNode{name: name, cfgPath: path, logPath: filepath.Join(nd, "relayd.log"), cfg: &cfg, c: newClient(cfg.Socket.Path)})
	}
	return nodes, nil
}

func (n *demoNode) start(bin string) error {
	f, err := os.Create(n.logPath)
	if err != nil {
		return err
	}
	n.cmd = exec.Command(bin, "-config", n.cfgPath)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if err := n.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	n.exited = make(chan error, 1)
	go func() { n.exited <- n.cmd.Wait(); f.Close() }()
	return nil
}

func (n *demoNode) stop() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}
