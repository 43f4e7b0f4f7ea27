package relaytest

import "strings"

// IDForm is one id of the id grammar's table (relay.CheckID), shared by
// the tests of both APIs so they accept and refuse the same ids.
type IDForm struct {
	Name string
	ID   string
	OK   bool
}

// IDForms are accepted and refused ids, with the reason a refused one
// names (a substring of the message).
var IDForms = []struct {
	IDForm
	Reason string
}{
	{IDForm{"ascii", "evt-123", true}, ""},
	{IDForm{"email", "jane.doe+mfa@example.com", true}, ""},
	{IDForm{"utf8 name", "josé", true}, ""},
	{IDForm{"cjk", "用户-42", true}, ""},
	{IDForm{"space inside", "Jane Doe", true}, ""},
	{IDForm{"slash", "okta/evt/7", true}, ""},
	{IDForm{"reserved url chars", "a?b#c%d&e=f", true}, ""},
	{IDForm{"old internal suffix", "x~withdraw", true}, ""},
	{IDForm{"tilde inside", "a~b", true}, ""},
	{IDForm{"128 runes", strings.Repeat("é", 128), true}, ""},
	{IDForm{"empty", "", false}, "must not be empty"},
	{IDForm{"129 runes", strings.Repeat("é", 129), false}, "longer than 128"},
	{IDForm{"newline", "a\nb", false}, "control character U+000A"},
	{IDForm{"tab", "a\tb", false}, "control character U+0009"},
	{IDForm{"nul", "a\x00b", false}, "control character U+0000"},
	{IDForm{"del", "a\x7fb", false}, "control character U+007F"},
	{IDForm{"c1", "a\u0085b", false}, "control character U+0085"},
	{IDForm{"bidi override", "a\u202eb", false}, "U+202E"},
	{IDForm{"zero width joiner", "a\u200db", false}, "U+200D"},
	{IDForm{"bom", "\ufeffa", false}, "U+FEFF"},
	{IDForm{"no-break space", "a\u00a0b", false}, "U+00A0"},
	{IDForm{"line separator", "a\u2028b", false}, "U+2028"},
	{IDForm{"leading space", " a", false}, "begin or end with a space"},
	{IDForm{"trailing space", "a ", false}, "begin or end with a space"},
	{IDForm{"dot", ".", false}, `must not be "."`},
	{IDForm{"dot dot", "..", false}, `must not be ".."`},
	{IDForm{"internal prefix", "~withdraw~x", false}, "reserved"},
	{IDForm{"invalid utf8", "a\xffb", false}, "not valid UTF-8"},
}
