package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/relay/api"
)

// cmdActions runs `relayctl actions tail [-from SEQ] [-json]`: it follows
// the socket's GET /v1/actions/stream and prints one line per answer (with
// -json one JSON object per line), reconnecting with Last-Event-ID after a
// dropped connection. It stops when ctx ends (Ctrl-C).
func cmdActions(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	from := fs.Uint64("from", 0, "print answers after this sequence number (0: all retained)")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	asJSON := &g.json
	c, err := g.client()
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{ // no timeout: the stream is long-lived
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.socket)
		},
	}}
	defer hc.CloseIdleConnections()
	last := *from
	backoff := 250 * time.Millisecond
	for {
		got, err := tailOnce(ctx, hc, last, func(a api.AnswerEvent, raw string) {
			last = a.Seq
			if *asJSON {
				fmt.Fprintln(g.stdout, raw)
				return
			}
			fmt.Fprintf(g.stdout, "%d %s %s/%s user=%s device=%s action=%s\n", a.Seq, a.AnsweredAt.Format(time.RFC3339),
				a.Workspace, a.EventID, a.User, a.DeviceID, a.Action)
		})
		if ctx.Err() != nil {
			return nil
		}
		if got {
			backoff = 250 * time.Millisecond
		}
		fmt.Fprintf(g.stderr, "relayctl: actions stream: %v; reconnecting after %d in %s\n", err, last, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// tailOnce reads the stream once, from after seq, until it ends. It
// reports whether it received anything.
func tailOnce(ctx context.Context, hc *http.Client, after uint64, emit func(api.AnswerEvent, string)) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://relayd/v1/actions/stream", nil)
	if err != nil {
		return false, err
	}
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(after, 10))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return false, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	got := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "action" && data != "" {
				var a api.AnswerEvent
				if err := json.Unmarshal([]byte(data), &a); err != nil {
					return got, fmt.Errorf("decode answer: %w", err)
				}
				emit(a, data)
				got = true
			}
			event, data = "", ""
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			data = strings.TrimSpace(line[len("data:"):])
		}
	}
	if err := sc.Err(); err != nil {
		return got, err
	}
	return got, errors.New("stream ended")
}
