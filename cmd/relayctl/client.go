package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// client talks to relayd's socket API.
type client struct {
	socket string
	hc     *http.Client
}

func newClient(socket string) *client {
	return &client{socket: socket, hc: &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			MaxIdleConnsPerHost: 16,
		},
	}}
}

// do sends a request and decodes a JSON answer into out (when non-nil). A
// JSON error answer becomes an error carrying its message.
func (c *client) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	return c.doReader(ctx, method, path, contentType, rd, int64(len(body)), out)
}

// doReader is do with a streamed body of size bytes.
func (c *client) doReader(ctx context.Context, method, path, contentType string, body io.Reader, size int64, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://relayd"+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.ContentLength = size
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: socket %s: %w", errUnreachable, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return answerError(method, path, resp.StatusCode, data)
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = data
			return nil
		}
		return json.Unmarshal(data, out)
	}
	return nil
}

// answerError is the error of an error answer, with its JSON message.
func answerError(method, path string, status int, data []byte) error {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
		return fmt.Errorf("%s %s: %d %s: %s", method, path, status, e.Error.Code, e.Error.Message)
	}
	return fmt.Errorf("%s %s: %d: %s", method, path, status, strings.TrimSpace(string(data)))
}

func (c *client) getJSON(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, "", nil, out)
}

func (c *client) putJSON(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPut, path, "application/json", b, out)
}

// waitReady polls /readyz until relayd answers or ctx ends.
func (c *client) waitReady(ctx context.Context) error {
	for {
		if err := c.getJSON(ctx, "/readyz", nil); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("relayd not ready on %s: %w", c.socket, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// eventResult is one entry of POST /v1/events's answer.
type eventResult struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (c *client) postEvents(ctx context.Context, ndjson []byte) ([]eventResult, error) {
	var out struct {
		Results []eventResult `json:"results"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/events", "application/x-ndjson", ndjson, &out)
	return out.Results, err
}
