package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/edgerelay/edgerelay/relay"
)

// sizeUnits are the suffixes parseSize accepts, largest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"GiB", 1 << 30},
	{"MiB", 1 << 20},
	{"KiB", 1 << 10},
	{"B", 1},
}

// parseSize parses a byte size: a plain count ("1048576", "1048576B") or a
// count with a binary unit ("512KiB", "32MiB", "1GiB"). Decimal units
// (KB, MB) are refused rather than guessed at.
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	num = strings.TrimSpace(num)
	if num == "" || strings.IndexFunc(num, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, errors.New("not a size")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, errors.New("size out of range")
	}
	return n * mult, nil
}

// formatSize renders n with the largest unit that divides it exactly.
func formatSize(n int64) string {
	for _, u := range sizeUnits[:3] {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseMode parses an octal permission string ("0660", "660", "0o660").
func parseMode(s string) (os.FileMode, bool) {
	t := strings.TrimPrefix(s, "0o")
	if t == "" || len(t) > 4 {
		return 0, false
	}
	m, err := strconv.ParseUint(t, 8, 32)
	if err != nil || m > 0o777 {
		return 0, false
	}
	return os.FileMode(m), true
}

// splitHostPort checks a listen address "host:port" (host may be empty for
// all interfaces) and returns its parts.
func splitHostPort(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, errors.New(`must be "host:port", such as "127.0.0.1:8480"`)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number between 0 and 65535", p)
	}
	return h, n, nil
}

// isLoopback reports whether a listen host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkBaseURL validates a provider endpoint: an http(s) URL with a host and
// no path, query or credentials. It returns the URL without a trailing "/".
func checkBaseURL(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", errors.New("not a URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return "", errors.New(`must start with "https://" (or "http://")`)
	case u.Host == "" || u.Hostname() == "":
		return "", errors.New("has no host")
	case u.User != nil:
		return "", errors.New("must not contain credentials")
	case u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", errors.New(`must be a base URL with no path, such as "https://127.0.0.1:8443"; the relay adds the path`)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("port %q is not a number between 1 and 65535", p)
		}
	}
	return u.Scheme + "://" + u.Host, nil
}

// checkNATSURLs validates a comma-separated NATS server list.
func checkNATSURLs(s string) error {
	for part := range strings.SplitSeq(s, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("%q is not a URL", part)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf(`%q: scheme must be nats, tls, ws or wss, as in "nats://127.0.0.1:4222"`, part)
		}
		if u.Host == "" {
			return fmt.Errorf("%q has no host", part)
		}
	}
	return nil
}

// checkNATSName validates a NATS server or cluster name: it appears in
// subjects, so no spaces, dots or wildcards.
func checkNATSName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("must be 1 to 64 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("%q is not allowed: use letters, digits, - and _", r)
		}
	}
	return nil
}

// checkActions validates a notification's offered answers.
func checkActions(actions []string) error {
	if len(actions) > relay.MaxActions {
		return fmt.Errorf("%d actions; at most %d are allowed", len(actions), relay.MaxActions)
	}
	seen := make(map[string]bool, len(actions))
	for i, a := range actions {
		switch {
		case strings.TrimSpace(a) == "":
			return fmt.Errorf("action %d is empty", i+1)
		case len(a) > relay.MaxActionLen:
			return fmt.Errorf("action %q is longer than %d bytes", a, relay.MaxActionLen)
		case seen[a]:
			return fmt.Errorf("action %q is listed twice", a)
		}
		seen[a] = true
	}
	return nil
}
