package otpredaction

import (
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/policies/internal/readstest"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, code, want string }{
		{"Your code is 123456", "", "Your code is ••••"},
		{"Code 123 456 for GitHub", "", "Code •••• for GitHub"},
		{"Code 123-456", "", "Code ••••"},
		{"pin 1234, otp 87654321", "", "pin ••••, otp ••••"},
		{"short 123 and 12", "", "short 123 and 12"},
		{"long 1234567890", "", "long ••••"},
		{"card 1234 5678 9012", "", "card ••••"},
		{"alpha code AB12CD here", "ab12cd", "alpha code •••• here"},
		{"no digits", "", "no digits"},
		{"trailing 2026", "", "trailing ••••"},
		{"x123456y", "", "••••"},
		{"", "123456", ""},
		// Digit groups joined by any punctuation or spacing (issue 11).
		{"Code 123.456 for GitHub", "", "Code •••• for GitHub"},
		{"Code 123,456", "", "Code ••••"},
		{"Code 123_456", "", "Code ••••"},
		{"Code 123/456", "", "Code ••••"},
		{"Code 123  456 now", "", "Code •••• now"},
		{"Code 123 - 456", "", "Code ••••"},
		{"Code 12·34·56", "", "Code ••••"},
		// Any Unicode decimal digits.
		{"Code １２３４５６ for GitHub", "", "Code •••• for GitHub"},
		{"رمز ٤٨٢٩١٣", "", "رمز ••••"},
		{"कोड ४८२९१३", "", "कोड ••••"},
		// Letter-digit codes.
		{"Code AB12CD for GitHub", "", "Code •••• for GitHub"},
		{"Your code: G7K2Q9", "", "Your code: ••••"},
		{"Sign in to GitHub", "", "Sign in to GitHub"},
		// The code from data, however the title spells it.
		{"Your token is xk9q 7z", "XK9Q-7Z", "Your token is ••••"},
		{"Code 4 8 2 9 1 3", "482913", "Code ••••"},
		{"Code ４８２ ９１３", "482913", "Code ••••"},
	}
	for _, tc := range tests {
		if got := Redact(tc.in, tc.code); got != tc.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", tc.in, tc.code, got, tc.want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		ev          abi.Event
		title, body string // title "" = unchanged
	}{
		{"code in title and body", abi.Event{Type: "otp_received", Title: "GitHub code 482913", Body: "Use 482913 to sign in",
			Data: map[string]string{"code": "482913", "account": "github"}}, "GitHub code ••••", "Tap to view your code for github"},
		{"clean title", abi.Event{Type: "otp_received", Title: "Code for GitHub", Body: "Tap to copy",
			Data: map[string]string{"code": "482913", "account": "github"}}, "", "Tap to view your code for github"},
		{"no account", abi.Event{Type: "otp_received", Data: map[string]string{"code": "1234"}}, "", "Tap to view your code for your account"},
		{"code in account", abi.Event{Type: "otp_received", Data: map[string]string{"code": "998877", "account": "bank 998877"}}, "", "Tap to view your code for bank ••••"},
		{"alphanumeric code", abi.Event{Type: "otp_received", Title: "Token XK9Q-7Z", Data: map[string]string{"code": "xk9q-7z"}}, "Token ••••", "Tap to view your code for your account"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := evaluate(t, abi.Input{Event: tc.ev}, cfg)
			if err := out.Validate(); err != nil {
				t.Fatal(err)
			}
			if out.Verdict != "allow" || out.Reason != Reason || out.Set == nil || out.Set.Body == nil {
				t.Fatalf("got %+v", out)
			}
			if *out.Set.Body != tc.body {
				t.Errorf("body %q, want %q", *out.Set.Body, tc.body)
			}
			if tc.title == "" && out.Set.Title != nil {
				t.Errorf("title set to %q", *out.Set.Title)
			}
			if tc.title != "" && (out.Set.Title == nil || *out.Set.Title != tc.title) {
				t.Errorf("title %v, want %q", out.Set.Title, tc.title)
			}
			code := strings.ToLower(tc.ev.Data["code"])
			for _, v := range []*string{out.Set.Title, out.Set.Body} {
				if v != nil && code != "" && strings.Contains(strings.ToLower(*v), code) {
					t.Errorf("code %q visible in %q", code, *v)
				}
			}
		})
	}
	if out := evaluate(t, abi.Input{Event: abi.Event{Type: "account_shared", Title: "123456"}}, cfg); out.Set != nil {
		t.Errorf("other type changed: %+v", out)
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"body":"Code ready for {account}"}`))
	if err != nil || c.Body != "Code ready for {account}" {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, tc := range []struct{ json, want string }{
		{`{"body":""}`, "body: must be 1 to 1024 bytes"},
		{`{"body":"your code 1234"}`, "must not contain anything that looks like a code"},
		{`{"text":"x"}`, `unknown field "text"`},
	} {
		if _, err := ParseConfig([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.json, err, tc.want)
		}
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("Your code is 123 456", "123456")
	f.Add("é1234é", "")
	f.Fuzz(func(t *testing.T, s, code string) {
		r := Redact(s, code)
		if again := Redact(r, ""); again != r {
			t.Fatalf("Redact(%q) = %q still has a digit run: %q", s, r, again)
		}
		c := strings.ToLower(strings.TrimSpace(code))
		if c != "" && !strings.Contains(c, "•") && len(strings.ToLower(s)) == len(s) && strings.Contains(strings.ToLower(r), c) {
			t.Fatalf("Redact(%q, %q) = %q keeps the code", s, code, r)
		}
	})
}

// FuzzRedactASCII: the ASCII path answers exactly as the general one.
func FuzzRedactASCII(f *testing.F) {
	for _, seed := range [][2]string{
		{"Code 482913 for GitHub", "482913"},
		{"Your code is 123 456", "123-456"},
		{"AB482913CD and 12 34 and 1 2 3 4", "482913"},
		{"x12y 1234567890123456789 ab12cd34ef56gh78ij90", "AbC"},
		{"4829134829 13", "482913"},
		{"12.482913.34 56", "482913"},
		{"a1b2c3d4e5f6g7h8i9j0k1", "zzz"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, s, code string) {
		var buf [32]byte
		want, ok := asciiWant(buf[:0], s, code)
		if !ok {
			t.Skip("not the ASCII path's input")
		}
		if got, exp := redactASCII(s, want), redactUnicode(s, code); got != exp {
			t.Fatalf("Redact(%q, %q): ASCII path %q, general path %q", s, code, got, exp)
		}
	})
}

// TestCodeNeverReachesLockScreen: the example, through Evaluate.
func TestCodeNeverReachesLockScreen(t *testing.T) {
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, title := range []string{"Code 123.456 for GitHub", "Code 123,456 for GitHub", "Code 123_456 for GitHub",
		"Code 123/456 for GitHub", "Code 123  456 for GitHub", "Code １２３４５６ for GitHub", "Code ١٢٣٤٥٦ for GitHub"} {
		out := evaluate(t, abi.Input{Event: abi.Event{Type: "otp_received", Title: title, Body: "Use " + title,
			Data: map[string]string{"account": "github"}}}, cfg)
		if out.Set == nil || out.Set.Title == nil || *out.Set.Title != "Code •••• for GitHub" {
			t.Errorf("%q: title %v", title, out.Set)
		}
		if out.Set.Body == nil || strings.ContainsAny(*out.Set.Body, "0123456789") {
			t.Errorf("%q: body %v", title, out.Set.Body)
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
