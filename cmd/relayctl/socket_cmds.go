package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

func printJSON(raw []byte) {
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		os.Stdout.Write(raw)
		return
	}
	buf.WriteByte('\n')
	os.Stdout.Write(buf.Bytes())
}

func cmdGet(ctx context.Context, g *globals, path string) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.getJSON(ctx, path, &raw); err != nil {
		return err
	}
	printJSON(raw)
	return nil
}

func cmdHealth(ctx context.Context, g *globals) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if err := c.getJSON(ctx, p, nil); err != nil {
			return err
		}
		fmt.Println(p, "ok")
	}
	return nil
}

// cmdSend posts events from a file or stdin: one JSON object, or NDJSON.
func cmdSend(ctx context.Context, g *globals, args []string) error {
	var in io.Reader = os.Stdin
	if len(args) > 0 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// A pretty-printed single object is compacted into one NDJSON line.
	var compact bytes.Buffer
	if json.Valid(data) && json.Compact(&compact, data) == nil {
		data = compact.Bytes()
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	res, err := c.postEvents(ctx, data)
	if err != nil {
		return err
	}
	bad := 0
	for _, r := range res {
		if r.Status == "rejected" {
			bad++
			fmt.Printf("%-10s %s: %s\n", r.Status, r.ID, r.Error)
			continue
		}
		fmt.Printf("%-10s %s\n", r.Status, r.ID)
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d events rejected", bad, len(res))
	}
	return nil
}

func cmdEvent(ctx context.Context, g *globals, args []string) error {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: relayctl event WORKSPACE ID")
		return errUsage
	}
	return cmdGet(ctx, g, "/v1/events/"+url.PathEscape(args[0])+"/"+url.PathEscape(args[1]))
}

// kv parses TYPE=VALUE arguments.
func kv(args []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("argument %q: want TYPE=VALUE", a)
		}
		m[k] = v
	}
	return m, nil
}

func cmdSettings(ctx context.Context, g *globals, args []string) error {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: relayctl settings WORKSPACE [TYPE=enabled|disabled|enforced ...]")
		return errUsage
	}
	path := "/v1/workspaces/" + url.PathEscape(args[0]) + "/settings"
	if len(args) == 1 {
		return cmdGet(ctx, g, path)
	}
	m, err := kv(args[1:])
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.putJSON(ctx, path, m, &raw); err != nil {
		return err
	}
	printJSON(raw)
	return nil
}

func cmdPrefs(ctx context.Context, g *globals, args []string) error {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: relayctl prefs WORKSPACE USER [TYPE=on|off ...]")
		return errUsage
	}
	path := "/v1/workspaces/" + url.PathEscape(args[0]) + "/users/" + url.PathEscape(args[1]) + "/preferences"
	if len(args) == 2 {
		return cmdGet(ctx, g, path)
	}
	m, err := kv(args[2:])
	if err != nil {
		return err
	}
	prefs := map[string]bool{}
	for k, v := range m {
		switch v {
		case "on", "true":
			prefs[k] = true
		case "off", "false":
			prefs[k] = false
		default:
			return fmt.Errorf("preference %s=%q: want on or off", k, v)
		}
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.putJSON(ctx, path, prefs, &raw); err != nil {
		return err
	}
	printJSON(raw)
	return nil
}

func cmdDevice(ctx context.Context, g *globals, args []string) error {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: relayctl device put|list|rm ...")
		return errUsage
	}
	switch args[0] {
	case "list":
		if len(args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: relayctl device list WORKSPACE USER")
			return errUsage
		}
		return cmdGet(ctx, g, "/v1/workspaces/"+url.PathEscape(args[1])+"/users/"+url.PathEscape(args[2])+"/devices")
	case "rm":
		if len(args) != 4 {
			fmt.Fprintln(os.Stderr, "usage: relayctl device rm WORKSPACE USER ID")
			return errUsage
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		return c.do(ctx, "DELETE", devicePath(args[1], args[2], args[3]), "", nil, nil)
	case "put":
		if len(args) < 4 {
			fmt.Fprintln(os.Stderr, "usage: relayctl device put WORKSPACE USER ID -platform ios|android -token T -app A")
			return errUsage
		}
		fs := flag.NewFlagSet("device put", flag.ContinueOnError)
		platform := fs.String("platform", "", "ios or android")
		token := fs.String("token", "", "push token")
		app := fs.String("app", "", "app name (an app block of the config)")
		env := fs.String("environment", "", "production or sandbox (iOS)")
		name := fs.String("name", "", "display name")
		if err := fs.Parse(args[4:]); err != nil {
			return errUsage
		}
		body := map[string]string{"platform": *platform, "token": *token, "app": *app}
		if *env != "" {
			body["environment"] = *env
		}
		if *name != "" {
			body["name"] = *name
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := c.putJSON(ctx, devicePath(args[1], args[2], args[3]), body, &raw); err != nil {
			return err
		}
		printJSON(raw)
		return nil
	}
	return fmt.Errorf("unknown device command %q", args[0])
}

func devicePath(ws, user, id string) string {
	return "/v1/workspaces/" + url.PathEscape(ws) + "/users/" + url.PathEscape(user) + "/devices/" + url.PathEscape(id)
}
