package otpredaction

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// Reason is the reason the policy gives when it rewrites a notification.
const Reason = "otp_redacted"

// Mask replaces a code in visible text.
const Mask = "••••"

// DefaultBody is the body template when the config has none.
const DefaultBody = "Tap to view your code for {account}"

// Config is the policy's configuration.
type Config struct {
	Body string `json:"body"`
}

// ParseConfig decodes and validates the plugin config. Unknown fields are
// errors.
func ParseConfig(raw []byte) (*Config, error) {
	c := &Config{Body: DefaultBody}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("decode otp_redaction config: %w", err)
		}
	}
	if strings.TrimSpace(c.Body) == "" || len(c.Body) > 1024 || !utf8.ValidString(c.Body) {
		return nil, fmt.Errorf("otp_redaction config: body: must be 1 to 1024 bytes of UTF-8")
	}
	if Redact(c.Body, "") != c.Body {
		return nil, fmt.Errorf("otp_redaction config: body: must not contain a 4 to 8 digit run")
	}
	return c, nil
}

// Evaluate applies the policy to one event.
func Evaluate(in abi.Input, c *Config) abi.Output {
	if in.Event.Type != "otp_received" {
		return abi.Allow()
	}
	code := in.Event.Data["code"]
	account := clip(Redact(strings.TrimSpace(in.Event.Data["account"]), code), 64)
	if account == "" {
		account = "your account"
	}
	out := abi.Allow()
	out.Reason = Reason
	out.Set = &abi.Set{Body: abi.String(strings.ReplaceAll(c.Body, "{account}", account))}
	if t := Redact(in.Event.Title, code); t != in.Event.Title {
		out.Set.Title = abi.String(clip(t, abi.MaxTitleLen))
	}
	return out
}

// Redact masks in s every occurrence of code (ignoring case, when code is
// not blank) and every run of 4 to 8 digits.
func Redact(s, code string) string {
	if code = strings.TrimSpace(code); code != "" {
		s = replaceFold(s, code, Mask)
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		// A run: digit groups joined by single ' ' or '-'.
		start, end, digits := i, i, 0
		var groups [][2]int
		for j := i; ; {
			g := j
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			groups = append(groups, [2]int{g, j})
			digits += j - g
			end = j
			if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		if digits >= 4 && digits <= 8 {
			b.WriteString(s[last:start])
			b.WriteString(Mask)
			last = end
		} else if digits > 8 {
			for _, g := range groups {
				if n := g[1] - g[0]; n >= 4 && n <= 8 {
					b.WriteString(s[last:g[0]])
					b.WriteString(Mask)
					last = g[1]
				}
			}
		}
		i = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// replaceFold replaces every case-insensitive occurrence of old in s.
func replaceFold(s, old, repl string) string {
	ls, lo := strings.ToLower(s), strings.ToLower(old)
	if len(ls) != len(s) || !strings.Contains(ls, lo) {
		if len(ls) != len(s) { // lowering changed byte offsets: fall back to exact
			return strings.ReplaceAll(s, old, repl)
		}
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(ls, lo)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(repl)
		s, ls = s[i+len(lo):], ls[i+len(lo):]
	}
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
