package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
)

// Defaults for StreamOptions fields left zero.
const (
	// DefaultHeartbeat is how often an idle stream sends a comment line,
	// so proxies and readers see the connection alive.
	DefaultHeartbeat = 15 * time.Second
	// DefaultStreamWriteTimeout bounds one write to a stream reader.
	DefaultStreamWriteTimeout = 10 * time.Second
	// DefaultStreamBatch is how many answers one store read returns.
	DefaultStreamBatch = 500
)

// Hub wakes the actions streams when an answer is stored. The API server
// (Options.Hub) or whoever stores answers calls Notify; each stream waits
// on it. It is safe for concurrent use. The zero Hub is not usable: use
// NewHub.
type Hub struct {
	mu     sync.Mutex
	ch     chan struct{} // closed and replaced by Notify
	closed bool
}

// NewHub returns a hub.
func NewHub() *Hub { return &Hub{ch: make(chan struct{})} }

// Notify wakes every stream waiting for answers. After Close it does
// nothing.
func (h *Hub) Notify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	close(h.ch)
	h.ch = make(chan struct{})
}

// Close ends every stream (after what it already read is written) and
// makes new streams end at once. Call it when the socket server starts
// draining, so open streams do not hold up its shutdown. Safe to call more
// than once.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.ch)
	}
}

// wait returns a channel closed by the next Notify or Close, and whether
// the hub is closed.
func (h *Hub) wait() (<-chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ch, h.closed
}

// StreamOptions configure StreamHandler. Hub is required.
type StreamOptions struct {
	// Hub wakes the stream when an answer is stored, and ends it on Close.
	Hub *Hub
	// Logger receives the stream's logs; nil: none.
	Logger hclog.Logger
	// Poll, when set, makes the stream re-read the answer log that often
	// even when the Hub is quiet: answers given through other relays of a
	// cluster reach this relay's readers within Poll.
	Poll time.Duration
	// Heartbeat, WriteTimeout and Batch: Default* if zero.
	Heartbeat    time.Duration
	WriteTimeout time.Duration
	Batch        int
}

// AnswerEvent is the data of one "action" event on the stream.
type AnswerEvent struct {
	Seq        uint64    `json:"seq"`
	Workspace  string    `json:"workspace"`
	EventID    string    `json:"event_id"`
	User       string    `json:"user"`
	DeviceID   string    `json:"device_id"`
	Action     string    `json:"action"`
	AnsweredAt time.Time `json:"answered_at"`
}

// NewAnswerEvent returns the stream form of a.
func NewAnswerEvent(a relay.Answer) AnswerEvent {
	return AnswerEvent{Seq: a.Seq, Workspace: a.Event.Workspace, EventID: a.Event.ID, User: a.User,
		DeviceID: a.DeviceID, Action: a.Action, AnsweredAt: a.AnsweredAt}
}

// AnswerReader reads the answer log.
type AnswerReader interface {
	Answers(ctx context.Context, afterSeq uint64, limit int) ([]relay.Answer, error)
}

// StreamHandler serves GET /v1/actions/stream on the socket: Server-Sent
// Events of stored answers, in sequence order, each
//
//	id: <seq>
//	event: action
//	data: {"seq":…,"workspace":…,"event_id":…,"user":…,"device_id":…,"action":…,"answered_at":…}
//
// A reader that sends Last-Event-ID: N gets every answer with seq > N
// still in the log (see Options.AnswerRetention), then new ones as they
// are stored; without it, every answer in the log. Idle streams get a
// comment line every Heartbeat. The stream ends when the client goes away,
// a write stalls past WriteTimeout, the store fails, or the Hub closes.
func StreamHandler(st AnswerReader, opts StreamOptions) http.Handler {
	setDefault(&opts.Heartbeat, DefaultHeartbeat)
	setDefault(&opts.WriteTimeout, DefaultStreamWriteTimeout)
	setDefault(&opts.Batch, DefaultStreamBatch)
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	return &streamHandler{st: st, opts: opts, log: opts.Logger}
}

type streamHandler struct {
	st   AnswerReader
	opts StreamOptions
	log  hclog.Logger
}

// ParseLastEventID parses a Last-Event-ID header: empty is 0, otherwise a
// decimal sequence number.
func ParseLastEventID(v string) (uint64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errors.New("invalid Last-Event-ID: want a decimal sequence number")
	}
	return n, nil
}

func (h *streamHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cursor, err := ParseLastEventID(r.Header.Get("Last-Event-ID"))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	if h.opts.Hub == nil {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "actions stream not available")
		return
	}
	ctx := r.Context()
	rc := http.NewResponseController(w)
	// A stream outlives the server's ReadTimeout.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		h.log.Debug("lift read deadline", relay.LogKeyError, err)
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf []byte
	flush := func() bool {
		if err := rc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(buf); err != nil {
			return false
		}
		buf = buf[:0]
		return rc.Flush() == nil
	}
	buf = append(buf, "retry: 1000\n: edgerelay actions stream\n\n"...)
	if !flush() {
		return
	}
	h.log.Debug("actions stream opened", "after", cursor)
	defer h.log.Debug("actions stream closed", "at", cursor)

	heartbeat := time.NewTicker(h.opts.Heartbeat)
	defer heartbeat.Stop()
	var poll <-chan time.Time
	if h.opts.Poll > 0 {
		t := time.NewTicker(h.opts.Poll)
		defer t.Stop()
		poll = t.C
	}
	for {
		// Take the wake-up channel before reading, so an answer stored
		// after the read still wakes this loop.
		wake, closed := h.opts.Hub.wait()
		if closed {
			return
		}
		answers, err := h.st.Answers(ctx, cursor, h.opts.Batch)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Error("read answers", relay.LogKeyError, err)
			}
			return
		}
		for _, a := range answers {
			if a.Cancelled { // the upstream's own cancel, not an answer
				cursor = a.Seq
				continue
			}
			data, err := json.Marshal(NewAnswerEvent(a))
			if err != nil {
				h.log.Error("encode answer", relay.LogKeyError, err)
				return
			}
			buf = strconv.AppendUint(append(buf, "id: "...), a.Seq, 10)
			buf = append(buf, "\nevent: action\ndata: "...)
			buf = append(buf, data...)
			buf = append(buf, "\n\n"...)
			cursor = a.Seq
		}
		if len(answers) > 0 {
			if !flush() {
				return
			}
			heartbeat.Reset(h.opts.Heartbeat)
		}
		if len(answers) == h.opts.Batch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-poll:
		case <-heartbeat.C:
			buf = append(buf, ": ping\n\n"...)
			if !flush() {
				return
			}
		}
	}
}
