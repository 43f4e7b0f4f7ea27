package relay

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The id grammar, shared by the socket API and the app API for workspace,
// user, device and event ids (docs/app-api.md "Ids"). It accepts what
// identity systems use (e-mail addresses, UTF-8 names, spaces inside a
// name, '/', ':', '@', '+', '%', …) and refuses what breaks paths, logs or
// the relay's own namespace:
//
//   - empty, or longer than MaxIDLen characters (runes);
//   - invalid UTF-8;
//   - control characters (C0, DEL, C1), and every other character that is
//     not printable: format characters (bidi overrides and isolates, zero
//     width joiners, the BOM, soft hyphen), line and paragraph separators,
//     spaces other than U+0020, private-use and unassigned code points;
//   - a leading or trailing space;
//   - "." and ".." (path segments a URL cleaner would remove);
//   - a leading InternalPrefix: ids that begin with it are the relay's own
//     (InternalID), so an upstream id can never collide with them.
//
// An id with characters reserved in URLs ('/', '?', '#', '%', space, …) is
// addressed in a path by percent-encoding them (%2F, %3F, %23, %25, %20).

// CheckID reports whether s is a valid id; the error is the reason, for a
// message that names the field (e.g. "must not be empty").
func CheckID(s string) error {
	if err := checkIDChars(s, MaxIDLen); err != nil {
		return err
	}
	if strings.HasPrefix(s, InternalPrefix) {
		return fmt.Errorf("must not begin with %q (reserved for the relay's own events)", InternalPrefix)
	}
	return nil
}

// CheckIDOrInternal is CheckID that also accepts an internal id (one
// InternalID made): for reading what the relay stored, never for what
// upstream writes.
func CheckIDOrInternal(s string) error {
	if strings.HasPrefix(s, InternalPrefix) {
		return checkIDChars(s, maxInternalIDLen)
	}
	return CheckID(s)
}

// maxInternalIDLen bounds an internal id: a prefix, a kind, perhaps a
// plugin name, and an id.
const maxInternalIDLen = 3 * MaxIDLen

func checkIDChars(s string, maxLen int) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	if len(s) > maxLen && utf8.RuneCountInString(s) > maxLen {
		return fmt.Errorf("is longer than %d characters", maxLen)
	}
	for _, r := range s {
		switch {
		case r == ' ':
		case unicode.IsControl(r):
			return fmt.Errorf("contains control character %U", r)
		case !unicode.IsPrint(r):
			return fmt.Errorf("contains invisible or non-printable character %U", r)
		}
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return errors.New("must not begin or end with a space")
	}
	if s == "." || s == ".." {
		return fmt.Errorf("must not be %q", s)
	}
	return nil
}
