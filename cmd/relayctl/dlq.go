package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// deadLetter is one entry of GET /v1/deadletters.
type deadLetter struct {
	ID    string `json:"id"`
	Event struct {
		Workspace string `json:"workspace"`
		ID        string `json:"id"`
	} `json:"event"`
	DeviceID   string    `json:"device_id"`
	Platform   string    `json:"platform"`
	Reason     string    `json:"reason"`
	Attempts   int       `json:"attempts"`
	FailedAt   time.Time `json:"failed_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	ReplayedAt time.Time `json:"replayed_at"`
}

// cmdDLQList runs `relayctl dlq list [-limit N] [-after ID]`.
func cmdDLQList(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	limit := fs.Int("limit", 100, "dead letters per page (1-1000)")
	after := fs.String("after", "", "list the dead letters older than this id")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	q := url.Values{"limit": {fmt.Sprint(*limit)}}
	if *after != "" {
		q.Set("after", *after)
	}
	raw, err := g.get(ctx, "/v1/deadletters?"+q.Encode())
	if err != nil {
		return err
	}
	return g.show(raw, func(raw json.RawMessage) error {
		var out struct {
			DeadLetters []deadLetter `json:"dead_letters"`
			Next        string       `json:"next"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("decode dead letters: %w", err)
		}
		tw := g.table()
		fmt.Fprintln(tw, "ID\tEVENT\tDEVICE\tATTEMPTS\tFAILED\tREPLAYED\tREASON")
		for _, d := range out.DeadLetters {
			replayed := "-"
			if !d.ReplayedAt.IsZero() {
				replayed = d.ReplayedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.Event.Workspace, d.Event.ID, d.DeviceID,
				d.Attempts, d.FailedAt.Format(time.RFC3339), replayed, d.Reason)
		}
		tw.Flush()
		if out.Next != "" {
			fmt.Fprintf(g.stdout, "more: relayctl dlq list -after %s\n", out.Next)
		}
		return nil
	})
}

// cmdDLQReplay runs `relayctl dlq replay ID`.
func cmdDLQReplay(ctx context.Context, g *globals, args []string) error {
	pos, err := g.args(g.flags(), args, 1, 1)
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/v1/deadletters/"+url.PathEscape(pos[0])+"/replay", "", nil, &raw); err != nil {
		return err
	}
	return g.show(raw, func(raw json.RawMessage) error {
		var r struct {
			ID    string `json:"id"`
			Event struct {
				Workspace string `json:"workspace"`
				ID        string `json:"id"`
			} `json:"event"`
			DeviceID string `json:"device_id"`
			State    string `json:"state"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "replayed %s: %s/%s to %s is %s\n", r.ID, r.Event.Workspace, r.Event.ID, r.DeviceID, r.State)
		return nil
	})
}
