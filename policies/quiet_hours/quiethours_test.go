package quiethours

import (
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/policies/internal/readstest"
)

const cfgJSON = `{"default":{"start":"22:00","end":"07:00","tz":"Europe/Paris"},
"users":{"u-ny":{"start":"13:00","end":"14:30","tz":"America/New_York"}},"action":"defer"}`

func input(now, typ, user string, enforced bool) abi.Input {
	t, err := time.Parse(time.RFC3339, now)
	if err != nil {
		panic(err)
	}
	return abi.Input{ABI: abi.Version, Now: t, Event: abi.Event{ID: "e", User: user, Type: typ},
		Baseline: abi.Baseline{Verdict: "deliver", Reason: "enabled", Enforced: enforced}}
}

func TestEvaluate(t *testing.T) {
	cfg, err := ParseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	suppressCfg, err := ParseConfig([]byte(`{"default":{"start":"22:00","end":"07:00"},"action":"suppress"}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cfg       *Config
		in        abi.Input
		verdict   string
		deferTill string
	}{
		// Paris is UTC+1 in November: 22:00 local = 21:00Z, 07:00 local = 06:00Z.
		{"before window", cfg, input("2026-11-27T20:59:00Z", "account_shared", "u-1", false), "allow", ""},
		{"window start", cfg, input("2026-11-27T21:00:00Z", "account_shared", "u-1", false), "defer", "2026-11-28T06:00:00Z"},
		{"after midnight", cfg, input("2026-11-28T02:00:00Z", "otp_received", "u-1", false), "defer", "2026-11-28T06:00:00Z"},
		{"window end", cfg, input("2026-11-28T06:00:00Z", "account_shared", "u-1", false), "allow", ""},
		{"summer time", cfg, input("2026-07-01T20:30:00Z", "account_shared", "u-1", false), "defer", "2026-07-02T05:00:00Z"},
		{"enforced passes", cfg, input("2026-11-28T02:00:00Z", "otp_received", "u-1", true), "allow", ""},
		{"mfa passes", cfg, input("2026-11-28T02:00:00Z", "identity_verification", "u-1", false), "allow", ""},
		{"per-user window", cfg, input("2026-11-27T18:15:00Z", "account_shared", "u-ny", false), "defer", "2026-11-27T19:30:00Z"},
		{"per-user outside", cfg, input("2026-11-28T02:00:00Z", "account_shared", "u-ny", false), "allow", ""},
		{"suppress action, UTC", suppressCfg, input("2026-11-27T23:00:00Z", "account_shared", "u-1", false), "suppress", ""},
		{"no config", mustParse(t, nil), input("2026-11-27T23:00:00Z", "account_shared", "u-1", false), "allow", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := evaluate(t, tc.in, tc.cfg)
			if out.Verdict != tc.verdict {
				t.Fatalf("verdict %q, want %q (%+v)", out.Verdict, tc.verdict, out)
			}
			if err := out.Validate(); err != nil {
				t.Fatal(err)
			}
			if tc.deferTill != "" {
				if got := out.DeferUntil.Format(time.RFC3339); got != tc.deferTill {
					t.Errorf("defer_until %s, want %s", got, tc.deferTill)
				}
			}
			if tc.verdict != "allow" && out.Reason != Reason {
				t.Errorf("reason %q", out.Reason)
			}
		})
	}
}

func mustParse(t *testing.T, raw []byte) *Config {
	t.Helper()
	c, err := ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDSTGap(t *testing.T) {
	// The window ends at 02:30 on the night Paris springs forward (02:00 →
	// 03:00): the end must still be a real instant after now.
	c := mustParse(t, []byte(`{"default":{"start":"22:00","end":"02:30","tz":"Europe/Paris"}}`))
	in := input("2026-03-29T00:30:00Z", "account_shared", "u", false) // 01:30 CET
	out := evaluate(t, in, c)
	if out.Verdict != "defer" || !out.DeferUntil.After(in.Now) || out.DeferUntil.Sub(in.Now) > 2*time.Hour {
		t.Fatalf("got %+v", out)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"bad action", `{"action":"drop"}`, `action: "drop" is not defer or suppress`},
		{"bad start", `{"default":{"start":"25:00","end":"07:00"}}`, `default: start: "25:00" is not HH:MM`},
		{"short clock", `{"default":{"start":"7:00","end":"08:00"}}`, `start: "7:00" is not HH:MM`},
		{"equal", `{"default":{"start":"07:00","end":"07:00"}}`, "start and end are both 07:00"},
		{"bad tz", `{"users":{"u":{"start":"22:00","end":"07:00","tz":"Mars/Base"}}}`, `users.u: tz: unknown time zone "Mars/Base"`},
		{"null user", `{"users":{"u":null}}`, "users.u: missing window"},
		{"unknown field", `{"actions":"defer"}`, `unknown field "actions"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestZoneOffsetCache: the cached zone offset gives the same answers as a
// fresh window across both DST changes of the year, walking forward and
// backward in time.
func TestZoneOffsetCache(t *testing.T) {
	c, err := ParseConfig([]byte(`{"default":{"start":"01:30","end":"03:30","tz":"Europe/Paris"}}`))
	if err != nil {
		t.Fatal(err)
	}
	shared := c.Default
	check := func(now time.Time) {
		fc, _ := ParseConfig([]byte(`{"default":{"start":"01:30","end":"03:30","tz":"Europe/Paris"}}`))
		e1, in1 := shared.Until(now)
		e2, in2 := fc.Default.Until(now)
		if in1 != in2 || !e1.Equal(e2) {
			t.Fatalf("%v: cached %v %v, fresh %v %v", now, e1, in1, e2, in2)
		}
	}
	for _, day := range []string{"2026-03-28T00:00:00Z", "2026-10-24T00:00:00Z"} {
		start, _ := time.Parse(time.RFC3339, day)
		for d := time.Duration(0); d < 72*time.Hour; d += 7 * time.Minute {
			check(start.Add(d))
		}
		for d := 72 * time.Hour; d > 0; d -= 11 * time.Minute {
			check(start.Add(d))
		}
	}
}

// An exempt type is allowed whatever else the event says, so the policy
// tells the relay it need not be asked again for the type; any other
// answer depends on the time, the user or the workspace's settings.
func TestIgnoreTypeOnlyForExemptTypes(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"default":{"start":"22:00","end":"07:00","tz":"Europe/Paris"},"exempt":["otp_received"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		in     abi.Input
		ignore bool
	}{
		{"exempt, quiet", input("2026-11-27T23:30:00Z", "otp_received", "u-1", false), true},
		{"exempt, enforced", input("2026-11-27T12:00:00Z", "otp_received", "u-1", true), true},
		{"not exempt, outside", input("2026-11-27T12:00:00Z", "account_shared", "u-1", false), false},
		{"not exempt, enforced", input("2026-11-27T23:30:00Z", "account_shared", "u-1", true), false},
	} {
		out := evaluate(t, tc.in, cfg)
		if out.IgnoreType != tc.ignore || out.Verdict != abi.VerdictAllow {
			t.Errorf("%s: %+v, want allow with ignore_type %v", tc.name, out, tc.ignore)
		}
		if err := out.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
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
