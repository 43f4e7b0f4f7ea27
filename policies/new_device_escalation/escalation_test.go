package newdeviceescalation

import (
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/policies/internal/readstest"
)

func TestEvaluate(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"usual":{"u-42":["FR","de"],"u-none":[]},"default":["US"],"level":"critical"}`))
	if err != nil {
		t.Fatal(err)
	}
	dflt, err := ParseConfig([]byte(`{"default":["US"]}`))
	if err != nil {
		t.Fatal(err)
	}
	ev := func(typ, user, country string) abi.Input {
		in := abi.Input{Event: abi.Event{Type: typ, User: user, Data: map[string]string{}}}
		if country != "" {
			in.Event.Data["country"] = country
		}
		return in
	}
	tests := []struct {
		name  string
		cfg   *Config
		in    abi.Input
		title string // "" means unchanged
		level string
	}{
		{"usual country", cfg, ev("identity_verification", "u-42", "FR"), "", ""},
		{"usual, case-insensitive", cfg, ev("identity_verification", "u-42", "DE"), "", ""},
		{"unusual sign-in", cfg, ev("identity_verification", "u-42", "BR"), "New sign-in from BR — was this you?", "critical"},
		{"unusual device", cfg, ev("new_trusted_device", "u-42", "US"), "New device from US — was this you?", "critical"},
		{"default list", cfg, ev("identity_verification", "u-7", "US"), "", ""},
		{"default list unusual", dflt, ev("new_trusted_device", "u-7", "CN"), "New device from CN — was this you?", "time-sensitive"},
		{"empty user list", cfg, ev("identity_verification", "u-none", "BR"), "", ""},
		{"no country", cfg, ev("identity_verification", "u-42", ""), "", ""},
		{"other type", cfg, ev("otp_received", "u-42", "BR"), "", ""},
		{"long country clipped", cfg, ev("identity_verification", "u-42", strings.Repeat("é", 100)), "New sign-in from " + strings.Repeat("é", 32) + " — was this you?", "critical"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := evaluate(t, tc.in, tc.cfg)
			if out.Verdict != abi.VerdictAllow {
				t.Fatalf("verdict %q", out.Verdict)
			}
			if err := out.Validate(); err != nil {
				t.Fatal(err)
			}
			if tc.title == "" {
				if out.Set != nil {
					t.Fatalf("set %+v, want none", out.Set)
				}
				return
			}
			if out.Set == nil || *out.Set.Title != tc.title || *out.Set.InterruptionLevel != tc.level || out.Reason != Reason {
				t.Fatalf("got %+v", out)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"level":"loud"}`, `level: "loud" is not`},
		{`{"usual":{"u":"FR"}}`, "cannot unmarshal string"},
		{`{"countries":[]}`, `unknown field "countries"`},
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
