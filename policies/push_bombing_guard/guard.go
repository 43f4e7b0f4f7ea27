package pushbombingguard

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// ReasonSuppressed is the reason of every prompt the guard suppresses: it
// names the guard.
const ReasonSuppressed = "push_bombing_guard"

// WarningTitle is the title of the warning notice.
const WarningTitle = "Repeated sign-in requests blocked"

// Config is the policy's configuration.
type Config struct {
	Max    int    `json:"max"`
	Window string `json:"window"`
}

var windowNames = map[string]string{"1m": "minute", "10m": "10 minutes", "1h": "hour"}

// ParseConfig decodes and validates the plugin config. Unknown fields are
// errors.
func ParseConfig(raw []byte) (*Config, error) {
	c := &Config{Max: 5, Window: "10m"}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("decode push_bombing_guard config: %w", err)
		}
	}
	if c.Max < 1 {
		return nil, fmt.Errorf("push_bombing_guard config: max: %d must be at least 1", c.Max)
	}
	if _, ok := windowNames[c.Window]; !ok {
		return nil, fmt.Errorf("push_bombing_guard config: window: %q is not 1m, 10m or 1h", c.Window)
	}
	return c, nil
}

// Reads are the input sections Evaluate reads (user.recent): the
// module asks for only these (sdk.Reads), which saves the guest building
// the others on every call.
const Reads = abi.SectionRecent

// Evaluate applies the policy to one event.
func Evaluate(in abi.Input, c *Config) abi.Output {
	if in.Event.Type != "identity_verification" {
		return abi.Allow()
	}
	r := in.User.Recent["identity_verification"]
	var n int
	switch c.Window {
	case "1m":
		n = r.M1
	case "1h":
		n = r.H1
	default:
		n = r.M10
	}
	switch {
	case n <= c.Max:
		return abi.Allow()
	case n > c.Max+1:
		return abi.Suppress(ReasonSuppressed)
	}
	// The first prompt over the limit is suppressed like the rest, and
	// the user gets one separate warning: a notice the host sends as its
	// own alert, with no actions, that nobody can approve.
	out := abi.Suppress(ReasonSuppressed)
	out.Notice = &abi.Notice{
		Title: WarningTitle,
		Body: fmt.Sprintf("More than %d sign-in requests for your account arrived in the last %s, "+
			"so further requests are blocked for now. If you are not signing in, someone may know your "+
			"password: change it and never approve a request you did not start.", c.Max, windowNames[c.Window]),
		Data: map[string]string{"warning": "push_bombing"},
	}
	return out
}
