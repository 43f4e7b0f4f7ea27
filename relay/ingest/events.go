package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/store"
)

// Event statuses in a Result.
const (
	StatusAccepted  = "accepted"
	StatusDuplicate = "duplicate"
	StatusRejected  = "rejected"
)

// Media types POST /v1/events accepts.
const (
	MediaTypeJSON   = "application/json"     // one event
	MediaTypeNDJSON = "application/x-ndjson" // a batch, one event per line
)

// Results is the 202 answer of POST /v1/events: one Result per event, in
// body order.
type Results struct {
	Results []Result `json:"results"`
}

// Result is the outcome of one posted event.
type Result struct {
	// Line is the event's line in an NDJSON body (absent for a single
	// event).
	Line int `json:"line,omitempty"`
	// ID is the event's id, or "" when the line was too broken to tell.
	ID string `json:"id"`
	// Status is StatusAccepted, StatusDuplicate or StatusRejected.
	Status string `json:"status"`
	// Error says why a rejected event was rejected.
	Error string `json:"error,omitempty"`
}

// EventStatus is the answer of GET /v1/events/{workspace}/{id}.
type EventStatus struct {
	ID         string    `json:"id"`
	Workspace  string    `json:"workspace"`
	User       string    `json:"user"`
	Type       string    `json:"type"`
	ExpiresAt  time.Time `json:"expires_at"`
	ReceivedAt time.Time `json:"received_at"`
	// Decision is null until the event is decided.
	Decision   *relay.Decision `json:"decision"`
	Deliveries []Delivery      `json:"deliveries"`
}

// Delivery is one (event, device) job in an EventStatus.
type Delivery struct {
	DeviceID  string              `json:"device_id"`
	Platform  relay.Platform      `json:"platform"`
	State     relay.DeliveryState `json:"state"`
	Attempts  int                 `json:"attempts"`
	LastError string              `json:"last_error"`
	UpdatedAt time.Time           `json:"updated_at"`
}

// knownType returns the type check for one request.
func (s *Server) knownType() func(string) bool {
	if s.opts.KnownType != nil {
		return s.opts.KnownType
	}
	types := s.opts.Types()
	return func(t string) bool {
		_, ok := types[t]
		return ok
	}
}

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	// Work the accept leaves for after the answer (the sends of a batch's
	// jobs past its first few, pipeline) runs once the answer is sent.
	ctx, after := relay.WithAfterAnswer(r.Context())
	r = r.WithContext(ctx)
	defer func() {
		if after.Pending() {
			_ = http.NewResponseController(w).Flush()
		}
		after.Close()
	}()
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil && ct != "" {
		writeError(w, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, fmt.Sprintf("bad Content-Type %q: use %s (one event) or %s (a batch)", ct, MediaTypeJSON, MediaTypeNDJSON))
		return
	}
	switch mt {
	case MediaTypeJSON:
		s.postEvent(w, r)
	case MediaTypeNDJSON:
		s.postBatch(w, r, after)
	default:
		writeError(w, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, fmt.Sprintf("Content-Type %q not supported: use %s (one event) or %s (a batch)", ct, MediaTypeJSON, MediaTypeNDJSON))
	}
}

// postEvent handles one application/json event.
func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, relay.MaxEventBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("read body: %v", err))
		return
	}
	if len(body) > relay.MaxEventBytes {
		writeError(w, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, ErrEventTooLarge.Error())
		return
	}
	ev, err := DecodeEvent(body, s.knownType())
	if err != nil {
		s.logRejected(ev, 0, err)
		writeJSON(w, http.StatusBadRequest, ErrorBody{
			Error:   ErrorDetail{Code: CodeBadRequest, Message: err.Error()},
			Results: []Result{{ID: ev.ID, Status: StatusRejected, Error: err.Error()}},
		})
		return
	}
	errs, ok := s.accept(r.Context(), w, []relay.Event{ev})
	if !ok {
		return
	}
	res := result(ev.ID, 0, errs[0])
	if res.Status == StatusRejected {
		s.logRejected(ev, 0, errs[0])
		writeJSON(w, http.StatusBadRequest, ErrorBody{
			Error:   ErrorDetail{Code: CodeBadRequest, Message: res.Error},
			Results: []Result{res},
		})
		return
	}
	writeJSON(w, http.StatusAccepted, Results{Results: []Result{res}})
}

// postBatch handles an application/x-ndjson batch. The batch is read,
// decoded and handed to the Acceptor in chunks (batchChunkEvents events or
// batchChunkBytes), so only one chunk is in memory at a time; the batch's
// bytes are taken from the server's in-flight budget first (503 with
// Retry-After when it does not fit). When reading stops early (too many
// events, body too large, the Acceptor fails), the events already handed
// over keep their results, sent with the error.
func (s *Server) postBatch(w http.ResponseWriter, r *http.Request, after *relay.AfterAnswer) {
	if r.ContentLength > s.opts.MaxBatchBytes {
		writeError(w, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, fmt.Sprintf("batch body larger than %d bytes", s.opts.MaxBatchBytes))
		return
	}
	var held int64
	defer func() { s.inflight.give(held) }()
	busy := func() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, fmt.Sprintf("too many batch bytes in flight (limit %d, socket.max_inflight_bytes): retry later", s.opts.MaxInflightBytes))
	}
	want := r.ContentLength
	if want < 0 {
		want = inflightStep
	}
	n, ok := s.inflight.take(want)
	if !ok {
		busy()
		return
	}
	held = n
	known := r.ContentLength >= 0

	br := NewBatchReader(http.MaxBytesReader(w, r.Body, s.opts.MaxBatchBytes), s.knownType())
	defer br.Release()
	pool := &chunks
	if known && r.ContentLength <= smallBatchBytes {
		pool = &smallChunks
	}
	cp := pool.Get().(*[]Line)
	used := 0 // the most lines the chunk held
	defer func() {
		clear((*cp)[:min(used, cap(*cp))]) // the pool must not keep events alive
		pool.Put(cp)
	}()
	var (
		results  []Result
		chunk    = (*cp)[:0]
		size     int64 // bytes read into the chunk
		accepted int
	)
	// flush hands the chunk's valid events to the Acceptor and appends
	// the chunk's results. On failure it answers the request.
	flush := func() bool {
		defer func() { chunk, size = chunk[:0], 0 }()
		valid := make([]relay.Event, 0, len(chunk))
		for _, l := range chunk {
			if l.Err == nil {
				valid = append(valid, l.Event)
			} else {
				s.logRejected(l.Event, l.N, l.Err)
			}
		}
		var errs []error
		if len(valid) > 0 {
			var err error
			errs, err = s.opts.Acceptor.Accept(r.Context(), valid)
			switch {
			case err != nil:
				s.log.Error("accept events", "events", len(valid), relay.LogKeyError, err)
				s.batchError(w, http.StatusServiceUnavailable, CodeUnavailable, fmt.Sprintf("events not stored: %v", err), results)
				return false
			case len(errs) != len(valid):
				s.log.Error("acceptor returned wrong number of results", "events", len(valid), "results", len(errs))
				s.batchError(w, http.StatusInternalServerError, CodeInternal, "events in unknown state: internal error", results)
				return false
			}
		}
		results = slices.Grow(results, len(chunk))
		for _, l := range chunk {
			if l.Err != nil {
				results = append(results, Result{Line: l.N, ID: l.Event.ID, Status: StatusRejected, Error: l.Err.Error()})
				continue
			}
			res := result(l.Event.ID, l.N, errs[0])
			switch res.Status {
			case StatusAccepted:
				accepted++
			case StatusRejected:
				s.logRejected(l.Event, l.N, errs[0])
			}
			results = append(results, res)
			errs = errs[1:]
		}
		return true
	}
	for {
		before := br.Bytes()
		l, more := br.Next()
		if !known && br.Bytes() > held {
			// No Content-Length: take the budget as the body comes.
			n, ok := s.inflight.take(max(inflightStep, br.Bytes()-held))
			if !ok {
				if len(chunk) > 0 && !flush() {
					return
				}
				w.Header().Set("Retry-After", "1")
				s.batchError(w, http.StatusServiceUnavailable, CodeUnavailable, fmt.Sprintf("too many batch bytes in flight (limit %d, socket.max_inflight_bytes): the events of the results were processed, post the rest later", s.opts.MaxInflightBytes), results)
				return
			}
			held += n
		}
		if !more {
			break
		}
		chunk = append(chunk, l)
		used = max(used, len(chunk))
		size += br.Bytes() - before
		if len(chunk) == batchChunkEvents || size >= batchChunkBytes {
			if !flush() {
				return
			}
			after.Run() // the answer waits for the rest of the body
		}
	}
	if len(chunk) > 0 && !flush() {
		return
	}
	var tooBig *http.MaxBytesError
	err := br.Err()
	switch {
	case errors.Is(err, ErrTooManyEvents):
		s.batchError(w, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, err.Error()+": split it", results)
		return
	case errors.As(err, &tooBig):
		s.batchError(w, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, fmt.Sprintf("batch body larger than %d bytes", tooBig.Limit), results)
		return
	case err != nil:
		s.batchError(w, http.StatusBadRequest, CodeBadRequest, err.Error(), results)
		return
	case len(results) == 0:
		writeError(w, http.StatusBadRequest, CodeBadRequest, "no events in body")
		return
	}
	s.log.Debug("batch posted", "events", len(results), "accepted", accepted)
	writeJSON(w, http.StatusAccepted, Results{Results: results})
}

// batchError answers a batch that stopped early. Results, when some events
// were already handed to the Acceptor, are theirs: the message says so.
func (s *Server) batchError(w http.ResponseWriter, status int, code, msg string, results []Result) {
	if len(results) == 0 {
		writeError(w, status, code, msg)
		return
	}
	msg += fmt.Sprintf(" (lines up to %d were processed: see results; nothing after them was)", results[len(results)-1].Line)
	writeJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}, Results: results})
}

// chunks recycles the chunks batches are decoded into: a Line holds its
// event by value, and growing a fresh chunk line by line was the largest
// allocation of a small batch (0.4 of its bytes).
var chunks = sync.Pool{New: func() any {
	c := make([]Line, 0, batchChunkEvents)
	return &c
}}

// smallChunks recycles the chunks of small batches (a body of at most
// smallBatchBytes): a full chunk is 108 KB, and at one event per POST the
// ones the GC took from the pool were a seventh of relayd's allocations.
// A small batch with more lines than smallChunkEvents grows its chunk.
var smallChunks = sync.Pool{New: func() any {
	c := make([]Line, 0, smallChunkEvents)
	return &c
}}

const (
	smallBatchBytes  = 2 << 10
	smallChunkEvents = 8
)

// accept hands events to the Acceptor. On failure it answers the request
// and returns false.
func (s *Server) accept(ctx context.Context, w http.ResponseWriter, events []relay.Event) ([]error, bool) {
	errs, err := s.opts.Acceptor.Accept(ctx, events)
	if err != nil {
		s.log.Error("accept events", "events", len(events), relay.LogKeyError, err)
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, fmt.Sprintf("events not stored: %v", err))
		return nil, false
	}
	if len(errs) != len(events) {
		s.log.Error("acceptor returned wrong number of results", "events", len(events), "results", len(errs))
		writeError(w, http.StatusInternalServerError, CodeInternal, "events in unknown state: internal error")
		return nil, false
	}
	return errs, true
}

func result(id string, line int, err error) Result {
	switch {
	case err == nil:
		return Result{Line: line, ID: id, Status: StatusAccepted}
	case errors.Is(err, relay.ErrDuplicate):
		return Result{Line: line, ID: id, Status: StatusDuplicate}
	}
	return Result{Line: line, ID: id, Status: StatusRejected, Error: err.Error()}
}

func (s *Server) logRejected(ev relay.Event, line int, err error) {
	if !s.log.IsDebug() {
		return
	}
	s.log.Debug("event rejected", relay.LogKeyEventID, ev.ID, relay.LogKeyWorkspace, ev.Workspace, "line", line, relay.LogKeyError, err)
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request) {
	key := relay.EventKey{Workspace: r.PathValue("workspace"), ID: r.PathValue("id")}
	// Internal ids (withdraw pushes, token proofs) can be read too.
	for _, f := range []struct{ name, v string }{{"workspace", key.Workspace}, {"id", key.ID}} {
		check := relay.CheckID
		if f.name == "id" {
			check = relay.CheckIDOrInternal
		}
		if err := check(f.v); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("path parameter %q: %s", f.name, err))
			return
		}
	}
	rec, err := s.opts.Store.Event(r.Context(), key)
	if errors.Is(err, relay.ErrNotFound) {
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("event %q not found in workspace %q", key.ID, key.Workspace))
		return
	}
	if err != nil {
		s.storeError(w, "read event", err)
		return
	}
	writeJSON(w, http.StatusOK, eventStatus(rec))
}

func eventStatus(rec *store.Record) EventStatus {
	st := EventStatus{
		ID:         rec.Event.ID,
		Workspace:  rec.Event.Workspace,
		User:       rec.Event.User,
		Type:       rec.Event.Type,
		ExpiresAt:  rec.Event.ExpiresAt,
		ReceivedAt: rec.ReceivedAt,
		Deliveries: make([]Delivery, 0, len(rec.Jobs)),
	}
	if rec.Decision != nil {
		d := *rec.Decision
		if d.Plugins == nil {
			d.Plugins = []relay.PluginDecision{}
		}
		st.Decision = &d
	}
	for _, j := range rec.Jobs {
		st.Deliveries = append(st.Deliveries, Delivery{
			DeviceID:  j.DeviceID,
			Platform:  j.Platform,
			State:     j.State.Public(),
			Attempts:  j.Attempts,
			LastError: j.LastError,
			UpdatedAt: j.UpdatedAt,
		})
	}
	return st
}

// storeError answers a failed store call with 503 and logs it.
func (s *Server) storeError(w http.ResponseWriter, what string, err error) {
	s.log.Error("store failed", "op", what, relay.LogKeyError, err)
	writeError(w, http.StatusServiceUnavailable, CodeUnavailable, fmt.Sprintf("%s: %v", what, err))
}
