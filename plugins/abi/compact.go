package abi

import (
	"encoding/binary"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// The compact encoding is a binary form of Input and Output for plugins
// that ask for it (the optional export relay_encoding returning
// EncodingCompact; the Go SDK does). It carries exactly what the JSON
// documents carry, in a fixed order, so a plugin reads its input without
// parsing text: in a standard-Go guest, decoding the JSON input took most
// of a typical policy's call. JSON stays the encoding every language can
// use and the default.
//
// Layout (all integers are unsigned LEB128 varints unless noted):
//
//	input   := 'I' fmt abi now event baseline settings user prior config [more]
//	output  := 'O' fmt verdict reason defer_until set devices notice flags
//	fmt     := 1
//	str     := len bytes                          (valid UTF-8)
//	opt     := 0 | len+1 bytes                    (0: absent)
//	time    := 0 | 1 zigzag(unix seconds) nanos   (0: zero time)
//	map     := 0 | n+1 (str str)*n                (0: nil; keys sorted)
//	list    := 0 | n+1 str*n                      (0: nil)
//	event   := id workspace user type title body data:map actions:list
//	           priority occurred_at:time expires_at:time
//	baseline:= verdict:str reason:str enforced:byte
//	user    := preferences:(0 | n+1 (str byte)*n) devices:(0 | n+1 (id platform app)*n)
//	           recent:(0 | n+1 (str m1 m10 h1)*n)
//	prior   := 0 | n+1 (plugin verdict reason)*n
//	config  := opt                                (the config {} block as JSON)
//	verdict := byte                               (1 allow, 2 suppress, 3 defer)
//	set     := 0 | 1 title:opt body:opt priority:opt interruption_level:opt
//	           sound:opt category:opt thread_id:opt data:map
//	devices := list
//	notice  := 0 | 1 title:str body:str data:map
//	flags   := byte                               (bit 0: ignore_type)
//
// A newer host may append fields to the input after config; decoders
// ignore what follows the fields they know. The output has no such room:
// trailing bytes are an error, as unknown JSON fields are.

// Encodings a plugin may ask for with relay_encoding.
const (
	// EncodingJSON is the default: Input and Output are JSON documents.
	EncodingJSON = 0
	// EncodingCompact is the binary form above.
	EncodingCompact = 1
)

// ExportEncoding is the optional export () -> i32 naming the encoding a
// plugin reads and writes (EncodingJSON when absent).
const ExportEncoding = "relay_encoding"

const (
	compactInputTag  = 'I'
	compactOutputTag = 'O'
	compactFormat    = 1
)

// AppendInputCompact appends the compact encoding of in to dst. Invalid
// UTF-8 in strings is replaced by U+FFFD, as DecodeInput would.
func AppendInputCompact(dst []byte, in *Input) []byte {
	dst = append(dst, compactInputTag, compactFormat)
	dst = binary.AppendUvarint(dst, uint64(max(in.ABI, 0)))
	dst = appendCTime(dst, in.Now)
	e := &in.Event
	for _, s := range [...]string{e.ID, e.Workspace, e.User, e.Type, e.Title, e.Body} {
		dst = appendCStr(dst, s)
	}
	dst = appendCMap(dst, e.Data)
	dst = appendCList(dst, e.Actions)
	dst = appendCStr(dst, e.Priority)
	dst = appendCTime(dst, e.OccurredAt)
	dst = appendCTime(dst, e.ExpiresAt)
	dst = appendCStr(dst, in.Baseline.Verdict)
	dst = appendCStr(dst, in.Baseline.Reason)
	dst = appendCBool(dst, in.Baseline.Enforced)
	dst = appendCMap(dst, in.Workspace.Settings)
	u := &in.User
	if u.Preferences == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(u.Preferences))+1)
		var keys [8]string
		for _, k := range appendSortedKeys(keys[:0], u.Preferences) {
			dst = appendCStr(dst, k)
			dst = appendCBool(dst, u.Preferences[k])
		}
	}
	if u.Devices == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(u.Devices))+1)
		for i := range u.Devices {
			d := &u.Devices[i]
			dst = appendCStr(dst, d.ID)
			dst = appendCStr(dst, d.Platform)
			dst = appendCStr(dst, d.App)
		}
	}
	if u.Recent == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(u.Recent))+1)
		var keys [8]string
		for _, k := range appendSortedKeys(keys[:0], u.Recent) {
			r := u.Recent[k]
			dst = appendCStr(dst, k)
			dst = binary.AppendUvarint(dst, uint64(max(r.M1, 0)))
			dst = binary.AppendUvarint(dst, uint64(max(r.M10, 0)))
			dst = binary.AppendUvarint(dst, uint64(max(r.H1, 0)))
		}
	}
	if in.Prior == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(in.Prior))+1)
		for _, p := range in.Prior {
			dst = appendCStr(dst, p.Plugin)
			dst = appendCStr(dst, p.Verdict)
			dst = appendCStr(dst, p.Reason)
		}
	}
	if len(in.Config) == 0 {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(in.Config))+1)
	return append(dst, in.Config...)
}

// AppendOutputCompact appends the compact encoding of out to dst. The
// verdict must be one of the three (Validate first); anything else is
// written as an unknown verdict the decoder refuses.
func AppendOutputCompact(dst []byte, out *Output) []byte {
	dst = append(dst, compactOutputTag, compactFormat)
	switch out.Verdict {
	case VerdictAllow:
		dst = append(dst, 1)
	case VerdictSuppress:
		dst = append(dst, 2)
	case VerdictDefer:
		dst = append(dst, 3)
	default:
		dst = append(dst, 0)
	}
	// The usual output (allow, nothing else) written in place: in a guest
	// a call costs more than the byte it appends.
	if out.Reason == "" {
		dst = append(dst, 0)
	} else {
		dst = appendCStr(dst, out.Reason)
	}
	if out.DeferUntil.IsZero() {
		dst = append(dst, 0)
	} else {
		dst = appendCTime(dst, out.DeferUntil)
	}
	if s := out.Set; s == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		for _, p := range [...]*string{s.Title, s.Body, s.Priority, s.InterruptionLevel, s.Sound, s.Category, s.ThreadID} {
			if p == nil {
				dst = append(dst, 0)
				continue
			}
			dst = binary.AppendUvarint(dst, uint64(len(*p))+1)
			dst = append(dst, *p...)
		}
		if s.Data == nil {
			dst = append(dst, 0)
		} else {
			dst = appendCMap(dst, s.Data)
		}
	}
	if out.Devices == nil {
		dst = append(dst, 0)
	} else {
		dst = appendCList(dst, out.Devices)
	}
	if n := out.Notice; n == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		dst = appendCStr(dst, n.Title)
		dst = appendCStr(dst, n.Body)
		dst = appendCMap(dst, n.Data)
	}
	var flags byte
	if out.IgnoreType {
		flags |= 1
	}
	return append(dst, flags)
}

func appendCStr(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendCBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendCTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

func appendCMap(dst []byte, m map[string]string) []byte {
	if m == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m))+1)
	var keys [8]string
	for _, k := range appendSortedKeys(keys[:0], m) {
		dst = appendCStr(dst, k)
		dst = appendCStr(dst, m[k])
	}
	return dst
}

func appendCList(dst []byte, ss []string) []byte {
	if ss == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(ss))+1)
	for _, s := range ss {
		dst = appendCStr(dst, s)
	}
	return dst
}

// errCompactShort is the error of a compact document that ends early.
var errCompactShort = errors.New("ends early")

// creader is a cursor over a compact document. b is owned by the reader
// and never written, so strings alias it.
type creader struct {
	b     []byte
	i     int
	err   error
	field string // the field being read, for the error
}

// fail records the first error. It also cuts b where the reader stands,
// so the inlined fast paths (which check only the length) stop reading.
func (r *creader) fail(field string, err error) {
	if r.err == nil {
		r.field, r.err = field, err
		r.b = r.b[:r.i]
	}
}

// uvarint reads a varint; the common one-byte case is inlined (in a guest
// a call costs more than the read).
func (r *creader) uvarint(field string) uint64 {
	if i := r.i; i < len(r.b) && r.b[i] < 0x80 {
		r.i = i + 1
		return uint64(r.b[i])
	}
	return r.uvarintSlow(field)
}

func (r *creader) uvarintSlow(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, i, ok := uvarintAt(r.b, r.i)
	if !ok {
		r.fail(field, errors.New("bad or truncated varint"))
		return 0
	}
	r.i = i
	return v
}

// count reads a "0 | n+1" count: -1 for nil. n is bounded by the bytes
// left (every element takes at least one), so a hostile count cannot make
// the decoder allocate more than the document's size.
func (r *creader) count(field string) int {
	v := r.uvarint(field)
	if v == 0 || r.err != nil {
		return -1
	}
	if v-1 > uint64(len(r.b)-r.i) {
		r.fail(field, errors.New("count exceeds the document"))
		return -1
	}
	return int(v - 1)
}

func (r *creader) bytes(field string, n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)-r.i) {
		r.fail(field, errCompactShort)
		return nil
	}
	s := r.b[r.i : r.i+int(n) : r.i+int(n)]
	r.i += int(n)
	return s
}

// str reads a string. One shorter than 128 bytes (one length byte) is
// read inline: in a guest a call costs more than reading the string.
func (r *creader) str(field string) string {
	if i := r.i; i < len(r.b) {
		if n := int(r.b[i]); n < 0x80 && n < len(r.b)-i {
			r.i = i + 1 + n
			return alias(r.b[i+1 : i+1+n])
		}
	}
	return r.strSlow(field)
}

func (r *creader) strSlow(field string) string {
	return alias(r.bytes(field, r.uvarint(field)))
}

// checkedStr is str for output documents, which come from the guest: they
// must be valid UTF-8.
func (r *creader) checkedStr(field string) string {
	s := r.str(field)
	if r.err == nil && !utf8.ValidString(s) {
		r.fail(field, errors.New("invalid UTF-8"))
	}
	return s
}

func (r *creader) opt(field string, check bool) *string {
	v := r.uvarint(field)
	if v == 0 || r.err != nil {
		return nil
	}
	s := alias(r.bytes(field, v-1))
	if check && r.err == nil && !utf8.ValidString(s) {
		r.fail(field, errors.New("invalid UTF-8"))
	}
	return &s
}

func (r *creader) byte(field string) byte {
	if r.err != nil {
		return 0
	}
	if r.i >= len(r.b) {
		r.fail(field, errCompactShort)
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *creader) bool(field string) bool {
	switch r.byte(field) {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail(field, errors.New("want 0 or 1"))
	return false
}

func (r *creader) int(field string) int {
	v := r.uvarint(field)
	if v > 1<<31-1 {
		r.fail(field, errors.New("out of range"))
		return 0
	}
	return int(v)
}

func (r *creader) time(field string) time.Time {
	switch r.byte(field) {
	case 0:
		return time.Time{}
	case 1:
	default:
		r.fail(field, errors.New("bad time tag"))
		return time.Time{}
	}
	if r.err != nil {
		return time.Time{}
	}
	ux, i, ok := uvarintAt(r.b, r.i) // seconds, zigzag
	var ns uint64
	if ok {
		ns, i, ok = uvarintAt(r.b, i)
	}
	if !ok {
		r.fail(field, errors.New("bad or truncated varint"))
		return time.Time{}
	}
	r.i = i
	sec := int64(ux >> 1)
	if ux&1 != 0 {
		sec = ^sec
	}
	if ns >= 1e9 || sec < -62135596800 || sec > 253402300799 { // years 1..9999
		r.fail(field, errors.New("out of range"))
		return time.Time{}
	}
	return time.Unix(sec, int64(ns)).UTC()
}

// strMap reads a map, returning it when build is set (else nil, having
// read over it).
func (r *creader) strMap(field string, check, build bool) map[string]string {
	n := r.count(field)
	if n < 0 {
		return nil
	}
	var m map[string]string
	if build {
		m = make(map[string]string, n)
	}
	fields := [2]string{field, field}
	for range n {
		var k, v string
		if check {
			k, v = r.checkedStr(field), r.checkedStr(field)
		} else {
			r.strs(fields[:], &k, &v) // one call for both, short ones read in place
		}
		if r.err != nil {
			return nil
		}
		if build {
			m[k] = v
		}
	}
	return m
}

// list reads a list, returning it when build is set (else nil, having
// read over it).
func (r *creader) list(field string, check, build bool) []string {
	n := r.count(field)
	if n < 0 {
		return nil
	}
	var ss []string
	if build {
		ss = make([]string, n)
	}
	for i := range n {
		var s string
		if check {
			s = r.checkedStr(field)
		} else {
			s = r.str(field)
		}
		if build {
			ss[i] = s
		}
	}
	return ss
}

func (r *creader) error(doc string) error {
	if r.err == nil {
		return nil
	}
	return fieldErr(r.field, "compact %s: %v at byte %d", doc, r.err, r.i)
}

// DecodeCompact decodes the compact input b (AppendInputCompact) into in,
// which it resets first. Strings alias a copy of b, so b may be reused
// afterwards. Bytes after the fields it knows are ignored (a newer host's
// additions). The host writes valid UTF-8, which is not checked again.
func (dec *InputDecoder) DecodeCompact(b []byte, in *Input) error {
	return dec.decodeCompact(b, in, nil)
}

// DecodeCompactSections is DecodeCompact for a reader of some sections
// only: it calls pick with the input's config (nil when there is none) and
// builds only the sections pick returns; the others are left nil, as if
// the host had sent none. The whole document is still checked. In a
// standard-Go guest each map costs about as much as a shipped policy's own
// work, and most policies read one of the six (a bundle learns which
// policy runs from the config, which the compact form carries last; pick
// sees it before any section is built). pick is not called when the
// document does not decode.
func (dec *InputDecoder) DecodeCompactSections(b []byte, in *Input, pick func(config []byte) Sections) error {
	if pick == nil {
		return dec.decodeCompact(b, in, nil)
	}
	return dec.decodeCompact(b, in, pick)
}

// decodeCompact is DecodeCompact, building every section on the way when
// pick is nil and otherwise skipping them, remembering where each starts,
// and building those pick asks for at the end.
func (dec *InputDecoder) decodeCompact(b []byte, in *Input, pick func(config []byte) Sections) error {
	*in = Input{}
	if len(b) < 2 || b[0] != compactInputTag || b[1] != compactFormat {
		return fieldErr("", "not a compact input document (format %d)", compactFormat)
	}
	r := &creader{b: clone(b), i: 2}
	build := pick == nil
	var at [numSections]int // where each section starts
	in.ABI = r.int("abi")
	in.Now = r.time("now")
	e := &in.Event
	r.strs(eventFields[:], &e.ID, &e.Workspace, &e.User, &e.Type, &e.Title, &e.Body)
	at[sectionEventData] = r.i
	if !r.nilSection() {
		r.section(in, sectionEventData, build)
	}
	at[sectionActions] = r.i
	if !r.nilSection() {
		r.section(in, sectionActions, build)
	}
	e.Priority = r.str("event.priority")
	e.OccurredAt = r.time("event.occurred_at")
	e.ExpiresAt = r.time("event.expires_at")
	r.strs(baselineFields[:], &in.Baseline.Verdict, &in.Baseline.Reason)
	in.Baseline.Enforced = r.bool("baseline.enforced")
	for s := sectionSettings; s <= sectionPrior; s++ {
		at[s] = r.i
		if !r.nilSection() {
			r.section(in, s, build)
		}
	}
	if v := r.uvarint("config"); v > 0 {
		in.Config = r.bytes("config", v-1)
	}
	if r.err != nil {
		err := r.error("input")
		*in = Input{}
		return err
	}
	if !build {
		want := pick(in.Config)
		for s := range numSections {
			if want&(1<<s) != 0 {
				sr := &creader{b: r.b, i: at[s]}
				sr.section(in, s, true) // checked by the first walk
			}
		}
	}
	return nil
}

// Field names of the strings read in a row (strs, skip), for errors.
var (
	eventFields    = [...]string{"event.id", "event.workspace", "event.user", "event.type", "event.title", "event.body"}
	baselineFields = [...]string{"baseline.verdict", "baseline.reason"}
	dataFields     = [...]string{"event.data", "event.data"}
	actionsFields  = [...]string{"event.actions"}
	settingsFields = [...]string{"workspace.settings", "workspace.settings"}
	prefsFields    = [...]string{"user.preferences"}
	deviceFields   = [...]string{"user.devices.id", "user.devices.platform", "user.devices.app"}
	recentFields   = [...]string{"user.recent"}
	countFields    = [...]string{"user.recent.1m", "user.recent.10m", "user.recent.1h"}
	priorFields    = [...]string{"prior.plugin", "prior.verdict", "prior.reason"}
)

// nilSection reads over an absent section (nil: one 0 byte, as every
// section is written when the host sends it empty-handed, which it does
// with the sections a rule does not read) and reports whether it did. The
// calls section makes for one cost a guest more than the byte.
func (r *creader) nilSection() bool {
	if i := r.i; i < len(r.b) && r.b[i] == 0 {
		r.i = i + 1
		return true
	}
	return false
}

// section reads section s of an input: into in when build is set, else
// only over it (checking it all the same, and naming the same fields in
// errors).
func (r *creader) section(in *Input, s int, build bool) {
	if !build {
		r.skipSection(s)
		return
	}
	switch s {
	case sectionEventData:
		in.Event.Data = r.strMap("event.data", false, true)
	case sectionActions:
		in.Event.Actions = r.list("event.actions", false, true)
	case sectionSettings:
		in.Workspace.Settings = r.strMap("workspace.settings", false, true)
	case sectionPreferences:
		n := r.count("user.preferences")
		if n < 0 {
			return
		}
		m := make(map[string]bool, n)
		for range n {
			k := r.str("user.preferences")
			v := r.bool("user.preferences")
			if r.err != nil {
				return
			}
			m[k] = v
		}
		in.User.Preferences = m
	case sectionDevices:
		n := r.count("user.devices")
		if n < 0 {
			return
		}
		ds := make([]Device, n)
		for i := range ds {
			d := &ds[i]
			r.strs(deviceFields[:], &d.ID, &d.Platform, &d.App)
		}
		in.User.Devices = ds
	case sectionRecent:
		n := r.count("user.recent")
		if n < 0 {
			return
		}
		m := make(map[string]Recent, n)
		for range n {
			k := r.str("user.recent")
			v := Recent{M1: r.int("user.recent.1m"), M10: r.int("user.recent.10m"), H1: r.int("user.recent.1h")}
			if r.err != nil {
				return
			}
			m[k] = v
		}
		in.User.Recent = m
	case sectionPrior:
		n := r.count("prior")
		if n < 0 {
			return
		}
		ps := make([]Prior, n)
		for i := range ps {
			p := &ps[i]
			r.strs(priorFields[:], &p.Plugin, &p.Verdict, &p.Reason)
		}
		in.Prior = ps
	}
}

// skipSection reads over section s with as few calls as it can: in a
// guest a call costs more than reading a short string.
func (r *creader) skipSection(s int) {
	switch s {
	case sectionEventData:
		r.skip(dataFields[:], r.count("event.data"))
	case sectionActions:
		r.skip(actionsFields[:], r.count("event.actions"))
	case sectionSettings:
		r.skip(settingsFields[:], r.count("workspace.settings"))
	case sectionPreferences:
		for range r.count("user.preferences") {
			r.skip(prefsFields[:], 1)
			if r.bool("user.preferences"); r.err != nil {
				return
			}
		}
	case sectionDevices:
		r.skip(deviceFields[:], r.count("user.devices"))
	case sectionRecent:
		for range r.count("user.recent") {
			r.skip(recentFields[:], 1)
			for _, f := range countFields {
				if i := r.i; i < len(r.b) && r.b[i] < 0x80 { // one byte: in range
					r.i = i + 1
					continue
				}
				r.int(f)
			}
			if r.err != nil {
				return
			}
		}
	case sectionPrior:
		r.skip(priorFields[:], r.count("prior"))
	}
}

// strs reads len(dst) strings into dst, named fields[k] in errors. A
// string shorter than 128 bytes (one length byte) is read inline.
func (r *creader) strs(fields []string, dst ...*string) {
	for k, p := range dst {
		if i := r.i; i < len(r.b) {
			if n := int(r.b[i]); n < 0x80 && n < len(r.b)-i {
				r.i = i + 1 + n
				*p = alias(r.b[i+1 : i+1+n])
				continue
			}
		}
		*p = r.strSlow(fields[k])
	}
}

// skip reads over n groups of len(fields) strings (nothing for n < 0, a
// nil section), naming fields[k] in errors.
func (r *creader) skip(fields []string, n int) {
	for range n {
		for _, f := range fields {
			if i := r.i; i < len(r.b) {
				if l := int(r.b[i]); l < 0x80 && l < len(r.b)-i {
					r.i = i + 1 + l
					continue
				}
			}
			if r.strSlow(f); r.err != nil {
				return
			}
		}
	}
}

// DecodeOutputCompact decodes the compact output b (AppendOutputCompact)
// into out, which it resets first, and validates it (Output.Validate).
// Strings must be valid UTF-8; trailing bytes are an error.
func DecodeOutputCompact(b []byte, out *Output) error {
	*out = Output{}
	if len(b) > MaxOutputBytes {
		return fieldErr("", "output is %d bytes, max %d", len(b), MaxOutputBytes)
	}
	if len(b) < 2 || b[0] != compactOutputTag || b[1] != compactFormat {
		return fieldErr("", "not a compact output document (format %d)", compactFormat)
	}
	r := &creader{b: clone(b), i: 2}
	switch v := r.byte("verdict"); v {
	case 1:
		out.Verdict = VerdictAllow
	case 2:
		out.Verdict = VerdictSuppress
	case 3:
		out.Verdict = VerdictDefer
	default:
		if r.err == nil {
			r.fail("verdict", errors.New("unknown verdict code (want 1 allow, 2 suppress or 3 defer)"))
		}
	}
	out.Reason = r.checkedStr("reason")
	out.DeferUntil = r.time("defer_until")
	switch r.byte("set") {
	case 0:
	case 1:
		s := &Set{}
		s.Title = r.opt("set.title", true)
		s.Body = r.opt("set.body", true)
		s.Priority = r.opt("set.priority", true)
		s.InterruptionLevel = r.opt("set.interruption_level", true)
		s.Sound = r.opt("set.sound", true)
		s.Category = r.opt("set.category", true)
		s.ThreadID = r.opt("set.thread_id", true)
		s.Data = r.strMap("set.data", true, true)
		out.Set = s
	default:
		r.fail("set", errors.New("bad presence tag"))
	}
	out.Devices = r.list("devices", true, true)
	switch r.byte("notice") {
	case 0:
	case 1:
		out.Notice = &Notice{Title: r.checkedStr("notice.title"), Body: r.checkedStr("notice.body"), Data: r.strMap("notice.data", true, true)}
	default:
		r.fail("notice", errors.New("bad presence tag"))
	}
	switch f := r.byte("flags"); {
	case f&^1 != 0:
		r.fail("flags", errors.New("unknown flag bits"))
	default:
		out.IgnoreType = f&1 != 0
	}
	if r.err == nil && r.i != len(r.b) {
		r.fail("", errors.New("trailing data"))
	}
	if err := r.error("output"); err != nil {
		*out = Output{}
		return err
	}
	return out.Validate()
}

// IsCompactOutput reports whether b starts like a compact output document,
// for tools that print what a plugin answered.
func IsCompactOutput(b []byte) bool {
	return len(b) >= 2 && b[0] == compactOutputTag && b[1] == compactFormat
}

// uvarintAt decodes the uvarint at b[i:] as binary.Uvarint does (the same
// values, the same refusals) and returns the index after it; ok is false
// for a truncated or overflowing varint. Written out for the guests: a
// time's two varints were three calls, each costing more than the loop.
func uvarintAt(b []byte, i int) (x uint64, next int, ok bool) {
	var s uint
	for k := range binary.MaxVarintLen64 {
		if i+k >= len(b) {
			return 0, i, false
		}
		c := b[i+k]
		if c < 0x80 {
			if k == binary.MaxVarintLen64-1 && c > 1 {
				return 0, i, false
			}
			return x | uint64(c)<<s, i + k + 1, true
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, i, false
}
