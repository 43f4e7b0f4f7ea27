package policy

import (
	"slices"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	src := `
order             = 10
types             = ["identity_verification", "otp_received"]
workspaces        = ["ws1"]
override_enforced = true
on_error          = "suppress"
mode              = "shadow"

config {
  limit   = 5
  window  = "10m"
  owners  = ["@corp.example"]
  nested  = { a = true, b = [1, 2] }
}
`
	m, err := ParseManifest("x.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if m.Order != 10 || !slices.Equal(m.Types, []string{"identity_verification", "otp_received"}) ||
		!slices.Equal(m.Workspaces, []string{"ws1"}) || !m.OverrideEnforced || m.OnError != OnErrorSuppress ||
		m.Mode != ModeShadow {
		t.Fatalf("%+v", m)
	}
	want := `{"limit":5,"nested":{"a":true,"b":[1,2]},"owners":["@corp.example"],"window":"10m"}`
	if string(m.Config) != want {
		t.Fatalf("config %s\nwant   %s", m.Config, want)
	}

	m, err = ParseManifest("empty.hcl", nil)
	if err != nil || m.Mode != ModeEnforce || m.OnError != "" || m.Config != nil {
		t.Fatalf("%+v %v", m, err)
	}
	m, err = ParseManifest("c.hcl", []byte("config {}\n"))
	if err != nil || string(m.Config) != "{}" {
		t.Fatalf("%s %v", m.Config, err)
	}
}

func TestParseManifestErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{`order = "x"`, `x.hcl:1,10-11: Unsuitable value type`},
		{`mode = "loud"`, `mode "loud": want "enforce" or "shadow"`},
		{`on_error = "explode"`, `on_error "explode"`},
		{`colour = 1`, `x.hcl:1,1-7: Unsupported argument`},
		{`types = [""]`, `types[0]: empty type`},
		{"config {\n  inner {}\n}", `x.hcl:2,3-8: Unexpected "inner" block`},
		{`order = `, `x.hcl:1,9-9: Missing expression`},
		{"config {\n a = b\n}", `x.hcl:2,6-7: Expression not allowed in a manifest; found a variable`},
	}
	for _, tc := range tests {
		_, err := ParseManifest("x.hcl", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`order = 1
types = ["a"]
config { x = { y = [1, "2", true, null] } }`))
	f.Add([]byte(`mode = "shadow"`))
	f.Add([]byte("config {\n a = 1.5e300\n b = \"\\u00e9\"\n}"))
	f.Fuzz(func(t *testing.T, src []byte) {
		m, err := ParseManifest("f.hcl", src)
		if err == nil && m.Mode != ModeEnforce && m.Mode != ModeShadow {
			t.Fatalf("mode %q", m.Mode)
		}
	})
}

// TestManifestRefusesExpressions: a manifest is data. Expressions (for,
// splats, conditionals, function calls, templates, arithmetic) are refused
// before anything evaluates them, naming the file and line: nested for
// expressions in a 660-byte manifest once allocated 4.2 GiB.
func TestManifestRefusesExpressions(t *testing.T) {
	tests := []struct{ src, pos, what string }{
		{"order = 1\nconfig {\n  x = [for i in [1, 2]: i]\n}", "m.hcl:3,7-", "a for expression"},
		{"config {\n  x = upper(\"a\")\n}", "m.hcl:2,7-", "a function call"},
		{"config {\n  x = [{a = 1}][*].a\n}", "m.hcl:2,7-", "a splat"},
		{"config {\n  x = true ? 1 : 2\n}", "m.hcl:2,7-", "a conditional"},
		{"config {\n  x = \"a${1}\"\n}", "m.hcl:2,7-", "a template"},
		{"config {\n  x = 1 + 1\n}", "m.hcl:2,7-", "an operator"},
		{"order = 1 + 1", "m.hcl:1,9-", "an operator"},
		{"config {\n  x = { (\"a\") = 1 }\n}", "m.hcl:2,9-", "a computed key"},
		{"config {\n  x = \"" + strings.Repeat("a", MaxConfigBytes) + "\"\n}", "m.hcl:1", "config is over"},
	}
	for _, tc := range tests {
		_, err := ParseManifest("m.hcl", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.pos) || !strings.Contains(err.Error(), tc.what) {
			t.Errorf("%.60q: error %v, want %q and %q", tc.src, err, tc.pos, tc.what)
		}
	}
	// Plain data still parses: strings, numbers (negative too), bools,
	// null, lists, objects with bare or quoted keys.
	m, err := ParseManifest("m.hcl", []byte("order = -1\nconfig {\n  a = { b = [1, -2.5, \"x\", true, null], \"c d\" = {} }\n}"))
	if err != nil || m.Order != -1 || string(m.Config) != `{"a":{"b":[1,-2.5,"x",true,null],"c d":{}}}` {
		t.Fatalf("%+v %s %v", m, m.Config, err)
	}
}
