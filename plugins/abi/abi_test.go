package abi

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleInput() Input {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	return Input{
		ABI: Version,
		Now: t0.Add(1500 * time.Millisecond),
		Event: Event{
			ID: "evt-123", Workspace: "acme", User: "u-42", Type: "otp_received",
			Title: "Code for GitHub: 123456", Body: "Your code is 123456 \"quoted\"\n<b>&</b> é 😀",
			Data:     map[string]string{"account": "github", "ip": "203.0.113.9", "code": "123456"},
			Actions:  []string{"approve", "deny"},
			Priority: "high", OccurredAt: t0, ExpiresAt: t0.Add(5 * time.Minute),
		},
		Baseline:  Baseline{Verdict: "deliver", Reason: "enabled"},
		Workspace: Workspace{Settings: map[string]string{"otp_received": "enabled", "identity_verification": "enforced"}},
		User: User{
			Preferences: map[string]bool{"otp_received": true, "account_shared": false},
			Devices:     []Device{{ID: "d1", Platform: "ios", App: "demo"}, {ID: "d2", Platform: "android", App: "demo"}},
			Recent:      map[string]Recent{"otp_received": {M1: 1, M10: 3, H1: 7}},
		},
		Prior:  []Prior{{Plugin: "quiet_hours", Verdict: "allow", Reason: ""}},
		Config: []byte(`{"default":["US"],"n":5}`),
	}
}

func sampleOutput() Output {
	return Output{
		Verdict:    VerdictDefer,
		Reason:     "quiet_hours",
		DeferUntil: time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC),
		Set: &Set{
			Title: String("New sign-in from BR — was this you?"), Body: String("Tap to view\tyour code"),
			InterruptionLevel: String(InterruptionCritical), Category: String(""),
			Data: map[string]string{"warning": "push_bombing"},
		},
		Devices: []string{"d1"},
		Notice:  &Notice{Title: "Repeated sign-in requests blocked", Body: "Not you?\nChange your password.", Data: map[string]string{"warning": "push_bombing"}},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s mismatch\n got: %s\nwant: %s", name, got, want)
	}
}

func TestGoldenInput(t *testing.T) {
	in := sampleInput()
	b := AppendInput(nil, &in)
	golden(t, "input.golden.json", b)
	if !json.Valid(b) {
		t.Fatalf("not valid JSON: %s", b)
	}
	var got Input
	if err := DecodeInput(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, in)
	}
}

func TestGoldenOutput(t *testing.T) {
	out := sampleOutput()
	b := AppendOutput(nil, &out)
	golden(t, "output.golden.json", b)
	if !json.Valid(b) {
		t.Fatalf("not valid JSON: %s", b)
	}
	var got Output
	if err := DecodeOutput(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, out)
	}
	min := Allow()
	golden(t, "output_allow.golden.json", AppendOutput(nil, &min))
}

// mirror types decoded with encoding/json, to cross-check the codec.
type jsonInput struct {
	ABI      int       `json:"abi"`
	Now      time.Time `json:"now"`
	Event    jsonEvent `json:"event"`
	Baseline struct {
		Verdict  string `json:"verdict"`
		Reason   string `json:"reason"`
		Enforced bool   `json:"enforced"`
	} `json:"baseline"`
	Workspace struct {
		Settings map[string]string `json:"settings"`
	} `json:"workspace"`
	User struct {
		Preferences map[string]bool `json:"preferences"`
		Devices     []struct {
			ID       string `json:"id"`
			Platform string `json:"platform"`
			App      string `json:"app"`
		} `json:"devices"`
		Recent map[string]struct {
			M1  int `json:"1m"`
			M10 int `json:"10m"`
			H1  int `json:"1h"`
		} `json:"recent"`
	} `json:"user"`
	Prior []struct {
		Plugin  string `json:"plugin"`
		Verdict string `json:"verdict"`
		Reason  string `json:"reason"`
	} `json:"prior"`
	Config json.RawMessage `json:"config"`
}

type jsonEvent struct {
	ID         string            `json:"id"`
	Workspace  string            `json:"workspace"`
	User       string            `json:"user"`
	Type       string            `json:"type"`
	Title      string            `json:"title,omitempty"`
	Body       string            `json:"body,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	Actions    []string          `json:"actions,omitempty"`
	Priority   string            `json:"priority,omitempty"`
	OccurredAt time.Time         `json:"occurred_at,omitzero"`
	ExpiresAt  time.Time         `json:"expires_at,omitzero"`
}

func TestAgreesWithEncodingJSON(t *testing.T) {
	in := sampleInput()
	b := AppendInput(nil, &in)
	var m jsonInput
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Event.Body != in.Event.Body || m.Event.Title != in.Event.Title || !m.Now.Equal(in.Now) ||
		m.User.Recent["otp_received"].M10 != 3 || string(m.Config) != string(in.Config) ||
		!reflect.DeepEqual(m.Event.Data, in.Event.Data) || m.Prior[0].Plugin != "quiet_hours" {
		t.Errorf("encoding/json read %+v", m)
	}
	// And the other way: what encoding/json writes, the codec reads.
	m.Event.Title = "esc \u2028 \x01 \"x\" <tag> 😀"
	b2, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var got Input
	if err := DecodeInput(b2, &got); err != nil {
		t.Fatal(err)
	}
	if got.Event.Title != m.Event.Title || got.User.Devices[1].Platform != "android" || !got.Event.ExpiresAt.Equal(in.Event.ExpiresAt) {
		t.Errorf("codec read %+v", got)
	}
}

func TestDecodeStrings(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"plain", `"abc"`, "abc"},
		{"escapes", `"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t"},
		{"unicode escape", `"\u00e9\u20AC"`, "é€"},
		{"surrogate pair", `"\ud83d\ude00"`, "😀"},
		{"lone high surrogate", `"\ud83dx"`, "\ufffdx"},
		{"lone low surrogate", `"\ude00"`, "\ufffd"},
		{"high then non-low escape", `"\ud83d\u0041"`, "\ufffdA"},
		{"raw utf8", `"é😀"`, "é😀"},
		{"invalid utf8", "\"a\xffb\"", "a\ufffdb"},
		{"empty", `""`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in Input
			doc := `{"event":{"title":` + tc.json + `}}`
			if err := DecodeInput([]byte(doc), &in); err != nil {
				t.Fatal(err)
			}
			if in.Event.Title != tc.want {
				t.Errorf("got %q, want %q", in.Event.Title, tc.want)
			}
		})
	}
}

func TestDecodeInputErrors(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"not object", `[]`, "expected object, found array"},
		{"empty", ``, "expected object, found end of input"},
		{"trailing", `{} x`, "trailing data"},
		{"wrong type", `{"event":{"title":5}}`, "event.title: expected string, found number"},
		{"bad time", `{"now":"yesterday"}`, `now: invalid RFC 3339 time "yesterday"`},
		{"abi float", `{"abi":1.5}`, "abi: number 1.5 is not an integer"},
		{"abi huge", `{"abi":99999999999}`, "abi: number 99999999999 out of range"},
		{"bad number", `{"abi":01}`, "abi: malformed number"},
		{"recent", `{"user":{"recent":{"x":{"1m":"a"}}}}`, "user.recent.1m: expected number, found string"},
		{"pref", `{"user":{"preferences":{"x":1}}}`, "user.preferences: expected boolean, found number"},
		{"unterminated", `{"event":{"title":"abc`, "unterminated string"},
		{"control char", "{\"event\":{\"title\":\"a\x01\"}}", "control character in string"},
		{"bad escape", `{"event":{"title":"\q"}}`, `invalid escape 'q'`},
		{"bad unicode", `{"event":{"title":"\u12x4"}}`, `invalid \u escape`},
		{"missing colon", `{"abi" 1}`, "expected ':'"},
		{"missing comma", `{"abi":1 "now":null}`, "expected ',' or '}'"},
		{"bad unknown value", `{"future":[1,}`, "future: expected a JSON value"},
		{"bad config", `{"config":{"a":tru}}`, "config: expected boolean"},
		{"deep", `{"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, "nesting deeper than 256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in Input
			err := DecodeInput([]byte(tc.json), &in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %T is not a *FieldError", err)
			}
		})
	}
}

func TestDecodeInputLenient(t *testing.T) {
	doc := `{"abi":1,"future":{"a":[1,2.5e3,-0,"x",true,false,null]},"now":null,
	"event":{"id":"e","extra":1,"data":null,"actions":null},"config":null,"user":{"recent":{"t":{"1m":2.0,"x":1}}}}`
	var in Input
	if err := DecodeInput([]byte(doc), &in); err != nil {
		t.Fatal(err)
	}
	if in.ABI != 1 || in.Event.ID != "e" || in.Config != nil || in.Event.Data != nil || in.User.Recent["t"].M1 != 2 {
		t.Errorf("got %+v", in)
	}
}

func TestDecodeOutputStrict(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"unknown top-level", `{"verdict":"allow","action":"x"}`, `unknown field "action"`},
		{"unknown set field", `{"verdict":"allow","set":{"token":"x"}}`, `set: field "token" is not settable`},
		{"missing verdict", `{}`, "verdict: missing"},
		{"unknown verdict", `{"verdict":"deny"}`, `verdict: unknown verdict "deny"`},
		{"defer without time", `{"verdict":"defer"}`, "defer_until: required with verdict defer"},
		{"title too long", `{"verdict":"allow","set":{"title":"` + strings.Repeat("x", 257) + `"}}`, "set.title: 257 bytes, max 256"},
		{"sound too long", `{"verdict":"allow","set":{"sound":"` + strings.Repeat("x", 65) + `"}}`, "set.sound: 65 bytes, max 64"},
		{"bad level", `{"verdict":"allow","set":{"interruption_level":"loud"}}`, `set.interruption_level: unknown level "loud"`},
		{"bad priority", `{"verdict":"allow","set":{"priority":"urgent"}}`, `set.priority: unknown priority "urgent"`},
		{"empty device", `{"verdict":"allow","devices":[""]}`, "devices[0]: empty device id"},
		{"device type", `{"verdict":"allow","devices":[1]}`, "devices: expected string, found number"},
		{"reason too long", `{"verdict":"suppress","reason":"` + strings.Repeat("r", 300) + `"}`, "reason: 300 bytes, max 256"},
		{"too big", `{"verdict":"allow","reason":"` + strings.Repeat(" ", MaxOutputBytes) + `"}`, "max 65536"},
		{"notice without title", `{"verdict":"suppress","notice":{"body":"b"}}`, "notice.title: required"},
		{"notice unknown field", `{"verdict":"suppress","notice":{"title":"t","actions":["approve"]}}`, `notice: unknown field "actions"`},
		{"notice category", `{"verdict":"suppress","notice":{"title":"t","category":"APPROVE_DENY"}}`, `notice: unknown field "category"`},
		{"notice title too long", `{"verdict":"allow","notice":{"title":"` + strings.Repeat("x", 257) + `"}}`, "notice.title: 257 bytes, max 256"},
		{"notice data empty key", `{"verdict":"allow","notice":{"title":"t","data":{"":"v"}}}`, "notice.data: empty key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out Output
			err := DecodeOutput([]byte(tc.json), &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	var data strings.Builder
	data.WriteString(`{"verdict":"allow","set":{"data":{`)
	for i := range MaxDataEntries + 1 {
		if i > 0 {
			data.WriteByte(',')
		}
		data.WriteString(`"k` + strings.Repeat("x", i) + `":"v"`)
	}
	data.WriteString(`}}}`)
	var out Output
	if err := DecodeOutput([]byte(data.String()), &out); err == nil || !strings.Contains(err.Error(), "set.data: 33 entries, max 32") {
		t.Errorf("data entries: got %v", err)
	}
}

func TestDecodeOutputNulls(t *testing.T) {
	var out Output
	if err := DecodeOutput([]byte(` {"verdict":"allow","reason":null,"set":null,"devices":null,"defer_until":null} `), &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, Allow()) {
		t.Errorf("got %+v", out)
	}
	if err := DecodeOutput([]byte(`{"verdict":"allow","set":{"title":null,"category":""},"devices":[]}`), &out); err != nil {
		t.Fatal(err)
	}
	if out.Set.Title != nil || out.Set.Category == nil || *out.Set.Category != "" || out.Devices == nil || len(out.Devices) != 0 {
		t.Errorf("got %+v %+v", out, out.Set)
	}
}

func TestMaxSetLen(t *testing.T) {
	for _, f := range SettableFields {
		if MaxSetLen(f) == 0 {
			t.Errorf("MaxSetLen(%q) = 0", f)
		}
	}
	if MaxSetLen("token") != 0 {
		t.Error("token is settable")
	}
}

func TestEncodeEscapes(t *testing.T) {
	out := Output{Verdict: "allow", Reason: "a\"b\\c\x00\x1f\n\r\t\xff é"}
	b := AppendOutput(nil, &out)
	want := `{"verdict":"allow","reason":"a\"b\\c\u0000\u001f\n\r\t` + "\ufffd é" + `"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil || m["reason"] != "a\"b\\c\x00\x1f\n\r\t\ufffd é" {
		t.Errorf("encoding/json read %q, %v", m["reason"], err)
	}
}

// TestInputDecoderConfig: an InputDecoder validates a config once and
// recognises the same bytes afterwards, but never accepts a different or
// invalid config because it resembles the last one.
func TestInputDecoderConfig(t *testing.T) {
	var dec InputDecoder
	doc := func(cfg string) []byte { return []byte(`{"abi":1,"config":` + cfg + `,"now":null}`) }
	for _, tc := range []struct {
		cfg, want string
		err       bool
	}{
		{`{"a":[1,2]}`, `{"a":[1,2]}`, false},
		{`{"a":[1,2]}`, `{"a":[1,2]}`, false}, // remembered
		{`{"a":[1,2]}x`, "", true},            // same prefix, then garbage
		{`{"a":[1,2]`, "", true},              // truncated
		{`{"a":[1,3]}`, `{"a":[1,3]}`, false},
		{`1`, `1`, false},
		{`12`, `12`, false}, // a longer number with the last one as prefix
		{`null`, ``, false},
	} {
		var in Input
		err := dec.Decode(doc(tc.cfg), &in)
		if (err != nil) != tc.err || (!tc.err && string(in.Config) != tc.want) {
			t.Fatalf("config %s: got %q, %v", tc.cfg, in.Config, err)
		}
	}
}
