package newdeviceescalation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// Reason is the reason the policy gives when it escalates.
const Reason = "unusual_country"

// Config is the policy's configuration.
type Config struct {
	Usual   map[string][]string `json:"usual"`
	Default []string            `json:"default"`
	Level   string              `json:"level"`
}

// ParseConfig decodes and validates the plugin config. Unknown fields are
// errors.
func ParseConfig(raw []byte) (*Config, error) {
	c := &Config{Level: abi.InterruptionTimeSensitive}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("decode new_device_escalation config: %w", err)
		}
	}
	switch c.Level {
	case abi.InterruptionPassive, abi.InterruptionActive, abi.InterruptionTimeSensitive, abi.InterruptionCritical:
	default:
		return nil, fmt.Errorf("new_device_escalation config: level: %q is not passive, active, time-sensitive or critical", c.Level)
	}
	return c, nil
}

// Reads are the input sections Evaluate reads (event.data): the
// module asks for only these (sdk.Reads), which saves the guest building
// the others on every call.
const Reads = abi.SectionEventData

// Evaluate applies the policy to one event.
func Evaluate(in abi.Input, c *Config) abi.Output {
	var what string
	switch in.Event.Type {
	case "identity_verification":
		what = "sign-in"
	case "new_trusted_device":
		what = "device"
	default:
		return abi.Allow()
	}
	country := strings.TrimSpace(in.Event.Data["country"])
	if country == "" {
		return abi.Allow()
	}
	usual, ok := c.Usual[in.Event.User]
	if !ok {
		usual = c.Default
	}
	if len(usual) == 0 {
		return abi.Allow()
	}
	for _, u := range usual {
		if strings.EqualFold(u, country) {
			return abi.Allow()
		}
	}
	// One allocation for the Set and the strings it points to (in a guest
	// each allocation counts).
	set := &struct {
		abi.Set
		title, level string
	}{title: "New " + what + " from " + clip(country, 64) + " — was this you?", level: c.Level}
	set.Title, set.InterruptionLevel = &set.title, &set.level
	out := abi.Allow()
	out.Reason = Reason
	out.Set = &set.Set
	return out
}

// clip shortens s to at most n bytes without splitting a rune.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
