package accountsharingfilter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// Reason is the reason the policy gives when it suppresses.
const Reason = "internal_owner"

// Config is the policy's configuration.
type Config struct {
	InternalOwners []string `json:"internal_owners"`

	exact    map[string]bool
	suffixes []string
}

// ParseConfig decodes and validates the plugin config. Unknown fields are
// errors.
func ParseConfig(raw []byte) (*Config, error) {
	c := &Config{}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("decode account_sharing_filter config: %w", err)
		}
	}
	c.exact = map[string]bool{}
	for i, o := range c.InternalOwners {
		o = strings.ToLower(strings.TrimSpace(o))
		switch {
		case o == "" || o == "@":
			return nil, fmt.Errorf("account_sharing_filter config: internal_owners[%d]: empty owner", i)
		case strings.HasPrefix(o, "@"):
			c.suffixes = append(c.suffixes, o)
		default:
			c.exact[o] = true
		}
	}
	return c, nil
}

// Internal reports whether owner is on the allow-list.
func (c *Config) Internal(owner string) bool {
	owner = strings.ToLower(strings.TrimSpace(owner))
	if owner == "" {
		return false
	}
	if c.exact[owner] {
		return true
	}
	for _, s := range c.suffixes {
		if strings.HasSuffix(owner, s) && len(owner) > len(s) {
			return true
		}
	}
	return false
}

// Reads are the input sections Evaluate reads (event.data): the
// module asks for only these (sdk.Reads), which saves the guest building
// the others on every call.
const Reads = abi.SectionEventData

// Evaluate applies the policy to one event.
func Evaluate(in abi.Input, c *Config) abi.Output {
	if in.Event.Type == "account_shared" && c.Internal(in.Event.Data["owner"]) {
		return abi.Suppress(Reason)
	}
	return abi.Allow()
}
