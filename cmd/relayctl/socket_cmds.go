package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// printJSON writes raw JSON indented, or as it is when it is not JSON.
func (g *globals) printJSON(raw []byte) {
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		g.stdout.Write(raw)
		return
	}
	buf.WriteByte('\n')
	g.stdout.Write(buf.Bytes())
}

// writeJSON writes v as indented JSON.
func (g *globals) writeJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	g.stdout.Write(append(b, '\n'))
	return nil
}

// get fetches a JSON answer of the socket API.
func (g *globals) get(ctx context.Context, path string) (json.RawMessage, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.getJSON(ctx, path, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// show prints a JSON answer: as JSON with -json, else with human (which may
// be nil: JSON then too).
func (g *globals) show(raw json.RawMessage, human func(json.RawMessage) error) error {
	if g.json || human == nil {
		g.printJSON(raw)
		return nil
	}
	return human(raw)
}

func (g *globals) table() *tabwriter.Writer {
	return tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
}

// largeSend is the body size from which send draws a progress bar on a
// terminal.
const largeSend = 1 << 20

// cmdSend posts events from a file or stdin: one JSON object, or NDJSON.
func cmdSend(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	progress := fs.Bool("progress", false, "draw a progress bar on stderr (default: for bodies over 1 MiB when stderr is a terminal)")
	pos, err := g.args(fs, args, 0, 1)
	if err != nil {
		return err
	}
	in, name := g.stdin, "stdin"
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, pos[0]
	}
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
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
	var body io.Reader = bytes.NewReader(data)
	if *progress || (g.stderrTTY && len(data) >= largeSend) {
		var done func()
		body, done = g.progress(body, int64(len(data)), "sending "+name)
		defer done()
	}
	var raw json.RawMessage
	if err := c.doReader(ctx, http.MethodPost, "/v1/events", "application/x-ndjson", body, int64(len(data)), &raw); err != nil {
		return err
	}
	var out struct {
		Results []eventResult `json:"results"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("decode results: %w", err)
	}
	if g.json {
		g.printJSON(raw)
	}
	bad := 0
	for _, r := range out.Results {
		if r.Status == "rejected" {
			bad++
		}
		if g.json {
			continue
		}
		if r.Status == "rejected" {
			fmt.Fprintf(g.stdout, "%-10s %s: %s\n", r.Status, r.ID, r.Error)
			continue
		}
		fmt.Fprintf(g.stdout, "%-10s %s\n", r.Status, r.ID)
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d events rejected", bad, len(out.Results))
	}
	return nil
}

func cmdEvent(ctx context.Context, g *globals, args []string) error {
	pos, err := g.args(g.flags(), args, 2, 2)
	if err != nil {
		return err
	}
	raw, err := g.get(ctx, "/v1/events/"+url.PathEscape(pos[0])+"/"+url.PathEscape(pos[1]))
	if err != nil {
		return err
	}
	return g.show(raw, nil)
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

// showMap prints a JSON object of type → value as a two-column table.
func (g *globals) showMap(raw json.RawMessage, col string) error {
	return g.show(raw, func(raw json.RawMessage) error {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		tw := g.table()
		fmt.Fprintf(tw, "TYPE\t%s\n", col)
		for _, k := range keys {
			v := m[k]
			if b, ok := v.(bool); ok {
				v = map[bool]string{true: "on", false: "off"}[b]
			}
			fmt.Fprintf(tw, "%s\t%v\n", k, v)
		}
		return tw.Flush()
	})
}

func cmdSettings(ctx context.Context, g *globals, args []string) error {
	pos, err := g.args(g.flags(), args, 1, -1)
	if err != nil {
		return err
	}
	path := "/v1/workspaces/" + url.PathEscape(pos[0]) + "/settings"
	if len(pos) == 1 {
		raw, err := g.get(ctx, path)
		if err != nil {
			return err
		}
		return g.showMap(raw, "SETTING")
	}
	m, err := kv(pos[1:])
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
	return g.showMap(raw, "SETTING")
}

func cmdPrefs(ctx context.Context, g *globals, args []string) error {
	pos, err := g.args(g.flags(), args, 2, -1)
	if err != nil {
		return err
	}
	path := "/v1/workspaces/" + url.PathEscape(pos[0]) + "/users/" + url.PathEscape(pos[1]) + "/preferences"
	if len(pos) == 2 {
		raw, err := g.get(ctx, path)
		if err != nil {
			return err
		}
		return g.showMap(raw, "ON")
	}
	m, err := kv(pos[2:])
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
	return g.showMap(raw, "ON")
}

// device is a device as the socket answers it.
type device struct {
	DeviceID    string `json:"device_id"`
	Platform    string `json:"platform"`
	App         string `json:"app"`
	Environment string `json:"environment"`
	Name        string `json:"name"`
	PublicKey   string `json:"public_key"`
	UpdatedAt   string `json:"updated_at"`
}

func cmdDeviceList(ctx context.Context, g *globals, args []string) error {
	pos, err := g.args(g.flags(), args, 2, 2)
	if err != nil {
		return err
	}
	raw, err := g.get(ctx, "/v1/workspaces/"+url.PathEscape(pos[0])+"/users/"+url.PathEscape(pos[1])+"/devices")
	if err != nil {
		return err
	}
	return g.show(raw, func(raw json.RawMessage) error {
		var out struct{ Devices []device }
		if err := json.Unmarshal(raw, &out); err != nil {
			return err
		}
		tw := g.table()
		fmt.Fprintln(tw, "DEVICE\tPLATFORM\tAPP\tENVIRONMENT\tNAME\tSEALED\tUPDATED")
		for _, d := range out.Devices {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", d.DeviceID, d.Platform, d.App, dash(d.Environment), dash(d.Name), d.PublicKey != "", d.UpdatedAt)
		}
		return tw.Flush()
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdDeviceRm(ctx context.Context, g *globals, args []string) error {
	pos, err := g.args(g.flags(), args, 3, 3)
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, devicePath(pos[0], pos[1], pos[2]), "", nil, nil)
}

func cmdDevicePut(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	platform := fs.String("platform", "", "ios or android (required)")
	token := fs.String("token", "", "push token (required)")
	app := fs.String("app", "", "app name, an app block of the config (required)")
	env := fs.String("environment", "", "production or sandbox (iOS)")
	name := fs.String("name", "", "display name")
	pos, err := g.args(fs, args, 3, 3)
	if err != nil {
		return err
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
	if err := c.putJSON(ctx, devicePath(pos[0], pos[1], pos[2]), body, &raw); err != nil {
		return err
	}
	return g.show(raw, func(raw json.RawMessage) error {
		var d device
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "registered %s (%s, app %s) for %s/%s\n", d.DeviceID, d.Platform, d.App, pos[0], pos[1])
		return nil
	})
}

func devicePath(ws, user, id string) string {
	return "/v1/workspaces/" + url.PathEscape(ws) + "/users/" + url.PathEscape(user) + "/devices/" + url.PathEscape(id)
}

// queueView is the answer of GET /v1/queue.
type queueView struct {
	Relay    string     `json:"relay"`
	Depth    int        `json:"depth"`
	OpenJobs int        `json:"open_jobs"`
	Lanes    []laneView `json:"lanes"`
}

type laneView struct {
	Lane          string         `json:"lane"`
	Depth         int            `json:"depth"`
	InFlight      int            `json:"in_flight"`
	Due           int            `json:"due"`
	Oldest        string         `json:"oldest_age"`
	Expired       int            `json:"expired"`
	Breaker       string         `json:"breaker"`
	BreakerUntil  string         `json:"breaker_until"`
	BreakerReason string         `json:"breaker_reason"`
	High          int            `json:"high"`
	Normal        int            `json:"normal"`
	Leased        int            `json:"leased"`
	Owners        map[string]int `json:"owners"`
}

func (g *globals) printLanes(q queueView) error {
	who := ""
	if q.Relay != "" {
		who = " (answered by relay " + q.Relay + ")"
	}
	fmt.Fprintf(g.stdout, "%d open jobs in the schedule%s\n", q.OpenJobs, who)
	if len(q.Lanes) == 0 {
		return nil
	}
	tw := g.table()
	fmt.Fprintln(tw, "LANE\tHIGH\tNORMAL\tDUE\tOLDEST\tEXPIRED\tLEASED BY\tIN FLIGHT HERE\tBREAKER HERE")
	for _, l := range q.Lanes {
		brk := l.Breaker
		if l.BreakerUntil != "" {
			brk += " until " + l.BreakerUntil
		}
		if l.BreakerReason != "" {
			brk += ": " + l.BreakerReason
		}
		leases := "-"
		if l.Leased > 0 {
			owners := make([]string, 0, len(l.Owners))
			for o, n := range l.Owners {
				owners = append(owners, fmt.Sprintf("%s:%d", o, n))
			}
			slices.Sort(owners)
			leases = fmt.Sprintf("%d", l.Leased)
			if len(owners) > 0 {
				leases += " (" + strings.Join(owners, " ") + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%s\t%d\t%s\n", l.Lane, l.High, l.Normal, l.Due, l.Oldest, l.Expired, leases, l.InFlight, brk)
	}
	return tw.Flush()
}

func cmdQueue(ctx context.Context, g *globals, args []string) error {
	if _, err := g.args(g.flags(), args, 0, 0); err != nil {
		return err
	}
	raw, err := g.get(ctx, "/v1/queue")
	if err != nil {
		return err
	}
	return g.show(raw, func(raw json.RawMessage) error {
		var q queueView
		if err := json.Unmarshal(raw, &q); err != nil {
			return err
		}
		return g.printLanes(q)
	})
}

// ready asks /readyz; a nil error means ready. An unreachable socket is an
// error wrapping errUnreachable.
func ready(ctx context.Context, c *client) (bool, string, error) {
	err := c.getJSON(ctx, "/readyz", nil)
	switch {
	case err == nil:
		return true, "", nil
	case isUnreachable(err) || ctx.Err() != nil:
		return false, "", err
	}
	return false, err.Error(), nil
}

func isUnreachable(err error) bool { return errors.Is(err, errUnreachable) }

func cmdHealth(ctx context.Context, g *globals, args []string) error {
	if _, err := g.args(g.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	if err := c.getJSON(ctx, "/healthz", nil); err != nil {
		return err
	}
	ok, why, err := ready(ctx, c)
	if err != nil {
		return err
	}
	if g.json {
		v := map[string]any{"healthy": true, "ready": ok}
		if !ok {
			v["not_ready"] = why
		}
		if err := g.writeJSON(v); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(g.stdout, "/healthz ok")
		if ok {
			fmt.Fprintln(g.stdout, "/readyz ok")
		}
	}
	if !ok {
		return fmt.Errorf("%w: %s", errNotReady, why)
	}
	return nil
}
