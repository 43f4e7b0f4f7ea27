package abi

import (
	"bytes"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// DecodeInput decodes the JSON document b into in, which it resets first.
// Unknown fields are skipped (a newer host may send more context); a known
// field of the wrong type, malformed JSON or trailing data is an error that
// names the field. Strings are copied, so b may be reused afterwards;
// invalid UTF-8 and lone surrogates become U+FFFD. null leaves a field at
// its zero value.
func DecodeInput(b []byte, in *Input) error {
	var dec InputDecoder
	return dec.Decode(b, in)
}

// An InputDecoder decodes one plugin's inputs, one after another, as
// DecodeInput does. It remembers the last config it validated: a plugin's
// config only changes with its manifest, so an unchanged config is compared
// rather than parsed again (in a guest, validating a 200-byte config costs
// more than the rest of a typical input). The zero value is ready to use;
// it is not safe for concurrent use.
type InputDecoder struct {
	config []byte // the last config seen, valid JSON
}

// Decode decodes the JSON document b into in, which it resets first.
func (dec *InputDecoder) Decode(b []byte, in *Input) error {
	*in = Input{}
	d := &decoder{b: clone(b)}
	if err := d.object("", func(key []byte) error {
		switch keyID(key) {
		case 0x36169: // abi
			if string(key) != "abi" {
				break
			}
			return d.int(&in.ABI, "abi")
		case 0x36e77: // now
			if string(key) != "now" {
				break
			}
			return d.time(&in.Now, "now")
		case 0x56574: // event
			if string(key) != "event" {
				break
			}
			return d.event(&in.Event)
		case 0x86265: // baseline
			if string(key) != "baseline" {
				break
			}
			bl := &in.Baseline
			return d.object("baseline", func(key []byte) error {
				switch keyID(key) {
				case 0x77674: // verdict
					if string(key) != "verdict" {
						break
					}
					return d.str(&bl.Verdict, "baseline.verdict")
				case 0x6726e: // reason
					if string(key) != "reason" {
						break
					}
					return d.str(&bl.Reason, "baseline.reason")
				case 0x86564: // enforced
					if string(key) != "enforced" {
						break
					}
					return d.bool(&bl.Enforced, "baseline.enforced")
				}
				return d.skip("baseline")
			})
		case 0x97765: // workspace
			if string(key) != "workspace" {
				break
			}
			return d.object("workspace", func(key []byte) error {
				if string(key) == "settings" {
					return d.stringMap(&in.Workspace.Settings, "workspace.settings")
				}
				return d.skip("workspace")
			})
		case 0x47572: // user
			if string(key) != "user" {
				break
			}
			return d.user(&in.User)
		case 0x57072: // prior
			if string(key) != "prior" {
				break
			}
			return array(d, &in.Prior, "prior", func(i int) error {
				var p Prior
				err := d.object("prior", func(key []byte) error {
					switch keyID(key) {
					case 0x6706e: // plugin
						if string(key) != "plugin" {
							break
						}
						return d.str(&p.Plugin, "prior.plugin")
					case 0x77674: // verdict
						if string(key) != "verdict" {
							break
						}
						return d.str(&p.Verdict, "prior.verdict")
					case 0x6726e: // reason
						if string(key) != "reason" {
							break
						}
						return d.str(&p.Reason, "prior.reason")
					}
					return d.skip("prior")
				})
				in.Prior = append(in.Prior, p)
				return err
			})
		case 0x66367: // config
			if string(key) != "config" {
				break
			}
			if c := dec.config; len(c) > 0 && d.peek() == c[0] && bytes.HasPrefix(d.b[d.i:], c) {
				// The same bytes as a config already validated: the
				// value ends where they do if a delimiter follows.
				if end := d.i + len(c); end < len(d.b) && (d.b[end] == ',' || d.b[end] == '}' || d.b[end] <= ' ') {
					in.Config, d.i = d.b[d.i:end:end], end
					return nil
				}
			}
			if err := d.raw(&in.Config, "config"); err != nil {
				return err
			}
			dec.config = append(dec.config[:0], in.Config...)
			return nil
		}
		return d.skip(string(key))
	}); err != nil {
		return err
	}
	return d.end()
}

func (d *decoder) event(e *Event) error {
	return d.object("event", func(key []byte) error {
		switch keyID(key) {
		case 0x26964: // id
			if string(key) != "id" {
				break
			}
			return d.str(&e.ID, "event.id")
		case 0x97765: // workspace
			if string(key) != "workspace" {
				break
			}
			return d.str(&e.Workspace, "event.workspace")
		case 0x47572: // user
			if string(key) != "user" {
				break
			}
			return d.str(&e.User, "event.user")
		case 0x47465: // type
			if string(key) != "type" {
				break
			}
			return d.str(&e.Type, "event.type")
		case 0x57465: // title
			if string(key) != "title" {
				break
			}
			return d.str(&e.Title, "event.title")
		case 0x46279: // body
			if string(key) != "body" {
				break
			}
			return d.str(&e.Body, "event.body")
		case 0x46461: // data
			if string(key) != "data" {
				break
			}
			return d.stringMap(&e.Data, "event.data")
		case 0x76173: // actions
			if string(key) != "actions" {
				break
			}
			return d.strings(&e.Actions, "event.actions")
		case 0x87079: // priority
			if string(key) != "priority" {
				break
			}
			return d.str(&e.Priority, "event.priority")
		case 0xb6f74: // occurred_at
			if string(key) != "occurred_at" {
				break
			}
			return d.time(&e.OccurredAt, "event.occurred_at")
		case 0xa6574: // expires_at
			if string(key) != "expires_at" {
				break
			}
			return d.time(&e.ExpiresAt, "event.expires_at")
		}
		return d.skip("event")
	})
}

func (d *decoder) user(u *User) error {
	return d.object("user", func(key []byte) error {
		switch keyID(key) {
		case 0xb7073: // preferences
			if string(key) != "preferences" {
				break
			}
			if d.null() {
				return nil
			}
			u.Preferences = map[string]bool{}
			return d.object("user.preferences", func(key []byte) error {
				k := alias(key)
				var v bool
				err := d.bool(&v, "user.preferences")
				u.Preferences[k] = v
				return err
			})
		case 0x76473: // devices
			if string(key) != "devices" {
				break
			}
			return array(d, &u.Devices, "user.devices", func(i int) error {
				var dev Device
				err := d.object("user.devices", func(key []byte) error {
					switch keyID(key) {
					case 0x26964: // id
						if string(key) != "id" {
							break
						}
						return d.str(&dev.ID, "user.devices.id")
					case 0x8706d: // platform
						if string(key) != "platform" {
							break
						}
						return d.str(&dev.Platform, "user.devices.platform")
					case 0x36170: // app
						if string(key) != "app" {
							break
						}
						return d.str(&dev.App, "user.devices.app")
					}
					return d.skip("user.devices")
				})
				u.Devices = append(u.Devices, dev)
				return err
			})
		case 0x67274: // recent
			if string(key) != "recent" {
				break
			}
			if d.null() {
				return nil
			}
			u.Recent = map[string]Recent{}
			return d.object("user.recent", func(key []byte) error {
				k := alias(key)
				var r Recent
				err := d.object("user.recent", func(key []byte) error {
					switch keyID(key) {
					case 0x2316d: // 1m
						if string(key) != "1m" {
							break
						}
						return d.int(&r.M1, "user.recent.1m")
					case 0x3316d: // 10m
						if string(key) != "10m" {
							break
						}
						return d.int(&r.M10, "user.recent.10m")
					case 0x23168: // 1h
						if string(key) != "1h" {
							break
						}
						return d.int(&r.H1, "user.recent.1h")
					}
					return d.skip("user.recent")
				})
				u.Recent[k] = r
				return err
			})
		}
		return d.skip("user")
	})
}

// DecodeOutput decodes the JSON document b into out, which it resets first,
// and validates it (Output.Validate). Unlike DecodeInput it is strict: an
// unknown field, at the top level or in "set", is an error naming the field.
func DecodeOutput(b []byte, out *Output) error {
	*out = Output{}
	if len(b) > MaxOutputBytes {
		return fieldErr("", "output is %d bytes, max %d", len(b), MaxOutputBytes)
	}
	d := &decoder{b: clone(b)}
	if err := d.object("", func(key []byte) error {
		switch keyID(key) {
		case 0x77674: // verdict
			if string(key) != "verdict" {
				break
			}
			return d.str(&out.Verdict, "verdict")
		case 0x6726e: // reason
			if string(key) != "reason" {
				break
			}
			return d.str(&out.Reason, "reason")
		case 0xb646c: // defer_until
			if string(key) != "defer_until" {
				break
			}
			return d.time(&out.DeferUntil, "defer_until")
		case 0x37374: // set
			if string(key) != "set" {
				break
			}
			if d.null() {
				return nil
			}
			s := &Set{}
			out.Set = s
			return d.object("set", func(key []byte) error {
				switch keyID(key) {
				case 0x57465: // title
					if string(key) != "title" {
						break
					}
					return d.optStr(&s.Title, "set.title")
				case 0x46279: // body
					if string(key) != "body" {
						break
					}
					return d.optStr(&s.Body, "set.body")
				case 0x87079: // priority
					if string(key) != "priority" {
						break
					}
					return d.optStr(&s.Priority, "set.priority")
				case 0x12696c: // interruption_level
					if string(key) != "interruption_level" {
						break
					}
					return d.optStr(&s.InterruptionLevel, "set.interruption_level")
				case 0x57364: // sound
					if string(key) != "sound" {
						break
					}
					return d.optStr(&s.Sound, "set.sound")
				case 0x86379: // category
					if string(key) != "category" {
						break
					}
					return d.optStr(&s.Category, "set.category")
				case 0x97464: // thread_id
					if string(key) != "thread_id" {
						break
					}
					return d.optStr(&s.ThreadID, "set.thread_id")
				case 0x46461: // data
					if string(key) != "data" {
						break
					}
					return d.stringMap(&s.Data, "set.data")
				}
				return fieldErr("set", "field %q is not settable (settable: title, body, priority, interruption_level, sound, category, thread_id, data)", truncate(string(key)))
			})
		case 0x76473: // devices
			if string(key) != "devices" {
				break
			}
			return d.strings(&out.Devices, "devices")
		case 0x66e65: // notice
			if string(key) != "notice" {
				break
			}
			if d.null() {
				return nil
			}
			n := &Notice{}
			out.Notice = n
			return d.object("notice", func(key []byte) error {
				switch keyID(key) {
				case 0x57465: // title
					if string(key) != "title" {
						break
					}
					return d.str(&n.Title, "notice.title")
				case 0x46279: // body
					if string(key) != "body" {
						break
					}
					return d.str(&n.Body, "notice.body")
				case 0x46461: // data
					if string(key) != "data" {
						break
					}
					return d.stringMap(&n.Data, "notice.data")
				}
				return fieldErr("notice", "unknown field %q (want title, body, data)", truncate(string(key)))
			})
		case 0xb6965: // ignore_type
			if string(key) != "ignore_type" {
				break
			}
			return d.bool(&out.IgnoreType, "ignore_type")
		}
		return fieldErr("", "unknown field %q (want verdict, reason, defer_until, set, devices, notice, ignore_type)", truncate(string(key)))
	}); err != nil {
		return err
	}
	if err := d.end(); err != nil {
		return err
	}
	return out.Validate()
}

// keyID is a cheap switch key for an object key: its length, first and
// last byte. Switching on it, then confirming with one string comparison,
// avoids the binary search of runtime string comparisons a string switch
// compiles to, which costs many branches under wazero's deadline checks.
func keyID(key []byte) uint32 {
	if len(key) == 0 || len(key) > 0xffff {
		return 0
	}
	return uint32(len(key))<<16 | uint32(key[0])<<8 | uint32(key[len(key)-1])
}

// decoder is a cursor over one JSON document. b is owned by the decoder
// and never written, so strings may alias it.
type decoder struct {
	b     []byte
	i     int
	depth int
}

func clone(b []byte) []byte {
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

// alias returns b as a string without copying. b must never change.
func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (d *decoder) syntax(field, format string, args ...any) error {
	if field == "" {
		field = "(document)"
	}
	e := fieldErr(field, format, args...).(*FieldError)
	e.Reason += " at offset " + strconv.Itoa(d.i)
	return e
}

func (d *decoder) ws() {
	if d.i < len(d.b) && d.b[d.i] > ' ' {
		return // compact JSON: no loop, which matters under wazero's deadline checks
	}
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *decoder) end() error {
	if d.peek() != 0 || d.i < len(d.b) {
		return d.syntax("", "trailing data after the JSON value")
	}
	return nil
}

// null consumes a JSON null if one comes next.
func (d *decoder) null() bool {
	if d.peek() == 'n' && len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

func describe(c byte) string {
	switch {
	case c == 0:
		return "end of input"
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "number"
	}
	return strconv.QuoteRune(rune(c))
}

// object parses an object (or null), calling field for each key with the
// cursor on its value. field must consume the value.
func (d *decoder) object(name string, field func(key []byte) error) error {
	if c := d.peek(); c != '{' {
		if c == 'n' && d.null() {
			return nil
		}
		return d.syntax(name, "expected object, found %s", describe(c))
	}
	if d.depth++; d.depth > MaxDepth {
		return d.syntax(name, "nesting deeper than %d", MaxDepth)
	}
	d.i++
	if d.peek() == '}' {
		d.i++
		d.depth--
		return nil
	}
	for {
		if c := d.peek(); c != '"' {
			return d.syntax(name, "expected object key, found %s", describe(c))
		}
		var key []byte
		b := d.b
		start := d.i + 1
		if i := scanSafe(b, start); i+1 < len(b) && b[i] == '"' && b[i+1] == ':' {
			key, d.i = b[start:i:i], i+2 // fast path: plain key, compact JSON
		} else {
			var err error
			if key, err = d.strBytes(name); err != nil {
				return err
			}
			if c := d.peek(); c != ':' {
				return d.syntax(name, "expected ':' after object key, found %s", describe(c))
			}
			d.i++
		}
		if err := field(key); err != nil {
			return err
		}
		switch c := d.peek(); c {
		case ',':
			d.i++
		case '}':
			d.i++
			d.depth--
			return nil
		default:
			return d.syntax(name, "expected ',' or '}' in object, found %s", describe(c))
		}
	}
}

// array parses an array (or null into a nil slice), calling elem for each
// element with the cursor on it. A non-null array leaves *dst non-nil.
func array[T any](d *decoder, dst *[]T, name string, elem func(i int) error) error {
	if d.null() {
		return nil
	}
	if c := d.peek(); c != '[' {
		return d.syntax(name, "expected array, found %s", describe(c))
	}
	if d.depth++; d.depth > MaxDepth {
		return d.syntax(name, "nesting deeper than %d", MaxDepth)
	}
	d.i++
	*dst = make([]T, 0, 4)
	if d.peek() == ']' {
		d.i++
		d.depth--
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		switch c := d.peek(); c {
		case ',':
			d.i++
		case ']':
			d.i++
			d.depth--
			return nil
		default:
			return d.syntax(name, "expected ',' or ']' in array, found %s", describe(c))
		}
	}
}

func (d *decoder) strings(dst *[]string, name string) error {
	return array(d, dst, name, func(int) error {
		var s string
		err := d.str(&s, name)
		*dst = append(*dst, s)
		return err
	})
}

func (d *decoder) stringMap(dst *map[string]string, name string) error {
	if d.null() {
		*dst = nil
		return nil
	}
	m := map[string]string{}
	*dst = m
	return d.object(name, func(key []byte) error {
		k := alias(key)
		var v string
		err := d.str(&v, name)
		m[k] = v
		return err
	})
}

func (d *decoder) str(dst *string, name string) error {
	c := d.peek()
	if c == '"' {
		// Fast path, inline: no escapes, all ASCII.
		b := d.b
		start := d.i + 1
		if i := scanSafe(b, start); i < len(b) && b[i] == '"' {
			d.i = i + 1
			*dst = alias(b[start:i])
			return nil
		}
		s, err := d.strBytes(name)
		if err != nil {
			return err
		}
		*dst = alias(s)
		return nil
	}
	if c == 'n' && d.null() {
		*dst = ""
		return nil
	}
	return d.syntax(name, "expected string, found %s", describe(c))
}

func (d *decoder) optStr(dst **string, name string) error {
	if d.null() {
		*dst = nil
		return nil
	}
	var s string
	if err := d.str(&s, name); err != nil {
		return err
	}
	*dst = &s
	return nil
}

func (d *decoder) bool(dst *bool, name string) error {
	if d.null() {
		*dst = false
		return nil
	}
	rest := d.b[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*dst = true
		d.i += 4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*dst = false
		d.i += 5
	default:
		return d.syntax(name, "expected boolean, found %s", describe(d.peek()))
	}
	return nil
}

// int parses a JSON number that must be an integer fitting an int32 (a
// number with a fraction or exponent is accepted if its value is integral).
func (d *decoder) int(dst *int, name string) error {
	if d.null() {
		*dst = 0
		return nil
	}
	start := d.i
	isInt, err := d.number(name)
	if err != nil {
		return err
	}
	digits := d.b[start:d.i]
	if isInt && len(digits) <= 9 && digits[0] != '-' {
		n := 0
		for _, c := range digits {
			n = n*10 + int(c-'0')
		}
		*dst = n
		return nil
	}
	lit := string(digits)
	if isInt {
		n, err := strconv.ParseInt(lit, 10, 32)
		if err != nil {
			return fieldErr(name, "number %s out of range", truncate(lit))
		}
		*dst = int(n)
		return nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return fieldErr(name, "number %s is not an integer", truncate(lit))
	}
	*dst = int(f)
	return nil
}

// number consumes a JSON number and reports whether it had neither fraction
// nor exponent.
func (d *decoder) number(name string) (isInt bool, err error) {
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		return false, d.syntax(name, "expected number, found %s", describe(c))
	}
	b, i := d.b, d.i
	if b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	first := i
	n := digits()
	if n == 0 || (n > 1 && b[first] == '0') {
		d.i = i
		return false, d.syntax(name, "malformed number")
	}
	isInt = true
	if i < len(b) && b[i] == '.' {
		i++
		isInt = false
		if digits() == 0 {
			d.i = i
			return false, d.syntax(name, "malformed number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		isInt = false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			d.i = i
			return false, d.syntax(name, "malformed number")
		}
	}
	d.i = i
	return isInt, nil
}

// time parses an RFC 3339 string (or null or "" for the zero time) into UTC.
func (d *decoder) time(dst *time.Time, name string) error {
	if d.null() {
		*dst = time.Time{}
		return nil
	}
	if c := d.peek(); c != '"' {
		return d.syntax(name, "expected RFC 3339 time string, found %s", describe(c))
	}
	b, err := d.strBytes(name)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		*dst = time.Time{}
		return nil
	}
	if t, ok := parseUTC(b); ok {
		*dst = t
		return nil
	}
	t, err := time.Parse(time.RFC3339, string(b))
	if err != nil {
		return fieldErr(name, "invalid RFC 3339 time %q", truncate(string(b)))
	}
	*dst = t.UTC()
	return nil
}

// parseUTC is the fast path for what AppendInput writes:
// "YYYY-MM-DDTHH:MM:SS[.fraction]Z". It reports false for anything else,
// which time.Parse then handles.
func parseUTC(b []byte) (time.Time, bool) {
	n := len(b)
	if n < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[n-1] != 'Z' {
		return time.Time{}, false
	}
	// All 14 digits checked without a loop: v+6 <= 15 iff 0 <= v <= 9.
	v := func(i int) uint16 { return uint16(b[i]) - '0' + 6 }
	if (v(0)|v(1)|v(2)|v(3)|v(5)|v(6)|v(8)|v(9)|v(11)|v(12)|v(14)|v(15)|v(17)|v(18))&^0xf != 0 {
		return time.Time{}, false
	}
	dd := func(i int) int { return int(b[i]-'0')*10 + int(b[i+1]-'0') }
	year, month, day := dd(0)*100+dd(2), dd(5), dd(8)
	hour, minute, sec := dd(11), dd(14), dd(17)
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if n > 20 {
		frac := b[19 : n-1]
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' {
			return time.Time{}, false
		}
		scale := 100_000_000
		for _, c := range frac[1:] {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			nsec += int(c-'0') * scale
			scale /= 10
		}
	}
	// Days from civil (H. Hinnant), branch-light on purpose.
	y := year
	if month <= 2 {
		y--
	}
	if y < 0 {
		y -= 399 // floor division below
	}
	era := y / 400
	if y < 0 {
		y += 399
	}
	yoe := y - era*400
	mp := (month + 9) % 12
	doy := (153*mp+2)/5 + day - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	days := era*146097 + doe - 719468
	unix := int64(days)*86400 + int64(hour*3600+minute*60+sec)
	return time.Unix(unix, int64(nsec)).UTC(), true
}

func daysIn(month, year int) int {
	if month == 2 {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 30 + (month+month/8)%2
}

// raw captures the next value verbatim (nil for null), sharing d.b.
func (d *decoder) raw(dst *[]byte, name string) error {
	if d.null() {
		*dst = nil
		return nil
	}
	d.ws()
	start := d.i
	if err := d.skip(name); err != nil {
		return err
	}
	*dst = d.b[start:d.i:d.i]
	return nil
}

// skip consumes and validates any JSON value.
func (d *decoder) skip(name string) error {
	switch c := d.peek(); {
	case c == '{':
		return d.object(name, func([]byte) error { return d.skip(name) })
	case c == '[':
		var none []struct{}
		return array(d, &none, name, func(int) error { return d.skip(name) })
	case c == '"':
		_, err := d.strBytes(name)
		return err
	case c == 't' || c == 'f':
		var b bool
		return d.bool(&b, name)
	case c == 'n':
		if d.null() {
			return nil
		}
		return d.syntax(name, "invalid literal")
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := d.number(name)
		return err
	default:
		return d.syntax(name, "expected a JSON value, found %s", describe(c))
	}
}

// strBytes consumes a string starting at the cursor ('"') and returns its
// unescaped bytes: a view of d.b when no unescaping or repair was needed
// (the common case), else a fresh slice. It never writes d.b.
func (d *decoder) strBytes(name string) ([]byte, error) {
	b := d.b
	i := d.i + 1
	start := i
	i = scanSafe(b, i)
	if i < len(b) && b[i] == '"' {
		d.i = i + 1
		return b[start:i:i], nil
	}
	// Slow path: escapes, non-ASCII or errors.
	out := make([]byte, i-start, len(b)-start)
	copy(out, b[start:i])
	for {
		if i >= len(b) {
			d.i = i
			return nil, d.syntax(name, "unterminated string")
		}
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return out, nil
		case c < 0x20:
			d.i = i
			return nil, d.syntax(name, "control character in string")
		case c < utf8.RuneSelf && c != '\\':
			out = append(out, c)
			i++
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				out = append(out, "\ufffd"...)
			} else {
				out = append(out, b[i:i+size]...)
			}
			i += size
		default: // backslash
			if i+1 >= len(b) {
				d.i = i
				return nil, d.syntax(name, "unterminated string")
			}
			i++
			switch e := b[i]; e {
			case '"', '\\', '/':
				out = append(out, e)
				i++
			case 'b':
				out = append(out, '\b')
				i++
			case 'f':
				out = append(out, '\f')
				i++
			case 'n':
				out = append(out, '\n')
				i++
			case 'r':
				out = append(out, '\r')
				i++
			case 't':
				out = append(out, '\t')
				i++
			case 'u':
				r, ok := hex4(b, i+1)
				if !ok {
					d.i = i
					return nil, d.syntax(name, "invalid \\u escape")
				}
				i += 5
				if utf16.IsSurrogate(r) {
					r2, ok2 := rune(0), false
					if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						r2, ok2 = hex4(b, i+2)
					}
					if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				d.i = i
				return nil, d.syntax(name, "invalid escape %s", strconv.QuoteRune(rune(e)))
			}
		}
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// scanSafe returns the index of the first byte at or after i that is not
// safe[] (a quote, a backslash, a control or non-ASCII byte), or len(b). It
// tests eight bytes per iteration: under wazero's deadline switch every
// loop iteration of guest code costs a call, so fewer iterations matter
// more than fewer instructions.
func scanSafe(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if special(load64(b, i)) != 0 {
			break
		}
	}
	for i < len(b) && safe[b[i]] {
		i++
	}
	return i
}

// load64 reads b[i:i+8] as a uint64 in native byte order (one unaligned
// load on wasm, amd64 and arm64). The caller checks i+8 <= len(b).
func load64(b []byte, i int) uint64 {
	_ = b[i+7]
	return *(*uint64)(unsafe.Pointer(&b[i]))
}

// special is non-zero iff one of the 8 bytes in x is '"', '\', below 0x20
// or at least 0x80. Byte order does not matter.
func special(x uint64) uint64 {
	q := x ^ (lsb * '"')
	s := x ^ (lsb * '\\')
	return ((x-lsb*0x20)&^x | (q-lsb)&^q | (s-lsb)&^s | x) & msb
}

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
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
