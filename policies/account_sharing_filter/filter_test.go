package accountsharingfilter

import (
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/policies/internal/readstest"
)

func TestEvaluate(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"internal_owners":["svc-backup@partner.example","@Corp.Example"]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, typ, owner, verdict string
	}{
		{"domain suffix", "account_shared", "alice@corp.example", "suppress"},
		{"suffix ignores case", "account_shared", "Bob@CORP.example", "suppress"},
		{"exact", "account_shared", "svc-backup@partner.example", "suppress"},
		{"other at partner", "account_shared", "eve@partner.example", "allow"},
		{"lookalike domain", "account_shared", "mallory@evilcorp.example", "allow"},
		{"bare suffix is not an owner", "account_shared", "@corp.example", "allow"},
		{"no owner", "account_shared", "", "allow"},
		{"other type", "otp_received", "alice@corp.example", "allow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := abi.Input{Event: abi.Event{Type: tc.typ, Data: map[string]string{"owner": tc.owner}}}
			out := evaluate(t, in, cfg)
			if out.Verdict != tc.verdict {
				t.Fatalf("verdict %q, want %q", out.Verdict, tc.verdict)
			}
			if tc.verdict == "suppress" && out.Reason != Reason {
				t.Errorf("reason %q", out.Reason)
			}
		})
	}
	none, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if out := evaluate(t, abi.Input{Event: abi.Event{Type: "account_shared", Data: map[string]string{"owner": "a@b"}}}, none); out.Verdict != "allow" {
		t.Errorf("empty config: %+v", out)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"internal_owners":["ok@x", " "]}`, "internal_owners[1]: empty owner"},
		{`{"owners":[]}`, `unknown field "owners"`},
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
