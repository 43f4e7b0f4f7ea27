package pushbombingguard

import (
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/policies/internal/readstest"
)

func TestEvaluate(t *testing.T) {
	dflt, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	hour, err := ParseConfig([]byte(`{"max":3,"window":"1h"}`))
	if err != nil {
		t.Fatal(err)
	}
	in := func(typ string, r abi.Recent) abi.Input {
		return abi.Input{Event: abi.Event{Type: typ, Actions: []string{"approve", "deny"}},
			Baseline: abi.Baseline{Verdict: "deliver", Reason: "enforced", Enforced: true},
			User:     abi.User{Recent: map[string]abi.Recent{typ: r}}}
	}
	tests := []struct {
		name    string
		cfg     *Config
		in      abi.Input
		verdict string
		reason  string
	}{
		{"first", dflt, in("identity_verification", abi.Recent{M1: 1, M10: 1, H1: 1}), "allow", ""},
		{"at limit", dflt, in("identity_verification", abi.Recent{M10: 5}), "allow", ""},
		{"first over: suppressed, warned", dflt, in("identity_verification", abi.Recent{M10: 6}), "suppress", ReasonSuppressed},
		{"second over", dflt, in("identity_verification", abi.Recent{M10: 7}), "suppress", ReasonSuppressed},
		{"far over", dflt, in("identity_verification", abi.Recent{M10: 500}), "suppress", ReasonSuppressed},
		{"other window ignored", dflt, in("identity_verification", abi.Recent{M1: 9, H1: 90, M10: 2}), "allow", ""},
		{"hour window", hour, in("identity_verification", abi.Recent{H1: 4}), "suppress", ReasonSuppressed},
		{"hour window over", hour, in("identity_verification", abi.Recent{H1: 5}), "suppress", ReasonSuppressed},
		{"other type", dflt, in("otp_received", abi.Recent{M10: 50}), "allow", ""},
		{"no counts", dflt, abi.Input{Event: abi.Event{Type: "identity_verification"}}, "allow", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := evaluate(t, tc.in, tc.cfg)
			if out.Verdict != tc.verdict || out.Reason != tc.reason {
				t.Fatalf("got %q/%q, want %q/%q", out.Verdict, out.Reason, tc.verdict, tc.reason)
			}
			if err := out.Validate(); err != nil {
				t.Fatal(err)
			}
			// Exactly the first prompt over the limit asks for the
			// warning notice; no prompt is rewritten.
			firstOver := strings.HasPrefix(tc.name, "first over") || tc.name == "hour window"
			if n := out.Notice; firstOver != (n != nil) {
				t.Fatalf("notice %+v, want one: %v", n, firstOver)
			}
			if n := out.Notice; n != nil && (n.Title != WarningTitle || n.Data["warning"] != "push_bombing" || !strings.Contains(n.Body, "blocked")) {
				t.Fatalf("warning %+v", n)
			}
			if out.Set != nil {
				t.Fatalf("set %+v: the guard never rewrites the prompt", out.Set)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"max":0}`, "max: 0 must be at least 1"},
		{`{"window":"5m"}`, `window: "5m" is not 1m, 10m or 1h`},
		{`{"limit":3}`, `unknown field "limit"`},
	} {
		if _, err := ParseConfig([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.json, err, tc.want)
		}
	}
}

// evaluate runs Evaluate as the module does, on only the input sections
// the policy declares (Reads), and checks that it answers as it does with
// the whole input.
func evaluate(t *testing.T, in abi.Input, c *Config) abi.Output {
	t.Helper()
	return readstest.Evaluate(t, Evaluate, Reads, in, c)
}
