package ingest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/relay"
)

// Decoding errors that concern a whole event or batch rather than a field.
var (
	// ErrEventTooLarge: one event is larger than relay.MaxEventBytes.
	ErrEventTooLarge = fmt.Errorf("event larger than %d bytes", relay.MaxEventBytes)
	// ErrTooManyEvents: a batch holds more than relay.MaxBatchEvents events.
	ErrTooManyEvents = fmt.Errorf("batch has more than %d events", relay.MaxBatchEvents)
)

// FieldError explains why an event (or an admin request body) was rejected,
// naming the field at fault.
type FieldError struct {
	// Field is the JSON name of the field at fault ("user", "data",
	// "actions"); empty when the fault is not in one field (not JSON, not an
	// object, trailing data).
	Field string
	// Reason says what is wrong, in lowercase, without the field's name.
	Reason string
}

// Reasons with a message of their own shape.
const (
	reasonUnknownField = "unknown field"
	reasonMissingField = "missing required field"
)

// Error returns `unknown field "foo"`, `missing required field "user"`, or
// `field "title": <reason>` (just the reason when Field is empty).
func (e *FieldError) Error() string {
	switch {
	case e.Reason == reasonUnknownField || e.Reason == reasonMissingField:
		return fmt.Sprintf("%s %q", e.Reason, e.Field)
	case e.Field == "":
		return e.Reason
	}
	return fmt.Sprintf("field %q: %s", e.Field, e.Reason)
}

// Line is one event of an NDJSON batch.
type Line struct {
	// N is the event's line number in the body, counting from 1 and
	// counting blank lines too.
	N int
	// Event holds the decoded event; when Err is set it holds the fields
	// decoded before the fault (often the id), possibly none.
	Event relay.Event
	// Err is nil when the line is a valid event, ErrEventTooLarge, or a
	// *FieldError.
	Err error
}

// DecodeBatch reads a whole NDJSON batch: one event per line, blank lines
// ignored, a trailing "\r" allowed. Each line is decoded with DecodeEvent;
// a bad line yields a Line with Err set and decoding goes on. A line longer
// than relay.MaxEventBytes is skipped with ErrEventTooLarge. It fails as a
// whole only with ErrTooManyEvents (more than relay.MaxBatchEvents events)
// or when reading r fails (the error wraps r's error).
//
// knownType reports whether a notification type is known; nil accepts any
// well-formed type. The server streams with a BatchReader instead.
func DecodeBatch(r io.Reader, knownType func(string) bool) ([]Line, error) {
	br := NewBatchReader(r, knownType)
	defer br.Release()
	var lines []Line
	for {
		l, ok := br.Next()
		if !ok {
			break
		}
		lines = append(lines, l)
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	return lines, nil
}

// BatchReader reads an NDJSON batch one event at a time, so a batch is
// stored as it arrives rather than held in memory whole. It holds one line
// (at most relay.MaxEventBytes) at a time. Lines are as DecodeBatch
// describes.
type BatchReader struct {
	br        *bufio.Reader
	knownType func(string) bool
	n         int // lines read
	events    int // events returned
	bytes     int64
	err       error
	done      bool
}

// lineBuffers recycles BatchReaders' line buffers (relay.MaxEventBytes
// each): allocating one per POST was a quarter of the bytes a batch of 50
// small events cost the socket API. Decoded events do not alias the
// buffer (decoder.str copies each line once).
var lineBuffers = sync.Pool{New: func() any {
	return bufio.NewReaderSize(nil, relay.MaxEventBytes+2) // room for "\r\n"
}}

// NewBatchReader returns a reader of the NDJSON batch in r. Release it when
// done.
func NewBatchReader(r io.Reader, knownType func(string) bool) *BatchReader {
	br := lineBuffers.Get().(*bufio.Reader)
	br.Reset(r)
	return &BatchReader{br: br, knownType: knownType}
}

// Release returns the reader's line buffer for another batch to use; b
// must not be used after. A reader not released is collected as usual.
func (b *BatchReader) Release() {
	if b.br == nil {
		return
	}
	b.br.Reset(nil) // drop r
	lineBuffers.Put(b.br)
	b.br = nil
	b.done = true
}

// Next returns the next event line (decoded, or with Err set). It returns
// false at the end of the batch or when reading fails; Err then says which.
// After relay.MaxBatchEvents events, a further event line stops the batch
// with ErrTooManyEvents (that line is not returned).
func (b *BatchReader) Next() (Line, bool) {
	for !b.done {
		raw, err := b.br.ReadSlice('\n')
		b.bytes += int64(len(raw))
		if len(raw) == 0 && errors.Is(err, io.EOF) {
			b.done = true
			return Line{}, false
		}
		b.n++
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				raw, err = b.br.ReadSlice('\n')
				b.bytes += int64(len(raw))
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return b.fail(fmt.Errorf("read batch line %d: %w", b.n, err))
			}
			if b.events == relay.MaxBatchEvents {
				return b.fail(ErrTooManyEvents)
			}
			b.done = err != nil
			b.events++
			return Line{N: b.n, Err: ErrEventTooLarge}, true
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return b.fail(fmt.Errorf("read batch line %d: %w", b.n, err))
		}
		b.done = err != nil // io.EOF after a last line without "\n"
		raw = trimNewline(raw)
		if blank(raw) {
			continue
		}
		if b.events == relay.MaxBatchEvents {
			return b.fail(ErrTooManyEvents)
		}
		b.events++
		ev, derr := DecodeEvent(raw, b.knownType)
		return Line{N: b.n, Event: ev, Err: derr}, true
	}
	return Line{}, false
}

func (b *BatchReader) fail(err error) (Line, bool) {
	b.err, b.done = err, true
	return Line{}, false
}

// Err returns why reading stopped early: nil at the end of the batch,
// ErrTooManyEvents, or an error wrapping the reader's.
func (b *BatchReader) Err() error { return b.err }

// Bytes returns how many bytes of the body were read so far.
func (b *BatchReader) Bytes() int64 { return b.bytes }

func trimNewline(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

func blank(b []byte) bool {
	for _, c := range b {
		if !isSpace(c) {
			return false
		}
	}
	return true
}

// DecodeEvent decodes and validates one JSON event (DESIGN.md "Event").
//
// Decoding is strict: unknown and duplicate fields, wrong types, invalid
// UTF-8, unpaired surrogate escapes and data after the object are errors.
// null stands for an absent field. id, workspace, user and type are
// required; ids follow relay.CheckID (the id grammar); title, body,
// data and actions are bounded by relay's Max* limits; priority is high or
// normal; times are RFC 3339 and expires_at may not be before occurred_at.
// Defaults (expires_at, priority) are not filled here.
//
// knownType reports whether a notification type is known; nil accepts any
// type that is a well-formed id. The error is ErrEventTooLarge or a
// *FieldError; on error the returned event holds the fields decoded before
// the fault.
func DecodeEvent(data []byte, knownType func(string) bool) (relay.Event, error) {
	var ev relay.Event
	if len(data) > relay.MaxEventBytes {
		return ev, ErrEventTooLarge
	}
	d := decoder{data: data}
	if err := d.event(&ev); err != nil {
		if d.dup&fID == 0 {
			// The fault came before the id: read on, so the rejection can
			// still name the event.
			ev.ID = salvageID(data)
		}
		return ev, err
	}
	return ev, validateEvent(&ev, d.seen, knownType)
}

// salvageID returns the top-level "id" of a rejected event when it can be
// read: the object is scanned leniently (values are skipped by their
// brackets and strings, not validated) up to the id. It returns "" when the
// object is too broken to find it or the id is not a valid name.
func salvageID(data []byte) string {
	d := decoder{data: data}
	if d.peek() != '{' {
		return ""
	}
	d.pos++
	for {
		if d.peek() != '"' {
			return ""
		}
		key, err := d.rawStr("")
		if err != nil || d.peek() != ':' {
			return ""
		}
		d.pos++
		if string(key) == "id" {
			if d.peek() != '"' {
				return ""
			}
			id, err := d.str("")
			if err != nil || checkID("id", id) != nil {
				return ""
			}
			return id
		}
		if !d.skipValue() {
			return ""
		}
		switch d.peek() {
		case ',':
			d.pos++
		default: // '}', the end, or garbage: no id
			return ""
		}
	}
}

// skipValue skips one JSON value leniently: strings are decoded, brackets
// must match (up to a nesting depth of 64), anything else is a run of
// literal characters. It reports whether a value was skipped.
func (d *decoder) skipValue() bool {
	var stack [64]byte
	depth := 0
	for {
		c := d.peek()
		switch {
		case c == '"':
			if _, err := d.rawStr(""); err != nil {
				return false
			}
		case c == '{' || c == '[':
			if depth == len(stack) {
				return false
			}
			stack[depth] = c + 2 // '{'+2 == '}', '['+2 == ']'
			depth++
			d.pos++
			continue
		case c == '}' || c == ']':
			if depth == 0 || stack[depth-1] != c {
				return false
			}
			depth--
			d.pos++
		case (c == ',' || c == ':') && depth > 0:
			d.pos++
			continue
		default:
			start := d.pos
			for d.pos < len(d.data) && isLiteral(d.data[d.pos]) {
				d.pos++
			}
			if d.pos == start {
				return false
			}
		}
		if depth == 0 {
			return true
		}
	}
}

func isLiteral(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.'
}

// Bits of decoder.seen, one per field.
const (
	fID uint16 = 1 << iota
	fWorkspace
	fUser
	fType
	fTitle
	fBody
	fData
	fActions
	fPriority
	fOccurredAt
	fExpiresAt
)

// fieldNames are the JSON names of the fields, by bit number.
var fieldNames = [...]string{"id", "workspace", "user", "type", "title", "body", "data", "actions", "priority", "occurred_at", "expires_at"}

type decoder struct {
	data []byte
	// text is data as a string, made at the first string decoded: the
	// strings without escapes are its substrings, so an event's strings
	// cost one allocation, not one each.
	text string
	pos  int
	seen uint16 // fields present (null counts as absent)
	dup  uint16 // fields met, to refuse duplicates
}

func (d *decoder) syntax(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf("invalid JSON at byte %d: ", d.pos) + fmt.Sprintf(format, args...)}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) && isSpace(d.data[d.pos]) {
		d.pos++
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (d *decoder) peek() byte {
	d.skipSpace()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// kind names the JSON value at the next non-space byte, for "expected X,
// got Y".
func (d *decoder) kind() string {
	c := d.peek()
	rest := d.data[d.pos:]
	switch {
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case bytes.HasPrefix(rest, []byte("true")) || bytes.HasPrefix(rest, []byte("false")):
		return "boolean"
	case bytes.HasPrefix(rest, []byte("null")):
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "number"
	case c == 0 && len(rest) == 0:
		return "end of input"
	}
	r, _ := utf8.DecodeRune(rest)
	return fmt.Sprintf("invalid character %q", r)
}

func (d *decoder) event(ev *relay.Event) error {
	c := d.peek()
	if c != '{' {
		if c == 0 {
			return &FieldError{Reason: "empty event: expected a JSON object"}
		}
		return &FieldError{Reason: "expected a JSON object, got " + d.kind()}
	}
	d.pos++
	if d.peek() == '}' {
		d.pos++
	} else {
		for {
			if c := d.peek(); c != '"' {
				return d.syntax("", "expected a field name, got %s", d.kind())
			}
			key, err := d.rawStr("")
			if err != nil {
				return err
			}
			if c := d.peek(); c != ':' {
				return d.syntax(string(key), "expected ':' after field name, got %s", d.kind())
			}
			d.pos++
			if err := d.field(ev, key); err != nil {
				return err
			}
			c := d.peek()
			if c == '}' {
				d.pos++
				break
			}
			if c != ',' {
				return d.syntax("", "expected ',' or '}' after field %q, got %s", string(key), d.kind())
			}
			d.pos++
		}
	}
	if d.peek() != 0 {
		return &FieldError{Reason: fmt.Sprintf("unexpected data after the event object at byte %d", d.pos)}
	}
	return nil
}

func (d *decoder) field(ev *relay.Event, rawKey []byte) error {
	var bit uint16
	switch string(rawKey) {
	case "id":
		bit = fID
	case "workspace":
		bit = fWorkspace
	case "user":
		bit = fUser
	case "type":
		bit = fType
	case "title":
		bit = fTitle
	case "body":
		bit = fBody
	case "data":
		bit = fData
	case "actions":
		bit = fActions
	case "priority":
		bit = fPriority
	case "occurred_at":
		bit = fOccurredAt
	case "expires_at":
		bit = fExpiresAt
	default:
		return &FieldError{Field: shorten(string(rawKey)), Reason: reasonUnknownField}
	}
	key := fieldNames[bits.TrailingZeros16(bit)]
	if d.dup&bit != 0 {
		return &FieldError{Field: key, Reason: "duplicate field"}
	}
	d.dup |= bit
	if d.peek() == 'n' {
		return d.null(key)
	}
	d.seen |= bit
	switch bit {
	case fID:
		return d.strField(key, &ev.ID)
	case fWorkspace:
		return d.strField(key, &ev.Workspace)
	case fUser:
		return d.strField(key, &ev.User)
	case fType:
		return d.strField(key, &ev.Type)
	case fTitle:
		return d.strField(key, &ev.Title)
	case fBody:
		return d.strField(key, &ev.Body)
	case fPriority:
		var s string
		err := d.strField(key, &s)
		ev.Priority = relay.Priority(s)
		return err
	case fOccurredAt:
		return d.timeField(key, &ev.OccurredAt)
	case fExpiresAt:
		return d.timeField(key, &ev.ExpiresAt)
	case fData:
		return d.dataField(key, ev)
	default: // fActions
		return d.actionsField(key, ev)
	}
}

func (d *decoder) null(field string) error {
	if len(d.data)-d.pos >= 4 && string(d.data[d.pos:d.pos+4]) == "null" {
		d.pos += 4
		return nil
	}
	return d.syntax(field, "invalid literal")
}

func (d *decoder) strField(field string, dst *string) error {
	if c := d.peek(); c != '"' {
		return &FieldError{Field: field, Reason: "expected string, got " + d.kind()}
	}
	s, err := d.str(field)
	*dst = s
	return err
}

func (d *decoder) timeField(field string, dst *time.Time) error {
	if d.peek() != '"' {
		return &FieldError{Field: field, Reason: "expected string, got " + d.kind()}
	}
	b, err := d.rawStr(field)
	if err != nil {
		return err
	}
	if err := dst.UnmarshalText(b); err != nil {
		*dst = time.Time{}
		return &FieldError{Field: field, Reason: "expected an RFC 3339 time like \"2026-11-27T10:00:00Z\", got " + quoteShort(string(b))}
	}
	return nil
}

func (d *decoder) dataField(field string, ev *relay.Event) error {
	if c := d.peek(); c != '{' {
		return &FieldError{Field: field, Reason: "expected object, got " + d.kind()}
	}
	d.pos++
	if d.peek() == '}' {
		d.pos++
		return nil
	}
	m := make(map[string]string, 4)
	ev.Data = m
	for {
		if c := d.peek(); c != '"' {
			return d.syntax(field, "expected a key, got %s", d.kind())
		}
		k, err := d.str(field)
		if err != nil {
			return err
		}
		if c := d.peek(); c != ':' {
			return d.syntax(field, "expected ':' after key %s, got %s", quoteShort(k), d.kind())
		}
		d.pos++
		if _, ok := m[k]; ok {
			return &FieldError{Field: field, Reason: "duplicate key " + quoteShort(k)}
		}
		if len(m) == relay.MaxDataEntries {
			return &FieldError{Field: field, Reason: fmt.Sprintf("more than %d entries", relay.MaxDataEntries)}
		}
		if c := d.peek(); c != '"' {
			return &FieldError{Field: field, Reason: fmt.Sprintf("value of key %s: expected string, got %s", quoteShort(k), d.kind())}
		}
		v, err := d.str(field)
		if err != nil {
			return err
		}
		m[k] = v
		c := d.peek()
		if c == '}' {
			d.pos++
			return nil
		}
		if c != ',' {
			return d.syntax(field, "expected ',' or '}' in object, got %s", d.kind())
		}
		d.pos++
	}
}

func (d *decoder) actionsField(field string, ev *relay.Event) error {
	if c := d.peek(); c != '[' {
		return &FieldError{Field: field, Reason: "expected array of strings, got " + d.kind()}
	}
	d.pos++
	if d.peek() == ']' {
		d.pos++
		return nil
	}
	for i := 0; ; i++ {
		if len(ev.Actions) == relay.MaxActions {
			return &FieldError{Field: field, Reason: fmt.Sprintf("more than %d actions", relay.MaxActions)}
		}
		if c := d.peek(); c != '"' {
			return &FieldError{Field: field, Reason: fmt.Sprintf("item %d: expected string, got %s", i, d.kind())}
		}
		s, err := d.str(field)
		if err != nil {
			return err
		}
		ev.Actions = append(ev.Actions, s)
		c := d.peek()
		if c == ']' {
			d.pos++
			return nil
		}
		if c != ',' {
			return d.syntax(field, "expected ',' or ']' in array, got %s", d.kind())
		}
		d.pos++
	}
}

// str decodes the JSON string at d.pos (which is '"'). field names the
// field for errors.
func (d *decoder) str(field string) (string, error) {
	start := d.pos + 1
	b, err := d.rawStr(field)
	if err != nil || len(b) == 0 {
		return string(b), err
	}
	if &b[0] != &d.data[start] {
		return string(b), nil // unescaped into a buffer of its own
	}
	if d.text == "" {
		d.text = string(d.data)
	}
	return d.text[start : start+len(b)], nil
}

// rawStr decodes the JSON string at d.pos (which is '"'). The result
// aliases d.data when the string has no escapes.
func (d *decoder) rawStr(field string) ([]byte, error) {
	start := d.pos + 1
	i := start
	ascii := true
	for ; i < len(d.data); i++ {
		c := d.data[i]
		if c == '"' {
			seg := d.data[start:i]
			if !ascii && !utf8.Valid(seg) {
				d.pos = start
				return nil, d.syntax(field, "invalid UTF-8 in string")
			}
			d.pos = i + 1
			return seg, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			d.pos = i
			return nil, d.syntax(field, "control character %U in string (escape it)", rune(c))
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	return d.strSlow(field, start, i)
}

// strSlow decodes a string with escapes; data[start:i] is plain text.
func (d *decoder) strSlow(field string, start, i int) ([]byte, error) {
	buf := make([]byte, 0, i-start+16)
	buf = append(buf, d.data[start:i]...)
	if !utf8.Valid(buf) {
		d.pos = start
		return nil, d.syntax(field, "invalid UTF-8 in string")
	}
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return buf, nil
		case c == '\\':
			if i+1 >= len(d.data) {
				d.pos = i
				return nil, d.syntax(field, "unterminated string")
			}
			e := d.data[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := hex4(d.data, i)
				if !ok {
					d.pos = i - 2
					return nil, d.syntax(field, "invalid \\u escape")
				}
				i += 4
				if utf16IsSurrogate(r) {
					r2, ok := rune(0), false
					if r < 0xDC00 && i+6 <= len(d.data) && d.data[i] == '\\' && d.data[i+1] == 'u' {
						r2, ok = hex4(d.data, i+2)
						ok = ok && r2 >= 0xDC00 && r2 <= 0xDFFF
					}
					if !ok {
						d.pos = i - 6
						return nil, d.syntax(field, "unpaired surrogate in \\u escape")
					}
					i += 6
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
				}
				buf = utf8.AppendRune(buf, r)
			default:
				d.pos = i - 2
				return nil, d.syntax(field, "invalid escape %q", "\\"+string(rune(e)))
			}
		case c < 0x20:
			d.pos = i
			return nil, d.syntax(field, "control character %U in string (escape it)", rune(c))
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				d.pos = i
				return nil, d.syntax(field, "invalid UTF-8 in string")
			}
			buf = append(buf, d.data[i:i+size]...)
			i += size
		}
	}
	d.pos = len(d.data)
	return nil, d.syntax(field, "unterminated string")
}

func utf16IsSurrogate(r rune) bool { return r >= 0xD800 && r <= 0xDFFF }

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// quoteShort quotes s for an error message, cut to 64 characters.
func quoteShort(s string) string {
	if t := shorten(s); len(t) < len(s) {
		return strconv.Quote(t) + "..."
	}
	return strconv.Quote(s)
}

// shorten cuts s to 64 characters.
func shorten(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i]
		}
		n++
	}
	return s
}

func validateEvent(ev *relay.Event, seen uint16, knownType func(string) bool) error {
	for _, f := range [...]struct {
		bit  uint16
		name string
	}{{fID, "id"}, {fWorkspace, "workspace"}, {fUser, "user"}, {fType, "type"}} {
		if seen&f.bit == 0 {
			return &FieldError{Field: f.name, Reason: reasonMissingField}
		}
	}
	if err := checkID("id", ev.ID); err != nil {
		return err
	}
	if err := checkID("workspace", ev.Workspace); err != nil {
		return err
	}
	if err := checkID("user", ev.User); err != nil {
		return err
	}
	if knownType != nil {
		if !knownType(ev.Type) {
			return &FieldError{Field: "type", Reason: "unknown notification type " + quoteShort(ev.Type)}
		}
	} else if err := checkName("type", ev.Type); err != nil {
		return err
	}
	if err := checkText("title", ev.Title, relay.MaxTitleLen, false); err != nil {
		return err
	}
	if err := checkText("body", ev.Body, relay.MaxBodyLen, true); err != nil {
		return err
	}
	for k, v := range ev.Data {
		if reason := lenFault(k, relay.MaxDataKeyLen); reason != "" {
			return &FieldError{Field: "data", Reason: "key " + quoteShort(k) + " " + reason}
		}
		if r, ok := firstNotPrintable(k); ok {
			return &FieldError{Field: "data", Reason: fmt.Sprintf("key %s contains non-printable character %U", quoteShort(k), r)}
		}
		if utf8.RuneCountInString(v) > relay.MaxDataValueLen {
			return &FieldError{Field: "data", Reason: fmt.Sprintf("value of key %s is longer than %d characters", quoteShort(k), relay.MaxDataValueLen)}
		}
		for _, r := range v {
			if r == 0 {
				return &FieldError{Field: "data", Reason: fmt.Sprintf("value of key %s contains NUL", quoteShort(k))}
			}
		}
	}
	for i, a := range ev.Actions {
		if reason := lenFault(a, relay.MaxActionLen); reason != "" {
			return &FieldError{Field: "actions", Reason: fmt.Sprintf("item %d %s", i, reason)}
		}
		if r, ok := firstNotPrintable(a); ok {
			return &FieldError{Field: "actions", Reason: fmt.Sprintf("item %d contains non-printable character %U", i, r)}
		}
		for _, b := range ev.Actions[:i] {
			if a == b {
				return &FieldError{Field: "actions", Reason: "duplicate action " + quoteShort(a)}
			}
		}
	}
	if seen&fPriority != 0 && !ev.Priority.Valid() {
		return &FieldError{Field: "priority", Reason: `must be "high" or "normal", got ` + quoteShort(string(ev.Priority))}
	}
	if !ev.OccurredAt.IsZero() && !ev.ExpiresAt.IsZero() && ev.ExpiresAt.Before(ev.OccurredAt) {
		return &FieldError{Field: "expires_at", Reason: "before occurred_at"}
	}
	return nil
}

// checkID validates a workspace, user, device or event id (the grammar
// of relay.CheckID).
func checkID(field, s string) error {
	if err := relay.CheckID(s); err != nil {
		return &FieldError{Field: field, Reason: err.Error()}
	}
	return nil
}

// checkName validates an identifier: 1 to relay.MaxIDLen printable
// characters.
func checkName(field, s string) error {
	if reason := lenFault(s, relay.MaxIDLen); reason != "" {
		return &FieldError{Field: field, Reason: reason}
	}
	if r, ok := firstNotPrintable(s); ok {
		return &FieldError{Field: field, Reason: fmt.Sprintf("contains non-printable character %U", r)}
	}
	return nil
}

// lenFault says what is wrong with the length of s, at most max
// characters and not empty ("" if nothing): the caller names it, so a
// valid value costs no label.
func lenFault(s string, max int) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > max && utf8.RuneCountInString(s) > max {
		return fmt.Sprintf("is longer than %d characters", max)
	}
	return ""
}

// checkText bounds a visible text; it may hold no control characters
// except, when multiline, newlines and tabs.
func checkText(field, s string, max int, multiline bool) error {
	if len(s) > max && utf8.RuneCountInString(s) > max {
		return &FieldError{Field: field, Reason: fmt.Sprintf("is longer than %d characters", max)}
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\r' || r == '\t')) {
			return &FieldError{Field: field, Reason: fmt.Sprintf("contains control character %U", r)}
		}
	}
	return nil
}

func firstNotPrintable(s string) (rune, bool) {
	for _, r := range s {
		if r < utf8.RuneSelf {
			if r < 0x20 || r == 0x7f {
				return r, true
			}
			continue
		}
		if !unicode.IsPrint(r) {
			return r, true
		}
	}
	return 0, false
}
