package quiethours

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// Reason is the reason the policy gives when it defers or suppresses.
const Reason = "quiet_hours"

// Actions the policy can take inside a window.
const (
	ActionDefer    = "defer"
	ActionSuppress = "suppress"
)

// Window is a daily quiet interval in local time. It may span midnight
// (start after end).
type Window struct {
	Start string `json:"start"` // "HH:MM", 24-hour
	End   string `json:"end"`   // "HH:MM", 24-hour
	TZ    string `json:"tz"`    // IANA zone; empty means UTC

	start, end int // minutes after midnight
	loc        *time.Location

	// The zone offset in effect from zoneFrom until zoneTo: converting to
	// local time through the zone rules costs microseconds in a guest, and
	// the offset changes twice a year at most.
	zoneFrom, zoneTo time.Time
	zoneOff          time.Duration
}

// offset returns the zone's UTC offset at t.
func (w *Window) offset(t time.Time) time.Duration {
	if !t.Before(w.zoneFrom) && t.Before(w.zoneTo) {
		return w.zoneOff
	}
	local := t.In(w.loc)
	_, off := local.Zone()
	from, to := local.ZoneBounds()
	if to.IsZero() {
		to = t.Add(24 * time.Hour) // no end known: look again tomorrow
	}
	if from.IsZero() {
		from = t
	}
	w.zoneFrom, w.zoneTo, w.zoneOff = from, to, time.Duration(off)*time.Second
	return w.zoneOff
}

// Config is the policy's configuration.
type Config struct {
	Default *Window            `json:"default"`
	Users   map[string]*Window `json:"users"`
	Action  string             `json:"action"`
	Exempt  []string           `json:"exempt"`
}

// ParseConfig decodes and validates the plugin config (nil means none:
// nothing is quiet). Unknown fields are errors.
func ParseConfig(raw []byte) (*Config, error) {
	c := &Config{Action: ActionDefer, Exempt: []string{"identity_verification"}}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("decode quiet_hours config: %w", err)
		}
	}
	if c.Action != ActionDefer && c.Action != ActionSuppress {
		return nil, fmt.Errorf("quiet_hours config: action: %q is not defer or suppress", c.Action)
	}
	if c.Default != nil {
		if err := c.Default.init(); err != nil {
			return nil, fmt.Errorf("quiet_hours config: default: %w", err)
		}
	}
	for user, w := range c.Users {
		if w == nil {
			return nil, fmt.Errorf("quiet_hours config: users.%s: missing window", user)
		}
		if err := w.init(); err != nil {
			return nil, fmt.Errorf("quiet_hours config: users.%s: %w", user, err)
		}
	}
	return c, nil
}

func (w *Window) init() error {
	var err error
	if w.start, err = clock(w.Start); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if w.end, err = clock(w.End); err != nil {
		return fmt.Errorf("end: %w", err)
	}
	if w.start == w.end {
		return fmt.Errorf("start and end are both %s", w.Start)
	}
	tz := w.TZ
	if tz == "" {
		tz = "UTC"
	}
	if w.loc, err = time.LoadLocation(tz); err != nil {
		return fmt.Errorf("tz: unknown time zone %q", w.TZ)
	}
	return nil
}

// clock parses "HH:MM" into minutes after midnight.
func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Until reports whether now falls inside the window and, if so, when the
// window ends (the next local occurrence of End).
func (w *Window) Until(now time.Time) (time.Time, bool) {
	// The wall clock of the zone, computed as UTC shifted by the offset.
	wall := now.UTC().Add(w.offset(now))
	m := wall.Hour()*60 + wall.Minute()
	var inside bool
	if w.start < w.end {
		inside = m >= w.start && m < w.end
	} else {
		inside = m >= w.start || m < w.end
	}
	if !inside {
		return time.Time{}, false
	}
	local := now.In(w.loc)
	y, mo, d := local.Date()
	end := time.Date(y, mo, d, w.end/60, w.end%60, 0, 0, w.loc)
	if !end.After(local) {
		end = time.Date(y, mo, d+1, w.end/60, w.end%60, 0, 0, w.loc)
	}
	return end.UTC(), true
}

// Reads are the input sections Evaluate reads (none of them (the event type, the clock and its config are enough)): the
// module asks for only these (sdk.Reads), which saves the guest building
// the others on every call.
const Reads abi.Sections = 0

// Evaluate applies the policy to one event.
func Evaluate(in abi.Input, c *Config) abi.Output {
	if slices.Contains(c.Exempt, in.Event.Type) {
		// The same answer for every event of the type: the relay need
		// not call again for it (until the plugin or config changes).
		out := abi.Allow()
		out.IgnoreType = true
		return out
	}
	if in.Baseline.Enforced {
		return abi.Allow()
	}
	w := c.Default
	if uw, ok := c.Users[in.Event.User]; ok {
		w = uw
	}
	if w == nil {
		return abi.Allow()
	}
	end, inside := w.Until(in.Now)
	if !inside {
		return abi.Allow()
	}
	if c.Action == ActionSuppress {
		return abi.Suppress(Reason)
	}
	return abi.Defer(end, Reason)
}
