package relay_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/relaytest"
)

func TestCheckID(t *testing.T) {
	for _, tc := range relaytest.IDForms {
		t.Run(tc.Name, func(t *testing.T) {
			err := relay.CheckID(tc.ID)
			if tc.OK {
				if err != nil {
					t.Fatalf("CheckID(%q) = %v, want nil", tc.ID, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.Reason) {
				t.Fatalf("CheckID(%q) = %v, want an error naming %q", tc.ID, err, tc.Reason)
			}
		})
	}
}

func TestInternalIDOutsideUpstreamIDs(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"evt-1", "x~withdraw", "okta/7", "a~b", strings.Repeat("é", relay.MaxIDLen)} {
		made := map[string]string{
			"withdraw":    relay.WithdrawID(id),
			"expired":     relay.InternalID(relay.InternalExpired, id),
			"notice":      relay.NoticeID(id, "push_bombing_guard"),
			"notice2":     relay.NoticeID(id, "other"),
			"token-proof": relay.InternalID(relay.InternalTokenProof, id),
		}
		for what, in := range made {
			if relay.CheckID(in) == nil {
				t.Errorf("CheckID(%q) accepts an internal id", in)
			}
			if err := relay.CheckIDOrInternal(in); err != nil {
				t.Errorf("CheckIDOrInternal(%q) = %v", in, err)
			}
			if prev, dup := seen[in]; dup {
				t.Errorf("%s of %q = %q, already made for %s", what, id, in, prev)
			}
			seen[in] = what + " of " + id
		}
	}
	if relay.WithdrawID("x") == "x~withdraw" {
		t.Fatal("the internal withdraw id is still the upstream-reachable old form")
	}
}

// FuzzCheckID: an accepted id is valid UTF-8, 1..MaxIDLen runes, printable
// (spaces only inside), not internal; CheckID never panics.
func FuzzCheckID(f *testing.F) {
	for _, tc := range relaytest.IDForms {
		f.Add(tc.ID)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := relay.CheckID(s)
		internalErr := relay.CheckIDOrInternal(s)
		if err == nil && internalErr != nil {
			t.Fatalf("CheckIDOrInternal refuses %q that CheckID accepts: %v", s, internalErr)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("empty reason for %q", s)
			}
			return
		}
		if !utf8.ValidString(s) {
			t.Fatalf("accepted invalid UTF-8 %q", s)
		}
		if n := utf8.RuneCountInString(s); n == 0 || n > relay.MaxIDLen {
			t.Fatalf("accepted %d runes: %q", n, s)
		}
		if strings.HasPrefix(s, relay.InternalPrefix) || strings.TrimSpace(s) != s || s == "." || s == ".." {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("accepted %q with %U", s, r)
			}
		}
	})
}
