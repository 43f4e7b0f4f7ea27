package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// auditEntry is one entry of GET /v1/audit.
type auditEntry struct {
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Actor struct {
		Kind      string `json:"kind"`
		UID       *int   `json:"uid"`
		PID       *int   `json:"pid"`
		Subject   string `json:"subject"`
		Workspace string `json:"workspace"`
		Role      string `json:"role"`
	} `json:"actor"`
	Action    string          `json:"action"`
	Workspace string          `json:"workspace"`
	User      string          `json:"user"`
	Target    string          `json:"target"`
	Before    json.RawMessage `json:"before"`
	After     json.RawMessage `json:"after"`
}

// who renders an entry's actor in one word: socket:uid=0,pid=42,
// app:admin@acme/boss, system.
func (e *auditEntry) who() string {
	a := e.Actor
	switch a.Kind {
	case "socket":
		if a.UID == nil {
			return "socket"
		}
		s := fmt.Sprintf("socket:uid=%d", *a.UID)
		if a.PID != nil {
			s += fmt.Sprintf(",pid=%d", *a.PID)
		}
		return s
	case "app":
		return fmt.Sprintf("app:%s@%s/%s", a.Role, a.Workspace, a.Subject)
	case "system":
		if a.Subject != "" {
			return "system:" + a.Subject
		}
	}
	return a.Kind
}

// cmdAudit runs `relayctl audit [-workspace W] [-user U] [-action A] [-since S] [-limit N] [-before SEQ]`.
func cmdAudit(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	ws := fs.String("workspace", "", "only this workspace's entries")
	user := fs.String("user", "", "only entries about this user")
	action := fs.String("action", "", "only this action (settings.put, preferences.put, device.delete, deadletter.replay, plugins.reload, plugin.load, plugin.unload, event.cancel, erase)")
	since := fs.String("since", "", "only entries since this RFC 3339 time or this long ago (24h)")
	limit := fs.Int("limit", 100, "entries per page (1-1000)")
	before := fs.Uint64("before", 0, "list the entries older than this sequence number (paging)")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	q := url.Values{"limit": {fmt.Sprint(*limit)}}
	for k, v := range map[string]string{"workspace": *ws, "user": *user, "action": *action, "since": *since} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *before != 0 {
		q.Set("before", fmt.Sprint(*before))
	}
	raw, err := g.get(ctx, "/v1/audit?"+q.Encode())
	if err != nil {
		return err
	}
	return g.show(raw, func(raw json.RawMessage) error {
		var out struct {
			Entries    []auditEntry `json:"entries"`
			NextBefore uint64       `json:"next_before"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("decode audit log: %w", err)
		}
		tw := g.table()
		fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tWORKSPACE\tUSER\tTARGET\tBEFORE\tAFTER")
		for _, e := range out.Entries {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.who(), e.Action,
				dash(e.Workspace), dash(e.User), dash(e.Target), dash(compact(e.Before)), dash(compact(e.After)))
		}
		tw.Flush()
		if out.NextBefore != 0 {
			fmt.Fprintf(g.stdout, "more: relayctl audit -before %d\n", out.NextBefore)
		}
		return nil
	})
}

// compact renders JSON on one line, cut to a table cell's width.
func compact(raw json.RawMessage) string {
	s := strings.Join(strings.Fields(string(raw)), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
