package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// Value encodings. Values carry only what their key does not.

// eventFormat is the first byte of an events value.
const eventFormat = 1

// eventHeaderLen is the format byte plus the 8-byte undecided seq.
const eventHeaderLen = 9

// eventValue is the JSON part of an events value.
type eventValue struct {
	Event      relay.Event `json:"event"`
	ReceivedAt time.Time   `json:"received_at"`
}

// encodeEvent returns an events value with room for the seq, which
// setEventSeq fills in inside the transaction.
func encodeEvent(e relay.Event, receivedAt time.Time) ([]byte, error) {
	js, err := json.Marshal(eventValue{Event: e, ReceivedAt: receivedAt})
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	b := make([]byte, eventHeaderLen, eventHeaderLen+len(js))
	b[0] = eventFormat
	return append(b, js...), nil
}

func setEventSeq(b []byte, seq uint64) { binary.BigEndian.PutUint64(b[1:eventHeaderLen], seq) }

// eventSeq returns the undecided seq of an events value.
func eventSeq(b []byte) (uint64, error) {
	if len(b) < eventHeaderLen || b[0] != eventFormat {
		return 0, fmt.Errorf("decode event: unknown format (%d bytes)", len(b))
	}
	return binary.BigEndian.Uint64(b[1:eventHeaderLen]), nil
}

func decodeEvent(b []byte) (eventValue, error) {
	var v eventValue
	if _, err := eventSeq(b); err != nil {
		return v, err
	}
	if err := json.Unmarshal(b[eventHeaderLen:], &v); err != nil {
		return v, fmt.Errorf("decode event: %w", err)
	}
	return v, nil
}

// decisionValue is a decisions value.
type decisionValue struct {
	Decision relay.Decision `json:"decision"`
	Alert    *relay.Alert   `json:"alert,omitempty"`
}

func encodeDecision(d relay.Decision, a *relay.Alert) ([]byte, error) {
	b, err := json.Marshal(decisionValue{Decision: d, Alert: a})
	if err != nil {
		return nil, fmt.Errorf("encode decision: %w", err)
	}
	return b, nil
}

func decodeDecision(b []byte) (decisionValue, error) {
	var v decisionValue
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode decision: %w", err)
	}
	return v, nil
}

// Job values are binary, not JSON: recovery decodes every open job
// (BenchmarkOpenJobs), and JSON decoding was most of that time. Layout:
//
//	jobFormat (1 byte)
//	platform, state, last_error: uvarint length + bytes each
//	attempts: varint
//	next_at, expires_at, updated_at: 0 for the zero time, else 1, varint
//	    Unix seconds, uvarint nanoseconds (times come back in UTC)
//	app: uvarint length + bytes (format 2; format 1 values have none)
const (
	jobFormatV1 = 1
	jobFormat   = 2
)

func encodeJob(j *relay.Job) []byte {
	b := make([]byte, 0, 1+4+len(j.Platform)+len(j.State)+len(j.LastError)+len(j.App)+3*15+4)
	b = append(b, jobFormat)
	b = appendString(b, string(j.Platform))
	b = appendString(b, string(j.State))
	b = appendString(b, j.LastError)
	b = binary.AppendVarint(b, int64(j.Attempts))
	for _, t := range []time.Time{j.NextAt, j.ExpiresAt, j.UpdatedAt} {
		b = appendTime(b, t)
	}
	return appendString(b, j.App)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// jobDecoder decodes job keys and values. It reuses the workspace and event
// id strings of the previous key, as consecutive keys usually share them.
type jobDecoder struct {
	ws, id string
}

func (d *jobDecoder) decode(k, v []byte) (relay.Job, error) {
	var j relay.Job
	i := bytes.IndexByte(k, sep)
	n := -1
	if i >= 0 {
		n = bytes.IndexByte(k[i+1:], sep)
	}
	if n < 0 {
		return j, fmt.Errorf("decode job key %q: want 3 parts", k)
	}
	ws, id, dev := k[:i], k[i+1:i+1+n], k[i+2+n:]
	if string(ws) != d.ws {
		d.ws = string(ws)
	}
	if string(id) != d.id {
		d.id = string(id)
	}
	j.Event = relay.EventKey{Workspace: d.ws, ID: d.id}
	j.DeviceID = string(dev)
	if err := decodeJobValue(&j, v); err != nil {
		return j, fmt.Errorf("decode job %s/%s: %w", j.Event, j.DeviceID, err)
	}
	return j, nil
}

func decodeJob(k, v []byte) (relay.Job, error) {
	var d jobDecoder
	return d.decode(k, v)
}

// errCorrupt reports a job value that does not parse.
var errCorrupt = errors.New("corrupt job value")

func decodeJobValue(j *relay.Job, v []byte) error {
	r := byteReader{b: v}
	f := r.byte()
	if f != jobFormat && f != jobFormatV1 {
		return fmt.Errorf("%w: unknown format %d", errCorrupt, f)
	}
	j.Platform = relay.Platform(intern(r.bytes()))
	j.State = relay.DeliveryState(intern(r.bytes()))
	j.LastError = string(r.bytes())
	j.Attempts = int(r.varint())
	j.NextAt, j.ExpiresAt, j.UpdatedAt = r.time(), r.time(), r.time()
	if f == jobFormat {
		j.App = intern(r.bytes())
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(r.b))
	}
	return nil
}

// intern returns the constant for common platform and state values, so
// decoding them does not allocate.
func intern(b []byte) string {
	for _, s := range [...]string{
		string(relay.PlatformIOS), string(relay.PlatformAndroid),
		string(relay.StatePending), string(relay.StateDeferred), string(relay.StateDelivered),
		string(relay.StateSuppressed), string(relay.StateExpired), string(relay.StateFailed),
		string(relay.StateTokenRemoved),
	} {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// byteReader reads a job value; the first error sticks and later reads
// return zero values.
type byteReader struct {
	b   []byte
	err error
}

func (r *byteReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	r.b = nil
}

func (r *byteReader) byte() byte {
	if len(r.b) == 0 {
		r.fail("byte")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *byteReader) uvarint() uint64 {
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("uvarint")
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *byteReader) varint() int64 {
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("varint")
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *byteReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("length")
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *byteReader) time() time.Time {
	switch r.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec := r.varint()
		nsec := r.uvarint()
		if nsec >= 1e9 {
			r.fail("nanoseconds")
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	default:
		r.fail("time flag")
		return time.Time{}
	}
}
