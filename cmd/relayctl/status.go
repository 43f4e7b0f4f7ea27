package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// pluginView is a plugin as GET /v1/plugins lists it.
type pluginView struct {
	Name        string `json:"name"`
	Hash        string `json:"hash"`
	Mode        string `json:"mode"`
	Calls       uint64 `json:"calls"`
	Failures    uint64 `json:"failures"`
	Timeouts    uint64 `json:"timeouts"`
	BreakerOpen bool   `json:"breaker_open"`
	LastError   string `json:"last_error"`
}

// statusView is what `relayctl status` shows, and prints with -json.
type statusView struct {
	Socket   string          `json:"socket"`
	Relayd   json.RawMessage `json:"relayd,omitempty"` // GET /v1/status
	Ready    bool            `json:"ready"`
	NotReady string          `json:"not_ready,omitempty"`
	Queue    *queueView      `json:"queue,omitempty"`
	Plugins  []pluginView    `json:"plugins"`
	Errors   []string        `json:"errors,omitempty"` // parts that could not be read
}

// cmdStatus prints the screen an operator reads first: what runs and
// since when, readiness, the delivery lanes and the policy plugins.
func cmdStatus(ctx context.Context, g *globals, args []string) error {
	if _, err := g.args(g.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	v := statusView{Socket: c.socket, Plugins: []pluginView{}}
	ok, why, err := ready(ctx, c)
	if err != nil {
		return err // unreachable: nothing else to show
	}
	v.Ready, v.NotReady = ok, why
	var raw json.RawMessage
	if err := c.getJSON(ctx, "/v1/status", &raw); err != nil {
		v.Errors = append(v.Errors, err.Error())
	} else {
		v.Relayd = raw
	}
	var q queueView
	if err := c.getJSON(ctx, "/v1/queue", &q); err != nil {
		v.Errors = append(v.Errors, err.Error())
	} else {
		v.Queue = &q
	}
	var pl struct {
		Plugins []pluginView `json:"plugins"`
	}
	if err := c.getJSON(ctx, "/v1/plugins", &pl); err != nil {
		v.Errors = append(v.Errors, err.Error())
	} else if pl.Plugins != nil {
		v.Plugins = pl.Plugins
	}
	if g.json {
		if err := g.writeJSON(v); err != nil {
			return err
		}
	} else if err := g.printStatus(v); err != nil {
		return err
	}
	if !v.Ready {
		return fmt.Errorf("%w: %s", errNotReady, v.NotReady)
	}
	return nil
}

func (g *globals) printStatus(v statusView) error {
	var st struct {
		Version   string    `json:"version"`
		GoVersion string    `json:"go_version"`
		StartedAt time.Time `json:"started_at"`
		Uptime    string    `json:"uptime"`
		Store     string    `json:"store"`
		Apps      []string  `json:"apps"`
	}
	w := g.stdout
	if v.Relayd != nil && json.Unmarshal(v.Relayd, &st) == nil {
		fmt.Fprintf(w, "relayd %s (%s), up %s since %s\n", st.Version, st.GoVersion, st.Uptime, st.StartedAt.Local().Format(time.DateTime))
		fmt.Fprintf(w, "socket %s, store %s, apps %s\n", v.Socket, st.Store, strings.Join(st.Apps, ", "))
	} else {
		fmt.Fprintf(w, "relayd (version unknown), socket %s\n", v.Socket)
	}
	if v.Ready {
		fmt.Fprintln(w, "ready: yes")
	} else {
		fmt.Fprintf(w, "ready: NO — %s\n", v.NotReady)
	}
	if v.Queue != nil {
		fmt.Fprint(w, "\nqueue: ")
		if err := g.printLanes(*v.Queue); err != nil {
			return err
		}
		for _, l := range v.Queue.Lanes {
			if l.Breaker != "" && l.Breaker != "closed" {
				fmt.Fprintf(w, "! lane %s: breaker %s — deliveries to it are held\n", l.Lane, l.Breaker)
			}
		}
	}
	failing := 0
	for _, p := range v.Plugins {
		if p.Failures > 0 || p.BreakerOpen {
			failing++
		}
	}
	fmt.Fprintf(w, "\nplugins: %d loaded, %d with failures\n", len(v.Plugins), failing)
	if len(v.Plugins) > 0 {
		tw := g.table()
		fmt.Fprintln(tw, "PLUGIN\tMODE\tCALLS\tFAILURES\tTIMEOUTS\tBREAKER\tLAST ERROR")
		for _, p := range v.Plugins {
			brk := "closed"
			if p.BreakerOpen {
				brk = "OPEN"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", p.Name, p.Mode, p.Calls, p.Failures, p.Timeouts, brk, dash(p.LastError))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, e := range v.Errors {
		fmt.Fprintf(w, "! %s\n", e)
	}
	return nil
}

func cmdVersion(_ context.Context, g *globals, args []string) error {
	if _, err := g.args(g.flags(), args, 0, 0); err != nil {
		return err
	}
	if g.json {
		return g.writeJSON(map[string]string{"version": version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH})
	}
	fmt.Fprintf(g.stdout, "relayctl %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
