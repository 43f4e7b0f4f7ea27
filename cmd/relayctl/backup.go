package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/relay/store/bolt"

	"github.com/schollz/progressbar/v3"
)

// cmdBackup copies the running relayd's store (GET /v1/backup) into FILE:
// written beside it, synced, checked, then renamed, so FILE is either the
// previous copy or a complete new one.
func cmdBackup(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	progress := fs.Bool("progress", false, "draw a progress bar on stderr (default: when stderr is a terminal)")
	pos, err := g.args(fs, args, 1, 1)
	if err != nil {
		return err
	}
	dst := pos[0]
	c, err := g.client()
	if err != nil {
		return err
	}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://relayd/v1/backup", nil)
	if err != nil {
		return err
	}
	// No overall timeout: a large store takes as long as it takes.
	resp, err := (&http.Client{Transport: c.hc.Transport}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: socket %s: %w", errUnreachable, c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.errorAnswer(http.MethodGet, "/v1/backup", resp)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".partial-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing to remove
	var body io.Reader = resp.Body
	if *progress || g.stderrTTY {
		var done func()
		body, done = g.progress(body, resp.ContentLength, "backup "+dst)
		defer done()
	}
	n, err := io.Copy(tmp, body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("copy ended after %d of %d bytes (relayd logs say why)", n, resp.ContentLength)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := bolt.VerifyFile(tmp.Name()); err != nil {
		return fmt.Errorf("backup: the copy does not verify: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil { // the rename survives a power cut
		d.Sync()
		d.Close()
	}
	took := time.Since(start)
	if g.json {
		return g.writeJSON(map[string]any{"file": dst, "bytes": n, "took_ms": took.Milliseconds()})
	}
	fmt.Fprintf(g.stdout, "backup %s: %d bytes in %s\n", dst, n, took.Round(time.Millisecond))
	return nil
}

// errorAnswer turns an error answer into an error carrying its message.
func (c *client) errorAnswer(method, path string, resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return answerError(method, path, resp.StatusCode, data)
}

// cmdErase removes everything relayd holds of a user, or of a workspace
// (POST /v1/erase).
func cmdErase(ctx context.Context, g *globals, args []string) error {
	fs := g.flags()
	ws := fs.String("workspace", "", "the workspace (required)")
	user := fs.String("user", "", "the user; without it the whole workspace is erased, its settings too")
	if _, err := g.args(fs, args, 0, 0); err != nil {
		return err
	}
	if *ws == "" {
		return g.usageError(fs, "-workspace is required")
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{"workspace": *ws, "user": *user})
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/v1/erase", "application/json", body, &raw); err != nil {
		return err
	}
	return g.show(raw, func(raw json.RawMessage) error {
		var res struct {
			Erased map[string]int `json:"erased"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return err
		}
		scope := "workspace " + *ws
		if *user != "" {
			scope = "user " + *user + " of workspace " + *ws
		}
		e := res.Erased
		fmt.Fprintf(g.stdout, "erased %s: %d devices, %d preference sets, %d settings, %d events, %d answers, %d dead letters\n",
			scope, e["devices"], e["preferences"], e["settings"], e["events"], e["answers"], e["dead_letters"])
		return nil
	})
}

// cmdConfigReload makes the running relayd re-read config.hcl (as SIGHUP,
// but with the answer: what changed, or why nothing did).
func cmdConfigReload(ctx context.Context, g *globals, args []string) error {
	if _, err := g.args(g.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/v1/config/reload", "", nil, &raw); err != nil {
		return err
	}
	return g.show(raw, func(raw json.RawMessage) error {
		var res struct {
			File    string   `json:"file"`
			Changed []string `json:"changed"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return err
		}
		if len(res.Changed) == 0 {
			fmt.Fprintf(g.stdout, "reloaded %s: nothing changed\n", res.File)
			return nil
		}
		fmt.Fprintf(g.stdout, "reloaded %s: %s\n", res.File, strings.Join(res.Changed, ", "))
		return nil
	})
}

// progress wraps r in a progress bar of size bytes on stderr (size < 0:
// unknown); done finishes the bar.
func (g *globals) progress(r io.Reader, size int64, desc string) (io.Reader, func()) {
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(g.stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionClearOnFinish(),
	)
	pr := progressbar.NewReader(r, bar)
	return &pr, func() { _ = bar.Finish() }
}
