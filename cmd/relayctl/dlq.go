package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
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

// cmdDLQ lists and replays dead letters.
//
//	relayctl dlq list [-limit N] [-after ID] [-json]
//	relayctl dlq replay ID
func cmdDLQ(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: relayctl dlq list [-limit N] [-after ID] [-json] | relayctl dlq replay ID")
		return errUsage
	}
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
		limit := fs.Int("limit", 100, "dead letters per page (1-1000)")
		after := fs.String("after", "", "list the dead letters older than this id")
		asJSON := fs.Bool("json", false, "print the raw JSON answer")
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		q := url.Values{"limit": {fmt.Sprint(*limit)}}
		if *after != "" {
			q.Set("after", *after)
		}
		var raw json.RawMessage
		if err := c.getJSON(ctx, "/v1/deadletters?"+q.Encode(), &raw); err != nil {
			return err
		}
		if *asJSON {
			printJSON(raw)
			return nil
		}
		var out struct {
			DeadLetters []deadLetter `json:"dead_letters"`
			Next        string       `json:"next"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("decode dead letters: %w", err)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
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
			fmt.Printf("more: relayctl dlq list -after %s\n", out.Next)
		}
		return nil
	case "replay":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "usage: relayctl dlq replay ID")
			return errUsage
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := c.do(ctx, http.MethodPost, "/v1/deadletters/"+url.PathEscape(args[1])+"/replay", "", nil, &raw); err != nil {
			return err
		}
		printJSON(raw)
		return nil
	}
	return fmt.Errorf("dlq %q: unknown subcommand (list, replay)", args[0])
}
