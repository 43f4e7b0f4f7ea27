package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// Value encodings. Values carry only what their key does not.

// Events and decisions values are binary since format 2 (a lease decodes
// the decision and the event's user of every job it hands out, and JSON
// was the largest part of that and of the accept commit). Since format 3
// an event's decision lives in its events value, not in the decisions
// bucket: a commit that accepts or decides events then writes one B-tree
// fewer (the group commit's time grows with the pages it writes, and a
// bucket's leaf and branches were a sixth of them). Values written in
// formats 1 and 2, and decisions in the decisions bucket, are still read.
const (
	// eventFormatJSON: 0x01, 8-byte seq, JSON {event, received_at}; its
	// decision in the decisions bucket.
	eventFormatJSON = 1
	// eventFormatSeparate: 0x02, 8-byte seq, then id, workspace, user,
	// type, title, body (strings: uvarint length + bytes), data (uvarint
	// count, then key and value strings in key order), actions (uvarint
	// count, then strings), priority, occurred_at, expires_at,
	// received_at (times as in job values); its decision in the
	// decisions bucket.
	eventFormatSeparate = 2
	// eventFormat: 0x03, 8-byte seq, the decision (a string: empty while
	// undecided, else a decisions value), then the fields of format 2.
	eventFormat = 3
	// decisionFormat is the first byte of a binary decisions value (a JSON
	// one starts with '{'): verdict, reason, enforced (byte), defer_until,
	// plugins (uvarint count+1, 0 for none; name, hash, verdict, reason,
	// shadow each), then 0 (no alert) or 1 and the alert: event_id,
	// workspace, type, title, body, data, category, actions, priority,
	// interruption_level, sound, thread_id, collapse_id, expires_at,
	// silent, mutable_content.
	decisionFormat = 2
)

// eventHeaderLen is the format byte plus the 8-byte undecided seq.
const eventHeaderLen = 9

// eventValue is an events value decoded.
type eventValue struct {
	Event      relay.Event `json:"event"`
	ReceivedAt time.Time   `json:"received_at"`
}

// encodeEvent returns an undecided events value with room for the seq,
// which setEventSeq fills in inside the transaction.
func encodeEvent(e relay.Event, receivedAt time.Time) ([]byte, error) {
	return appendEvent(make([]byte, 0, eventSize(&e, nil)), e, receivedAt, nil), nil
}

// eventSize is about the size of e's events value with decision (at least
// it, for strings shorter than 128 bytes).
func eventSize(e *relay.Event, decision []byte) int {
	n := eventHeaderLen + binary.MaxVarintLen32 + len(decision) + len(e.ID) + len(e.Workspace) + len(e.User) + len(e.Type) + len(e.Title) + len(e.Body) + len(e.Priority) + 4*15 + 16
	for k, v := range e.Data {
		n += len(k) + len(v) + 4
	}
	for _, a := range e.Actions {
		n += len(a) + 2
	}
	return n
}

// appendEvent appends e's events value to b, with its decision (a
// decisions value, or nil while undecided).
func appendEvent(b []byte, e relay.Event, receivedAt time.Time, decision []byte) []byte {
	b = append(b, eventFormat)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // the seq (setEventSeq)
	b = binary.AppendUvarint(b, uint64(len(decision)))
	b = append(b, decision...)
	for _, s := range [...]string{e.ID, e.Workspace, e.User, e.Type, e.Title, e.Body} {
		b = appendString(b, s)
	}
	b = appendMap(b, e.Data)
	b = appendStrings(b, e.Actions)
	b = appendString(b, string(e.Priority))
	b = appendTime(b, e.OccurredAt)
	b = appendTime(b, e.ExpiresAt)
	return appendTime(b, receivedAt)
}

func setEventSeq(b []byte, seq uint64) { binary.BigEndian.PutUint64(b[1:eventHeaderLen], seq) }

// eventSeq returns the undecided seq of an events value.
func eventSeq(b []byte) (uint64, error) {
	if len(b) < eventHeaderLen || b[0] < eventFormatJSON || b[0] > eventFormat {
		return 0, fmt.Errorf("decode event: unknown format (%d bytes)", len(b))
	}
	return binary.BigEndian.Uint64(b[1:eventHeaderLen]), nil
}

// eventParts splits an events value into the binary fields of its event
// (nil in format 1, which is JSON) and its decision: nil while undecided,
// and in formats 1 and 2, whose decision is in the decisions bucket
// (decisionOf reads either).
func eventParts(b []byte) (fields, decision []byte, err error) {
	if _, err := eventSeq(b); err != nil {
		return nil, nil, err
	}
	switch b[0] {
	case eventFormatJSON:
		return nil, nil, nil
	case eventFormatSeparate:
		return b[eventHeaderLen:], nil, nil
	}
	r := byteReader{b: b[eventHeaderLen:]}
	decision = r.bytes()
	if r.err != nil {
		return nil, nil, fmt.Errorf("decode event: %w", r.err)
	}
	if len(decision) == 0 {
		decision = nil
	}
	return r.b, decision, nil
}

// withDecision returns a new events value: ev, undecided, with decision.
func withDecision(ev, decision []byte) ([]byte, error) {
	fields, _, err := eventParts(ev)
	if err != nil {
		return nil, err
	}
	if ev[0] == eventFormatJSON {
		v, err := decodeEvent(ev)
		if err != nil {
			return nil, err
		}
		b := appendEvent(make([]byte, 0, eventSize(&v.Event, decision)), v.Event, v.ReceivedAt, decision)
		copy(b[1:eventHeaderLen], ev[1:eventHeaderLen])
		return b, nil
	}
	b := make([]byte, 0, eventHeaderLen+binary.MaxVarintLen32+len(decision)+len(fields))
	b = append(b, eventFormat)
	b = append(b, ev[1:eventHeaderLen]...)
	b = binary.AppendUvarint(b, uint64(len(decision)))
	b = append(b, decision...)
	return append(b, fields...), nil
}

func decodeEvent(b []byte) (eventValue, error) {
	var v eventValue
	fields, _, err := eventParts(b)
	if err != nil {
		return v, err
	}
	if b[0] == eventFormatJSON {
		if err := json.Unmarshal(b[eventHeaderLen:], &v); err != nil {
			return v, fmt.Errorf("decode event: %w", err)
		}
		return v, nil
	}
	r := stringReader(fields)
	e := &v.Event
	e.ID, e.Workspace, e.User, e.Type = r.string(), r.string(), r.string(), r.string()
	e.Title, e.Body = r.string(), r.string()
	e.Data = r.stringMap()
	e.Actions = r.strings()
	e.Priority = relay.Priority(intern(r.bytes()))
	e.OccurredAt, e.ExpiresAt, v.ReceivedAt = r.time(), r.time(), r.time()
	if err := r.end(); err != nil {
		return v, fmt.Errorf("decode event: %w", err)
	}
	return v, nil
}

// checkEventValue reports whether b decodes as decodeEvent decodes it, and
// its decision as decodeDecision does, without building either (the
// start-up check reads every value).
func checkEventValue(b []byte) error {
	fields, decision, err := eventParts(b)
	if err != nil {
		return err
	}
	if b[0] == eventFormatJSON {
		_, err := decodeEvent(b)
		return err
	}
	if decision != nil {
		if err := checkDecisionValue(decision); err != nil {
			return err
		}
	}
	r := byteReader{b: fields}
	r.skip(6) // id, workspace, user, type, title, body
	r.skipMap()
	r.skipStrings()
	r.skip(1) // priority
	r.time()
	r.time()
	r.time()
	if err := r.end(); err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	return nil
}

// eventUser returns the user and receive time of an events value (a lease
// reads them for every event it hands out).
func eventUser(b []byte) (string, time.Time, error) {
	fields, _, err := eventParts(b)
	if err != nil {
		return "", time.Time{}, err
	}
	if b[0] == eventFormatJSON {
		var eu struct {
			Event struct {
				User string `json:"user"`
			} `json:"event"`
			ReceivedAt time.Time `json:"received_at"`
		}
		if err := json.Unmarshal(b[eventHeaderLen:], &eu); err != nil {
			return "", time.Time{}, fmt.Errorf("decode event: %w", err)
		}
		return eu.Event.User, eu.ReceivedAt, nil
	}
	// Only the user and the receive time: a lease needs nothing else.
	r := byteReader{b: fields}
	r.skip(2) // id, workspace
	user := r.string()
	r.skip(3) // type, title, body
	r.skipMap()
	r.skipStrings()
	r.skip(1) // priority
	r.time()
	r.time()
	at := r.time()
	if err := r.end(); err != nil {
		return "", time.Time{}, fmt.Errorf("decode event: %w", err)
	}
	return user, at, nil
}

// decisionValue is a decisions value decoded.
type decisionValue struct {
	Decision relay.Decision `json:"decision"`
	Alert    *relay.Alert   `json:"alert,omitempty"`
}

func encodeDecision(d relay.Decision, a *relay.Alert) ([]byte, error) {
	return appendDecision(make([]byte, 0, decisionSize(&d, a)), d, a), nil
}

// decisionSize is about the size of a decisions value.
func decisionSize(d *relay.Decision, a *relay.Alert) int {
	n := 32 + len(d.Verdict) + len(d.Reason)
	for _, p := range d.Plugins {
		n += 8 + len(p.Name) + len(p.Hash) + len(p.Verdict) + len(p.Reason)
	}
	if a != nil {
		n += 64 + len(a.EventID) + len(a.Workspace) + len(a.Type) + len(a.Title) + len(a.Body) + len(a.Category) +
			len(a.Priority) + len(a.InterruptionLevel) + len(a.Sound) + len(a.ThreadID) + len(a.CollapseID)
		for k, v := range a.Data {
			n += len(k) + len(v) + 4
		}
		for _, s := range a.Actions {
			n += len(s) + 2
		}
	}
	return n
}

// appendDecision appends a decisions value to b.
func appendDecision(b []byte, d relay.Decision, a *relay.Alert) []byte {
	b = append(b, decisionFormat)
	b = appendString(b, string(d.Verdict))
	b = appendString(b, d.Reason)
	b = appendBool(b, d.Enforced)
	b = appendTime(b, d.DeferUntil)
	if d.Plugins == nil {
		b = append(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(d.Plugins))+1)
		for _, p := range d.Plugins {
			for _, s := range [...]string{p.Name, p.Hash, p.Verdict, p.Reason} {
				b = appendString(b, s)
			}
			b = appendBool(b, p.Shadow)
		}
	}
	if a == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	for _, s := range [...]string{a.EventID, a.Workspace, a.Type, a.Title, a.Body} {
		b = appendString(b, s)
	}
	b = appendMap(b, a.Data)
	b = appendString(b, a.Category)
	b = appendStrings(b, a.Actions)
	for _, s := range [...]string{string(a.Priority), a.InterruptionLevel, a.Sound, a.ThreadID, a.CollapseID} {
		b = appendString(b, s)
	}
	b = appendTime(b, a.ExpiresAt)
	b = appendBool(b, a.Silent)
	return appendBool(b, a.MutableContent)
}

func decodeDecision(b []byte) (decisionValue, error) {
	var v decisionValue
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &v); err != nil {
			return v, fmt.Errorf("decode decision: %w", err)
		}
		return v, nil
	}
	r := stringReader(b)
	if f := r.byte(); f != decisionFormat {
		return v, fmt.Errorf("decode decision: %w: unknown format %d", errCorrupt, f)
	}
	d := &v.Decision
	d.Verdict = relay.Verdict(internVerdict(r.bytes()))
	d.Reason = r.string()
	d.Enforced = r.bool()
	d.DeferUntil = r.time()
	if n := r.uvarint(); n > 0 {
		n--
		if n > uint64(len(r.b)) {
			r.fail("plugin count")
		} else {
			d.Plugins = make([]relay.PluginDecision, n)
			for i := range d.Plugins {
				p := &d.Plugins[i]
				p.Name, p.Hash, p.Verdict, p.Reason = r.string(), r.string(), r.string(), r.string()
				p.Shadow = r.bool()
			}
		}
	}
	if r.bool() {
		a := &relay.Alert{}
		a.EventID, a.Workspace, a.Type, a.Title, a.Body = r.string(), r.string(), r.string(), r.string(), r.string()
		a.Data = r.stringMap()
		a.Category = r.string()
		a.Actions = r.strings()
		a.Priority = relay.Priority(intern(r.bytes()))
		a.InterruptionLevel, a.Sound, a.ThreadID, a.CollapseID = r.string(), r.string(), r.string(), r.string()
		a.ExpiresAt = r.time()
		a.Silent, a.MutableContent = r.bool(), r.bool()
		v.Alert = a
	}
	if err := r.end(); err != nil {
		return v, fmt.Errorf("decode decision: %w", err)
	}
	return v, nil
}

// checkDecisionValue reports whether b decodes as decodeDecision decodes
// it, without building the decision.
func checkDecisionValue(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		_, err := decodeDecision(b)
		return err
	}
	r := byteReader{b: b}
	if f := r.byte(); f != decisionFormat {
		return fmt.Errorf("decode decision: %w: unknown format %d", errCorrupt, f)
	}
	r.skip(2) // verdict, reason
	r.bool()
	r.time()
	if n := r.uvarint(); n > 0 {
		n--
		if n > uint64(len(r.b)) {
			r.fail("plugin count")
		}
		for ; n > 0 && r.err == nil; n-- {
			r.skip(4) // name, hash, verdict, reason
			r.bool()
		}
	}
	if r.bool() {
		r.skip(5) // event_id, workspace, type, title, body
		r.skipMap()
		r.skip(1) // category
		r.skipStrings()
		r.skip(5) // priority, interruption_level, sound, thread_id, collapse_id
		r.time()
		r.bool()
		r.bool()
	}
	if err := r.end(); err != nil {
		return fmt.Errorf("decode decision: %w", err)
	}
	return nil
}

func internVerdict(b []byte) string {
	for _, s := range [...]relay.Verdict{relay.VerdictDeliver, relay.VerdictSuppress, relay.VerdictDefer} {
		if string(b) == string(s) {
			return string(s)
		}
	}
	return string(b)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendMap appends a map's size and its pairs in key order (so equal maps
// encode alike).
func appendMap(b []byte, m map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, m[k])
	}
	return b
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// Job values are binary, not JSON: recovery decodes every open job
// (BenchmarkOpenJobs), and JSON decoding was most of that time. Layout:
//
//	jobFormat (1 byte)
//	place: uvarint length + bytes (format 3): an open job's place in the
//	    schedule, its sched key without the job key (lane \0 rank due);
//	    empty for a closed job
//	platform, state, last_error: uvarint length + bytes each
//	attempts: varint
//	next_at, expires_at, updated_at: 0 for the zero time, else 1, varint
//	    Unix seconds, uvarint nanoseconds (times come back in UTC)
//	app: uvarint length + bytes (formats 2 and 3; format 1 values have none)
//
// An open job's value finds its sched entry, so a delivery writes no index
// from job to entry (bucket sched_jobs until 2026-12-07: one more B-tree in
// every commit that accepts, leases or settles).
const (
	jobFormatV1 = 1
	jobFormatV2 = 2
	jobFormat   = 3
)

// jobSize is the most a job value with place takes.
func jobSize(j *relay.Job, place []byte) int {
	return 1 + binary.MaxVarintLen32 + len(place) + 4*binary.MaxVarintLen64 + len(j.Platform) + len(j.State) + len(j.LastError) + len(j.App) + binary.MaxVarintLen64 + 3*(1+2*binary.MaxVarintLen64)
}

// appendJob appends j's job value to b, with its place in the schedule
// (nil for a closed job).
func appendJob(b []byte, j *relay.Job, place []byte) []byte {
	b = append(b, jobFormat)
	b = binary.AppendUvarint(b, uint64(len(place)))
	b = append(b, place...)
	b = appendString(b, string(j.Platform))
	b = appendString(b, string(j.State))
	b = appendString(b, j.LastError)
	b = binary.AppendVarint(b, int64(j.Attempts))
	for _, t := range []time.Time{j.NextAt, j.ExpiresAt, j.UpdatedAt} {
		b = appendTime(b, t)
	}
	return appendString(b, j.App)
}

// jobPlace returns the place in the schedule a job value records: nil for
// a closed job, and for values written before format 3 (whose place was
// in sched_jobs: open migrates them, see migrateSchedIndex).
func jobPlace(v []byte) ([]byte, error) {
	if len(v) == 0 || v[0] != jobFormat {
		if len(v) > 0 && (v[0] == jobFormatV1 || v[0] == jobFormatV2) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	r := byteReader{b: v[1:]}
	place := r.bytes()
	if r.err != nil {
		return nil, r.err
	}
	if len(place) == 0 {
		return nil, nil
	}
	return place, nil
}

// withPlace returns a new job value: v with place. A format-3 value's
// fields are copied as they are (a lease calls it for every job, which it
// decoded already); an older one is decoded and written in format 3.
func withPlace(v, place []byte) ([]byte, error) {
	if len(v) == 0 || v[0] != jobFormat {
		var j relay.Job
		if err := decodeJobValue(&j, v); err != nil {
			return nil, err
		}
		return appendJob(make([]byte, 0, jobSize(&j, place)), &j, place), nil
	}
	r := byteReader{b: v[1:]}
	r.bytes() // the old place
	if r.err != nil {
		return nil, fmt.Errorf("%w: job place", errCorrupt)
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen32+len(place)+len(r.b))
	b = append(b, jobFormat)
	b = binary.AppendUvarint(b, uint64(len(place)))
	b = append(b, place...)
	return append(b, r.b...), nil
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
		// The id and the device from one copy.
		rest := string(k[i+1:])
		d.id, j.DeviceID = rest[:n], rest[n+1:]
	} else {
		j.DeviceID = string(dev)
	}
	j.Event = relay.EventKey{Workspace: d.ws, ID: d.id}
	if err := decodeJobValue(&j, v); err != nil {
		return j, fmt.Errorf("decode job %s/%s: %w", j.Event, j.DeviceID, err)
	}
	return j, nil
}

func decodeJob(k, v []byte) (relay.Job, error) {
	var d jobDecoder
	return d.decode(k, v)
}

// errCorrupt reports a value that does not parse.
var errCorrupt = errors.New("corrupt job value")

func decodeJobValue(j *relay.Job, v []byte) error {
	r := byteReader{b: v}
	f := r.byte()
	if f != jobFormat && f != jobFormatV2 && f != jobFormatV1 {
		return fmt.Errorf("%w: unknown format %d", errCorrupt, f)
	}
	if f == jobFormat {
		r.bytes() // the place (jobPlace)
	}
	j.Platform = relay.Platform(intern(r.bytes()))
	j.State = relay.DeliveryState(intern(r.bytes()))
	j.LastError = string(r.bytes())
	j.Attempts = int(r.varint())
	j.NextAt, j.ExpiresAt, j.UpdatedAt = r.time(), r.time(), r.time()
	if f != jobFormatV1 {
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
		string(relay.StateTokenRemoved), string(relay.StateWithdrawDue), string(relay.PriorityHigh), string(relay.PriorityNormal),
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
	// s, when set, holds the bytes b started with: strings are cut from
	// it instead of copied one by one (one allocation per value, not per
	// string; the strings keep the whole value alive).
	s string
}

// stringReader reads b with its strings cut from one copy of b.
func stringReader(b []byte) byteReader { return byteReader{b: b, s: string(b)} }

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

func (r *byteReader) string() string {
	b := r.bytes()
	if r.s == "" || len(b) == 0 {
		return string(b)
	}
	end := len(r.s) - len(r.b)
	return r.s[end-len(b) : end]
}

// skip reads past n strings.
func (r *byteReader) skip(n int) {
	for range n {
		r.bytes()
	}
}

// skipStrings reads past what strings reads.
func (r *byteReader) skipStrings() { r.skip(r.count()) }

// skipMap reads past what stringMap reads.
func (r *byteReader) skipMap() { r.skip(2 * r.count()) }

func (r *byteReader) bool() bool {
	switch r.byte() {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail("bool")
		return false
	}
}

// count reads a count of items of at least one byte each.
func (r *byteReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("count")
		return 0
	}
	return int(n)
}

func (r *byteReader) strings() []string {
	n := r.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.string()
	}
	return out
}

func (r *byteReader) stringMap() map[string]string {
	n := r.count()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := r.string()
		m[k] = r.string()
	}
	return m
}

// end returns the first error, or one for bytes left over.
func (r *byteReader) end() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(r.b))
	}
	return nil
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
