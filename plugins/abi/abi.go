package abi

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Version is the ABI major version. A plugin's relay_abi_version export must
// return it; the host refuses any other value at load.
const Version = 1

// Names of the exports a plugin module provides (DESIGN.md "Plugin ABI").
const (
	// ExportMemory is the guest's linear memory.
	ExportMemory = "memory"
	// ExportInitialize is the WASI reactor initializer, () -> (). Optional:
	// the host calls it once per instance when the toolchain emits it.
	ExportInitialize = "_initialize"
	// ExportAbiVersion is () -> i32 and must return Version.
	ExportAbiVersion = "relay_abi_version"
	// ExportAlloc is (size i32) -> i32: a pointer to a guest-owned buffer of
	// at least size bytes, valid until the next relay_alloc; 0 means it
	// cannot.
	ExportAlloc = "relay_alloc"
	// ExportEvaluate is (ptr i32, len i32) -> i64: it reads the Input JSON at
	// [ptr, ptr+len) and returns (out_ptr<<32)|out_len of the Output JSON,
	// guest-owned and valid until the next call. out_len 0 is an error.
	ExportEvaluate = "relay_evaluate"
)

// ImportModule is the only module a plugin may import from.
const ImportModule = "wasi_snapshot_preview1"

// Verdicts a plugin may answer.
const (
	// VerdictAllow continues the chain, with Set applied and the target
	// devices narrowed to Devices when given.
	VerdictAllow = "allow"
	// VerdictSuppress ends the chain: the event is not delivered.
	VerdictSuppress = "suppress"
	// VerdictDefer postpones delivery until DeferUntil (never past the
	// event's expires_at).
	VerdictDefer = "defer"
)

// Interruption levels a plugin may set (Apple's names; FCM maps them).
const (
	InterruptionPassive       = "passive"
	InterruptionActive        = "active"
	InterruptionTimeSensitive = "time-sensitive"
	InterruptionCritical      = "critical"
)

// Priorities a plugin may set.
const (
	PriorityHigh   = "high"
	PriorityNormal = "normal"
)

// Limits of the wire contract. Lengths are in bytes of UTF-8.
const (
	MaxTitleLen     = 256      // set.title
	MaxBodyLen      = 4096     // set.body
	MaxFieldLen     = 64       // every other settable string field
	MaxDataEntries  = 32       // set.data entries
	MaxDataKeyLen   = 64       // set.data key
	MaxDataValueLen = 1024     // set.data value
	MaxReasonLen    = 256      // reason
	MaxDevices      = 256      // devices entries
	MaxDeviceIDLen  = 128      // one devices entry
	MaxOutputBytes  = 64 << 10 // the whole Output JSON
	MaxDepth        = 256      // JSON nesting accepted by the decoders
)

// SettableFields lists, in wire order, the keys an Output's "set" object may
// hold. Any other key makes the Output invalid.
var SettableFields = []string{"title", "body", "priority", "interruption_level", "sound", "category", "thread_id", "data"}

// MaxSetLen returns the maximum length of the settable field name: bytes for
// strings, entries for "data". It returns 0 for a field that is not settable.
func MaxSetLen(name string) int {
	switch name {
	case "title":
		return MaxTitleLen
	case "body":
		return MaxBodyLen
	case "priority", "interruption_level", "sound", "category", "thread_id":
		return MaxFieldLen
	case "data":
		return MaxDataEntries
	}
	return 0
}

// Input is what the host sends to relay_evaluate, as JSON:
//
//	{"abi":1,"now":RFC3339,"event":{…},"baseline":{…},"workspace":{…},
//	 "user":{…},"prior":[…],"config":{…}}
//
// Decoders ignore unknown fields of Input so that a newer host can add
// context without breaking older plugins.
type Input struct {
	// ABI is the ABI version the host speaks (Version).
	ABI int
	// Now is the host's clock at evaluation, in UTC. Plugins should use it
	// rather than their own clock.
	Now time.Time
	// Event is the accepted event, defaults filled.
	Event Event
	// Baseline is the decision before any plugin ran.
	Baseline Baseline
	// Workspace is the event's workspace context.
	Workspace Workspace
	// User is the recipient's context.
	User User
	// Prior lists the verdicts of the plugins that ran before this one.
	Prior []Prior
	// Config is the plugin's manifest config {} block as raw JSON (an
	// object), or nil when the manifest has none.
	Config []byte
}

// Event mirrors the socket API's event.
type Event struct {
	ID         string            // "id"
	Workspace  string            // "workspace"
	User       string            // "user"
	Type       string            // "type"
	Title      string            // "title"
	Body       string            // "body"
	Data       map[string]string // "data"
	Actions    []string          // "actions"
	Priority   string            // "priority": high | normal
	OccurredAt time.Time         // "occurred_at"
	ExpiresAt  time.Time         // "expires_at"
}

// Baseline is the decision of the workspace settings and user preferences.
type Baseline struct {
	Verdict  string // "verdict": always "deliver" (plugins run only then)
	Reason   string // "reason": enabled | enforced
	Enforced bool   // "enforced": the type is enforced for the workspace
}

// Workspace is the event's workspace context.
type Workspace struct {
	// Settings maps notification type to enabled | disabled | enforced.
	Settings map[string]string // "settings"
}

// User is the recipient's context.
type User struct {
	// Preferences maps notification type to the user's on/off choice.
	Preferences map[string]bool // "preferences"
	// Devices are the user's registered devices.
	Devices []Device // "devices"
	// Recent maps notification type to the user's event counts in the last
	// minute, ten minutes and hour (this event included).
	Recent map[string]Recent // "recent"
}

// Device is one of the user's registered devices.
type Device struct {
	ID       string // "id"
	Platform string // "platform": ios | android
	App      string // "app"
}

// Recent counts a user's events of one type over sliding windows.
type Recent struct {
	M1  int // "1m"
	M10 int // "10m"
	H1  int // "1h"
}

// Prior is the verdict of a plugin that ran earlier in the chain.
type Prior struct {
	Plugin  string // "plugin"
	Verdict string // "verdict"
	Reason  string // "reason"
}

// Output is what a plugin answers, as JSON:
//
//	{"verdict":"allow|suppress|defer","reason":"…","defer_until":RFC3339,
//	 "set":{…},"devices":["id",…],"notice":{"title","body","data"}}
//
// Decoders reject unknown fields of Output and of its "set" object.
type Output struct {
	// Verdict is VerdictAllow, VerdictSuppress or VerdictDefer.
	Verdict string // "verdict"
	// Reason is a short machine-friendly reason, recorded with the decision.
	Reason string // "reason"
	// DeferUntil is required with VerdictDefer and ignored otherwise.
	DeferUntil time.Time // "defer_until"
	// Set changes the notification's visible fields; nil changes nothing.
	Set *Set // "set"
	// Devices, when non-nil, narrows delivery to these device IDs.
	Devices []string // "devices"
	// Notice, when non-nil, asks the host to send the event's user one
	// separate informational alert, whatever the verdict (an addition to
	// ABI 1: older hosts refuse the field, older plugins never send it).
	Notice *Notice // "notice"
	// IgnoreType tells the host that the plugin answers this same
	// unchanged allow (verdict allow, this reason, nothing set, narrowed
	// or noticed) for every event of this event's type, whatever its
	// workspace, user, content or time, as long as the plugin and its
	// config stay the same: the host may record this answer for later
	// events of the type instead of calling (quiet_hours for its exempt
	// types). Only with an unchanged allow. An addition to ABI 1, like
	// notice.
	IgnoreType bool // "ignore_type"
}

// Notice is an informational alert a plugin asks the host to send to the
// user of the event it judged, as its own alert beside the event's. The
// host chooses its type, priority and devices (all of the user's); it
// carries no actions or category and can never be answered, so a plugin
// can warn a user without giving an attacker something to approve. The
// host sends at most one notice per event and plugin; a plugin that wants
// one warning per burst asks for it once (see policies/push_bombing_guard).
type Notice struct {
	Title string            // "title", required, at most MaxTitleLen bytes
	Body  string            // "body", at most MaxBodyLen bytes
	Data  map[string]string // "data", at most MaxDataEntries entries
}

// Set holds the fields a plugin may change. A nil pointer leaves the field
// as it is; a pointer to "" clears it. Data entries are merged into the
// event's data.
type Set struct {
	Title             *string           // "title", at most MaxTitleLen bytes
	Body              *string           // "body", at most MaxBodyLen bytes
	Priority          *string           // "priority": high | normal
	InterruptionLevel *string           // "interruption_level": passive | active | time-sensitive | critical
	Sound             *string           // "sound"
	Category          *string           // "category"
	ThreadID          *string           // "thread_id"
	Data              map[string]string // "data", at most MaxDataEntries entries
}

// Allow returns an Output that lets the event through unchanged.
func Allow() Output { return Output{Verdict: VerdictAllow} }

// Suppress returns an Output that drops the event with reason.
func Suppress(reason string) Output { return Output{Verdict: VerdictSuppress, Reason: reason} }

// Defer returns an Output that postpones the event until t with reason.
func Defer(t time.Time, reason string) Output {
	return Output{Verdict: VerdictDefer, Reason: reason, DeferUntil: t}
}

// String returns a pointer to s, for Set fields.
func String(s string) *string { return &s }

// FieldError reports an invalid field of an Output or a JSON document.
type FieldError struct {
	Field  string // JSON path, e.g. "set.title"
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks o against the contract: a known verdict, defer_until with
// defer, valid UTF-8 and length limits, known priority and interruption
// level, and device IDs. The error names the field.
func (o *Output) Validate() error {
	switch o.Verdict {
	case VerdictAllow, VerdictSuppress:
	case VerdictDefer:
		if o.DeferUntil.IsZero() {
			return fieldErr("defer_until", "required with verdict defer")
		}
	case "":
		return fieldErr("verdict", "missing")
	default:
		return fieldErr("verdict", "unknown verdict %q (want allow, suppress or defer)", truncate(o.Verdict))
	}
	if err := checkString("reason", o.Reason, MaxReasonLen); err != nil {
		return err
	}
	if y := o.DeferUntil.Year(); !o.DeferUntil.IsZero() && (y < 0 || y > 9999) {
		return fieldErr("defer_until", "year %d out of range", y)
	}
	if s := o.Set; s != nil {
		for _, f := range []struct {
			name string
			v    *string
		}{
			{"set.title", s.Title}, {"set.body", s.Body}, {"set.priority", s.Priority},
			{"set.interruption_level", s.InterruptionLevel}, {"set.sound", s.Sound},
			{"set.category", s.Category}, {"set.thread_id", s.ThreadID},
		} {
			if f.v == nil {
				continue
			}
			if err := checkString(f.name, *f.v, MaxSetLen(f.name[len("set."):])); err != nil {
				return err
			}
		}
		if s.Priority != nil && *s.Priority != PriorityHigh && *s.Priority != PriorityNormal {
			return fieldErr("set.priority", "unknown priority %q (want high or normal)", truncate(*s.Priority))
		}
		if l := s.InterruptionLevel; l != nil {
			switch *l {
			case InterruptionPassive, InterruptionActive, InterruptionTimeSensitive, InterruptionCritical:
			default:
				return fieldErr("set.interruption_level", "unknown level %q (want passive, active, time-sensitive or critical)", truncate(*l))
			}
		}
		if err := checkData("set.data", s.Data); err != nil {
			return err
		}
	}
	if n := o.Notice; n != nil {
		if n.Title == "" {
			return fieldErr("notice.title", "required")
		}
		if err := checkString("notice.title", n.Title, MaxTitleLen); err != nil {
			return err
		}
		if err := checkString("notice.body", n.Body, MaxBodyLen); err != nil {
			return err
		}
		if err := checkData("notice.data", n.Data); err != nil {
			return err
		}
	}
	if o.IgnoreType && (o.Verdict != VerdictAllow || o.Set != nil || o.Devices != nil || o.Notice != nil) {
		return fieldErr("ignore_type", "only with verdict allow and nothing set, narrowed or noticed")
	}
	if len(o.Devices) > MaxDevices {
		return fieldErr("devices", "%d entries, max %d", len(o.Devices), MaxDevices)
	}
	for i, d := range o.Devices {
		if d == "" {
			return fieldErr(fmt.Sprintf("devices[%d]", i), "empty device id")
		}
		if err := checkString("devices", d, MaxDeviceIDLen); err != nil {
			err.(*FieldError).Field = fmt.Sprintf("devices[%d]", i)
			return err
		}
	}
	return nil
}

// checkData checks a data map's size, keys and values.
func checkData(field string, data map[string]string) error {
	if len(data) > MaxDataEntries {
		return fieldErr(field, "%d entries, max %d", len(data), MaxDataEntries)
	}
	for k, v := range data {
		if k == "" {
			return fieldErr(field, "empty key")
		}
		if err := checkString(field+" key", k, MaxDataKeyLen); err != nil {
			err.(*FieldError).Field += " " + strconv.Quote(truncate(k))
			return err
		}
		if err := checkString(field, v, MaxDataValueLen); err != nil {
			err.(*FieldError).Field += "." + truncate(k)
			return err
		}
	}
	return nil
}

func checkString(field, s string, max int) error {
	if len(s) > max {
		return fieldErr(field, "%d bytes, max %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "invalid UTF-8")
	}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
