package abi

import (
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeInput decodes the JSON document b into in, which it resets first.
// Unknown fields are skipped (a newer host may send more context); a known
// field of the wrong type, malformed JSON or trailing data is an error that
// names the field. Strings are copied, so b may be reused afterwards;
// invalid UTF-8 and lone surrogates become U+FFFD. null leaves a field at
// its zero value.
func DecodeInput(b []byte, in *Input) error {
	*in = Input{}
	d := &decoder{b: b}
	if err := d.object("", func(key []byte) error {
		switch string(key) {
		case "abi":
			return d.int(&in.ABI, "abi")
		case "now":
			return d.time(&in.Now, "now")
		case "event":
			return d.event(&in.Event)
		case "baseline":
			bl := &in.Baseline
			return d.object("baseline", func(key []byte) error {
				switch string(key) {
				case "verdict":
					return d.str(&bl.Verdict, "baseline.verdict")
				case "reason":
					return d.str(&bl.Reason, "baseline.reason")
				case "enforced":
					return d.bool(&bl.Enforced, "baseline.enforced")
				}
				return d.skip("baseline")
			})
		case "workspace":
			return d.object("workspace", func(key []byte) error {
				if string(key) == "settings" {
					return d.stringMap(&in.Workspace.Settings, "workspace.settings")
				}
				return d.skip("workspace")
			})
		case "user":
			return d.user(&in.User)
		case "prior":
			return array(d, &in.Prior, "prior", func(i int) error {
				var p Prior
				err := d.object("prior", func(key []byte) error {
					switch string(key) {
					case "plugin":
						return d.str(&p.Plugin, "prior.plugin")
					case "verdict":
						return d.str(&p.Verdict, "prior.verdict")
					case "reason":
						return d.str(&p.Reason, "prior.reason")
					}
					return d.skip("prior")
				})
				in.Prior = append(in.Prior, p)
				return err
			})
		case "config":
			return d.raw(&in.Config, "config")
		}
		return d.skip(string(key))
	}); err != nil {
		return err
	}
	return d.end()
}

func (d *decoder) event(e *Event) error {
	return d.object("event", func(key []byte) error {
		switch string(key) {
		case "id":
			return d.str(&e.ID, "event.id")
		case "workspace":
			return d.str(&e.Workspace, "event.workspace")
		case "user":
			return d.str(&e.User, "event.user")
		case "type":
			return d.str(&e.Type, "event.type")
		case "title":
			return d.str(&e.Title, "event.title")
		case "body":
			return d.str(&e.Body, "event.body")
		case "data":
			return d.stringMap(&e.Data, "event.data")
		case "actions":
			return d.strings(&e.Actions, "event.actions")
		case "priority":
			return d.str(&e.Priority, "event.priority")
		case "occurred_at":
			return d.time(&e.OccurredAt, "event.occurred_at")
		case "expires_at":
			return d.time(&e.ExpiresAt, "event.expires_at")
		}
		return d.skip("event")
	})
}

func (d *decoder) user(u *User) error {
	return d.object("user", func(key []byte) error {
		switch string(key) {
		case "preferences":
			if d.null() {
				return nil
			}
			u.Preferences = map[string]bool{}
			return d.object("user.preferences", func(key []byte) error {
				k := string(key)
				var v bool
				err := d.bool(&v, "user.preferences")
				u.Preferences[k] = v
				return err
			})
		case "devices":
			return array(d, &u.Devices, "user.devices", func(i int) error {
				var dev Device
				err := d.object("user.devices", func(key []byte) error {
					switch string(key) {
					case "id":
						return d.str(&dev.ID, "user.devices.id")
					case "platform":
						return d.str(&dev.Platform, "user.devices.platform")
					case "app":
						return d.str(&dev.App, "user.devices.app")
					}
					return d.skip("user.devices")
				})
				u.Devices = append(u.Devices, dev)
				return err
			})
		case "recent":
			if d.null() {
				return nil
			}
			u.Recent = map[string]Recent{}
			return d.object("user.recent", func(key []byte) error {
				k := string(key)
				var r Recent
				err := d.object("user.recent", func(key []byte) error {
					switch string(key) {
					case "1m":
						return d.int(&r.M1, "user.recent.1m")
					case "10m":
						return d.int(&r.M10, "user.recent.10m")
					case "1h":
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
	d := &decoder{b: b}
	if err := d.object("", func(key []byte) error {
		switch string(key) {
		case "verdict":
			return d.str(&out.Verdict, "verdict")
		case "reason":
			return d.str(&out.Reason, "reason")
		case "defer_until":
			return d.time(&out.DeferUntil, "defer_until")
		case "set":
			if d.null() {
				return nil
			}
			s := &Set{}
			out.Set = s
			return d.object("set", func(key []byte) error {
				switch string(key) {
				case "title":
					return d.optStr(&s.Title, "set.title")
				case "body":
					return d.optStr(&s.Body, "set.body")
				case "priority":
					return d.optStr(&s.Priority, "set.priority")
				case "interruption_level":
					return d.optStr(&s.InterruptionLevel, "set.interruption_level")
				case "sound":
					return d.optStr(&s.Sound, "set.sound")
				case "category":
					return d.optStr(&s.Category, "set.category")
				case "thread_id":
					return d.optStr(&s.ThreadID, "set.thread_id")
				case "data":
					return d.stringMap(&s.Data, "set.data")
				}
				return fieldErr("set", "field %q is not settable (settable: title, body, priority, interruption_level, sound, category, thread_id, data)", truncate(string(key)))
			})
		case "devices":
			return d.strings(&out.Devices, "devices")
		}
		return fieldErr("", "unknown field %q (want verdict, reason, defer_until, set, devices)", truncate(string(key)))
	}); err != nil {
		return err
	}
	if err := d.end(); err != nil {
		return err
	}
	return out.Validate()
}

// decoder is a cursor over one JSON document.
type decoder struct {
	b       []byte
	i       int
	depth   int
	scratch []byte // reused for unescaping
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
	if d.null() {
		return nil
	}
	if c := d.peek(); c != '{' {
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
		key, err := d.strBytes(name)
		if err != nil {
			return err
		}
		if c := d.peek(); c != ':' {
			return d.syntax(name, "expected ':' after object key, found %s", describe(c))
		}
		d.i++
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
		k := string(key)
		var v string
		err := d.str(&v, name)
		m[k] = v
		return err
	})
}

func (d *decoder) str(dst *string, name string) error {
	if d.null() {
		*dst = ""
		return nil
	}
	if c := d.peek(); c != '"' {
		return d.syntax(name, "expected string, found %s", describe(c))
	}
	b, err := d.strBytes(name)
	if err != nil {
		return err
	}
	*dst = string(b)
	return nil
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
	lit := string(d.b[start:d.i])
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
	t, err := time.Parse(time.RFC3339, string(b))
	if err != nil {
		return fieldErr(name, "invalid RFC 3339 time %q", truncate(string(b)))
	}
	*dst = t.UTC()
	return nil
}

// raw captures the next value verbatim into a fresh slice (nil for null).
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
	*dst = append([]byte(nil), d.b[start:d.i]...)
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
// unescaped bytes, valid until the next call: a view of the input when no
// unescaping or repair was needed, else the decoder's scratch buffer.
func (d *decoder) strBytes(name string) ([]byte, error) {
	b := d.b
	i := d.i + 1
	start := i
	for i < len(b) && safe[b[i]] {
		i++
	}
	if i < len(b) && b[i] == '"' {
		d.i = i + 1
		return b[start:i], nil
	}
	// Slow path: escapes, non-ASCII or errors.
	out := append(d.scratch[:0], b[start:i]...)
	for {
		if i >= len(b) {
			d.i = i
			return nil, d.syntax(name, "unterminated string")
		}
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			d.scratch = out
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
