package abi

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// AppendInput appends the JSON encoding of in to dst and returns the
// extended slice. Maps are written with sorted keys, times in RFC 3339 UTC
// with nanoseconds, and nil maps, slices, empty optional strings and zero
// optional times are omitted, so the encoding is deterministic. Config is
// copied verbatim and must be valid JSON (or empty, which omits it).
func AppendInput(dst []byte, in *Input) []byte {
	dst = append(dst, `{"abi":`...)
	dst = strconv.AppendInt(dst, int64(in.ABI), 10)
	dst = append(dst, `,"now":`...)
	dst = appendTime(dst, in.Now)
	dst = append(dst, `,"event":`...)
	dst = appendEvent(dst, &in.Event)
	dst = append(dst, `,"baseline":{"verdict":`...)
	dst = appendString(dst, in.Baseline.Verdict)
	dst = append(dst, `,"reason":`...)
	dst = appendString(dst, in.Baseline.Reason)
	dst = append(dst, `,"enforced":`...)
	dst = strconv.AppendBool(dst, in.Baseline.Enforced)
	dst = append(dst, `},"workspace":{`...)
	if in.Workspace.Settings != nil {
		dst = append(dst, `"settings":`...)
		dst = appendStringMap(dst, in.Workspace.Settings)
	}
	dst = append(dst, `},"user":{`...)
	u := &in.User
	comma := false
	if u.Preferences != nil {
		dst = append(dst, `"preferences":{`...)
		for i, k := range sortedKeys(u.Preferences) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = strconv.AppendBool(dst, u.Preferences[k])
		}
		dst = append(dst, '}')
		comma = true
	}
	if u.Devices != nil {
		if comma {
			dst = append(dst, ',')
		}
		dst = append(dst, `"devices":[`...)
		for i := range u.Devices {
			d := &u.Devices[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"id":`...)
			dst = appendString(dst, d.ID)
			dst = append(dst, `,"platform":`...)
			dst = appendString(dst, d.Platform)
			dst = append(dst, `,"app":`...)
			dst = appendString(dst, d.App)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
		comma = true
	}
	if u.Recent != nil {
		if comma {
			dst = append(dst, ',')
		}
		dst = append(dst, `"recent":{`...)
		for i, k := range sortedKeys(u.Recent) {
			if i > 0 {
				dst = append(dst, ',')
			}
			r := u.Recent[k]
			dst = appendString(dst, k)
			dst = append(dst, `:{"1m":`...)
			dst = strconv.AppendInt(dst, int64(r.M1), 10)
			dst = append(dst, `,"10m":`...)
			dst = strconv.AppendInt(dst, int64(r.M10), 10)
			dst = append(dst, `,"1h":`...)
			dst = strconv.AppendInt(dst, int64(r.H1), 10)
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
	}
	dst = append(dst, '}')
	if in.Prior != nil {
		dst = append(dst, `,"prior":[`...)
		for i := range in.Prior {
			p := &in.Prior[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"plugin":`...)
			dst = appendString(dst, p.Plugin)
			dst = append(dst, `,"verdict":`...)
			dst = appendString(dst, p.Verdict)
			dst = append(dst, `,"reason":`...)
			dst = appendString(dst, p.Reason)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if len(in.Config) > 0 {
		dst = append(dst, `,"config":`...)
		dst = append(dst, in.Config...)
	}
	return append(dst, '}')
}

func appendEvent(dst []byte, e *Event) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"workspace":`...)
	dst = appendString(dst, e.Workspace)
	dst = append(dst, `,"user":`...)
	dst = appendString(dst, e.User)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, e.Type)
	if e.Title != "" {
		dst = append(dst, `,"title":`...)
		dst = appendString(dst, e.Title)
	}
	if e.Body != "" {
		dst = append(dst, `,"body":`...)
		dst = appendString(dst, e.Body)
	}
	if e.Data != nil {
		dst = append(dst, `,"data":`...)
		dst = appendStringMap(dst, e.Data)
	}
	if e.Actions != nil {
		dst = append(dst, `,"actions":`...)
		dst = appendStrings(dst, e.Actions)
	}
	if e.Priority != "" {
		dst = append(dst, `,"priority":`...)
		dst = appendString(dst, e.Priority)
	}
	if !e.OccurredAt.IsZero() {
		dst = append(dst, `,"occurred_at":`...)
		dst = appendTime(dst, e.OccurredAt)
	}
	if !e.ExpiresAt.IsZero() {
		dst = append(dst, `,"expires_at":`...)
		dst = appendTime(dst, e.ExpiresAt)
	}
	return append(dst, '}')
}

// AppendOutput appends the JSON encoding of out to dst and returns the
// extended slice. It does not validate out (see Output.Validate); empty
// reason, zero defer_until, nil set, nil devices and nil notice are omitted.
func AppendOutput(dst []byte, out *Output) []byte {
	dst = append(dst, `{"verdict":`...)
	dst = appendString(dst, out.Verdict)
	if out.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = appendString(dst, out.Reason)
	}
	if !out.DeferUntil.IsZero() {
		dst = append(dst, `,"defer_until":`...)
		dst = appendTime(dst, out.DeferUntil)
	}
	if s := out.Set; s != nil {
		dst = append(dst, `,"set":{`...)
		n := len(dst)
		dst = appendOptString(dst, n, `"title":`, s.Title)
		dst = appendOptString(dst, n, `"body":`, s.Body)
		dst = appendOptString(dst, n, `"priority":`, s.Priority)
		dst = appendOptString(dst, n, `"interruption_level":`, s.InterruptionLevel)
		dst = appendOptString(dst, n, `"sound":`, s.Sound)
		dst = appendOptString(dst, n, `"category":`, s.Category)
		dst = appendOptString(dst, n, `"thread_id":`, s.ThreadID)
		if s.Data != nil {
			if len(dst) > n {
				dst = append(dst, ',')
			}
			dst = append(dst, `"data":`...)
			dst = appendStringMap(dst, s.Data)
		}
		dst = append(dst, '}')
	}
	if out.Devices != nil {
		dst = append(dst, `,"devices":`...)
		dst = appendStrings(dst, out.Devices)
	}
	if n := out.Notice; n != nil {
		dst = append(dst, `,"notice":{"title":`...)
		dst = appendString(dst, n.Title)
		if n.Body != "" {
			dst = append(dst, `,"body":`...)
			dst = appendString(dst, n.Body)
		}
		if n.Data != nil {
			dst = append(dst, `,"data":`...)
			dst = appendStringMap(dst, n.Data)
		}
		dst = append(dst, '}')
	}
	if out.IgnoreType {
		dst = append(dst, `,"ignore_type":true`...)
	}
	return append(dst, '}')
}

// appendOptString appends ,key:value (no comma when dst has not grown past
// start) if v is non-nil.
func appendOptString(dst []byte, start int, key string, v *string) []byte {
	if v == nil {
		return dst
	}
	if len(dst) > start {
		dst = append(dst, ',')
	}
	dst = append(dst, key...)
	return appendString(dst, *v)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

func appendStringMap(dst []byte, m map[string]string) []byte {
	dst = append(dst, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, m[k])
	}
	return append(dst, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	return appendSortedKeys(nil, m)
}

// appendSortedKeys appends m's keys to dst, sorted. With room in dst (a
// small array on the caller's stack) the encoders allocate nothing for a
// map's keys: an input has a few small maps, encoded once per call.
func appendSortedKeys[V any](dst []string, m map[string]V) []string {
	n := len(dst)
	for k := range m {
		dst = append(dst, k)
	}
	if len(m) > 1 {
		slices.Sort(dst[n:])
	}
	return dst
}

// safe[b] is true for ASCII bytes that need no escaping inside a string.
var safe = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// load64s is load64 for a string.
func load64s(s string, i int) uint64 {
	_ = s[i+7]
	return *(*uint64)(unsafe.Pointer(unsafe.StringData(s[i:])))
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Control characters, '"' and '\'
// are escaped; invalid UTF-8 becomes U+FFFD, so the result is always valid
// JSON. '<', '>' and '&' are not escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && special(load64s(s, i)) == 0 {
			i += 8
			continue
		}
		b := s[i]
		if safe[b] {
			i++
			continue
		}
		if b >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch b {
		case '"', '\\':
			dst = append(dst, '\\', b)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
