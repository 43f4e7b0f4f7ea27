package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgerelay/edgerelay/relay"
)

const sampleEvent = `{"id":"evt-123","workspace":"acme","user":"u-42","type":"otp_received",
 "title":"Code for GitHub","body":"Tap to copy","data":{"account":"github","ip":"203.0.113.9"},
 "actions":["approve","deny"],"priority":"high","occurred_at":"2026-11-27T10:00:00Z",
 "expires_at":"2026-11-27T10:05:00Z"}`

func TestDecodeEventSample(t *testing.T) {
	ev, err := DecodeEvent([]byte(sampleEvent), knownTestType)
	if err != nil {
		t.Fatal(err)
	}
	want := relay.Event{
		ID: "evt-123", Workspace: "acme", User: "u-42", Type: "otp_received",
		Title: "Code for GitHub", Body: "Tap to copy",
		Data:       map[string]string{"account": "github", "ip": "203.0.113.9"},
		Actions:    []string{"approve", "deny"},
		Priority:   relay.PriorityHigh,
		OccurredAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		ExpiresAt:  time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC),
	}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("got %+v\nwant %+v", ev, want)
	}
}

func TestDecodeEventAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want relay.Event
	}{
		{"minimal", `{"id":"a","workspace":"w","user":"u","type":"otp_received"}`,
			relay.Event{ID: "a", Workspace: "w", User: "u", Type: "otp_received"}},
		{"nulls are absent", `{"id":"a","workspace":"w","user":"u","type":"otp_received","title":null,"data":null,"actions":null,"priority":null,"expires_at":null}`,
			relay.Event{ID: "a", Workspace: "w", User: "u", Type: "otp_received"}},
		{"escapes", `{"id":"a\u00e9\ud83d\ude00","workspace":"w\/x","user":"\"u\"","type":"otp_received","body":"l1\nl2\tx"}`,
			relay.Event{ID: "aé😀", Workspace: "w/x", User: `"u"`, Type: "otp_received", Body: "l1\nl2\tx"}},
		{"escaped field name", `{"\u0069d":"a","workspace":"w","user":"u","type":"otp_received"}`,
			relay.Event{ID: "a", Workspace: "w", User: "u", Type: "otp_received"}},
		{"whitespace", " \r\n\t{ \"id\" : \"a\" , \"workspace\":\"w\",\"user\":\"u\",\"type\":\"otp_received\" , \"actions\" : [ ] , \"data\" : { } } \n",
			relay.Event{ID: "a", Workspace: "w", User: "u", Type: "otp_received"}},
		{"fractional time and offset", `{"id":"a","workspace":"w","user":"u","type":"otp_received","occurred_at":"2026-11-27T10:00:00.5+01:00","expires_at":"2026-11-27T09:00:01Z"}`,
			relay.Event{ID: "a", Workspace: "w", User: "u", Type: "otp_received",
				OccurredAt: time.Date(2026, 11, 27, 9, 0, 0, 5e8, time.UTC), ExpiresAt: time.Date(2026, 11, 27, 9, 0, 1, 0, time.UTC)}},
		{"max id", `{"id":"` + strings.Repeat("é", relay.MaxIDLen) + `","workspace":"w","user":"u","type":"otp_received"}`,
			relay.Event{ID: strings.Repeat("é", relay.MaxIDLen), Workspace: "w", User: "u", Type: "otp_received"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := DecodeEvent([]byte(tc.in), knownTestType)
			if err != nil {
				t.Fatal(err)
			}
			if !eventsEqual(ev, tc.want) {
				t.Fatalf("got %+v\nwant %+v", ev, tc.want)
			}
		})
	}
}

// eventsEqual compares events, times by instant and empty maps and slices
// as absent.
func eventsEqual(a, b relay.Event) bool {
	if !a.OccurredAt.Equal(b.OccurredAt) || !a.ExpiresAt.Equal(b.ExpiresAt) {
		return false
	}
	a.OccurredAt, a.ExpiresAt, b.OccurredAt, b.ExpiresAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	for _, e := range []*relay.Event{&a, &b} {
		if len(e.Data) == 0 {
			e.Data = nil
		}
		if len(e.Actions) == 0 {
			e.Actions = nil
		}
	}
	return reflect.DeepEqual(a, b)
}

// ev builds an event body from the minimal valid one plus extra members.
func ev(extra string) string {
	base := `"id":"a","workspace":"w","user":"u","type":"otp_received"`
	if extra == "" {
		return "{" + base + "}"
	}
	return "{" + base + "," + extra + "}"
}

func TestDecodeEventRejects(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name, in, want string
	}{
		{"empty", ``, `empty event: expected a JSON object`},
		{"spaces", "  \n", `empty event: expected a JSON object`},
		{"array", `[]`, `expected a JSON object, got array`},
		{"number", `42`, `expected a JSON object, got number`},
		{"unknown field", ev(`"foo":1`), `unknown field "foo"`},
		{"unknown field case", `{"ID":"a"}`, `unknown field "ID"`},
		{"long unknown field", `{"` + long(100) + `":"a"}`, `unknown field "` + long(64) + `"`},
		{"duplicate field", ev(`"id":"b"`), `field "id": duplicate field`},
		{"missing id", `{"workspace":"w","user":"u","type":"otp_received"}`, `missing required field "id"`},
		{"missing user", `{"id":"a","workspace":"w","type":"otp_received"}`, `missing required field "user"`},
		{"null user", `{"id":"a","workspace":"w","user":null,"type":"otp_received"}`, `missing required field "user"`},
		{"missing type", `{"id":"a","workspace":"w","user":"u"}`, `missing required field "type"`},
		{"missing all", `{}`, `missing required field "id"`},
		{"unknown type", `{"id":"a","workspace":"w","user":"u","type":"x"}`, `field "type": unknown notification type "x"`},
		{"id number", `{"id":7,"workspace":"w","user":"u","type":"otp_received"}`, `field "id": expected string, got number`},
		{"user object", `{"id":"a","workspace":"w","user":{},"type":"otp_received"}`, `field "user": expected string, got object`},
		{"title bool", ev(`"title":true`), `field "title": expected string, got boolean`},
		{"data array", ev(`"data":[]`), `field "data": expected object, got array`},
		{"data value number", ev(`"data":{"k":1}`), `field "data": value of key "k": expected string, got number`},
		{"data value null", ev(`"data":{"k":null}`), `field "data": value of key "k": expected string, got null`},
		{"actions string", ev(`"actions":"approve"`), `field "actions": expected array of strings, got string`},
		{"actions item", ev(`"actions":["a",2]`), `field "actions": item 1: expected string, got number`},
		{"empty id", `{"id":"","workspace":"w","user":"u","type":"otp_received"}`, `field "id": must not be empty`},
		{"long id", `{"id":"` + long(relay.MaxIDLen+1) + `","workspace":"w","user":"u","type":"otp_received"}`, `field "id": is longer than 128 characters`},
		{"NUL in id", `{"id":"a\u0000b","workspace":"w","user":"u","type":"otp_received"}`, `field "id": contains control character U+0000`},
		{"control in workspace", `{"id":"a","workspace":"w\u001b","user":"u","type":"otp_received"}`, `field "workspace": contains control character U+001B`},
		{"DEL in user", `{"id":"a","workspace":"w","user":"\u007f","type":"otp_received"}`, `field "user": contains control character U+007F`},
		{"zero width in id", `{"id":"a\u200b","workspace":"w","user":"u","type":"otp_received"}`, `field "id": contains invisible or non-printable character U+200B`},
		{"raw control char", "{\"id\":\"a\tb\"}", `field "id": invalid JSON at byte 8: control character U+0009 in string (escape it)`},
		{"long title", ev(`"title":"` + long(relay.MaxTitleLen+1) + `"`), `field "title": is longer than 256 characters`},
		{"newline in title", ev(`"title":"a\nb"`), `field "title": contains control character U+000A`},
		{"long body", ev(`"body":"` + long(relay.MaxBodyLen+1) + `"`), `field "body": is longer than 4096 characters`},
		{"bell in body", ev(`"body":"a\u0007"`), `field "body": contains control character U+0007`},
		{"too many data", ev(`"data":{` + dataEntries(relay.MaxDataEntries+1) + `}`), `field "data": more than 32 entries`},
		{"duplicate data key", ev(`"data":{"k":"1","k":"2"}`), `field "data": duplicate key "k"`},
		{"empty data key", ev(`"data":{"":"1"}`), `field "data": key "" must not be empty`},
		{"long data key", ev(`"data":{"` + long(relay.MaxDataKeyLen+1) + `":"1"}`), `field "data": key "` + long(relay.MaxDataKeyLen + 1)[:64] + `"... is longer than 64 characters`},
		{"long data value", ev(`"data":{"k":"` + long(relay.MaxDataValueLen+1) + `"}`), `field "data": value of key "k" is longer than 1024 characters`},
		{"NUL data value", ev(`"data":{"k":"\u0000"}`), `field "data": value of key "k" contains NUL`},
		{"too many actions", ev(`"actions":["a","b","c","d","e","f","g","h","i"]`), `field "actions": more than 8 actions`},
		{"empty action", ev(`"actions":[""]`), `field "actions": item 0 must not be empty`},
		{"long action", ev(`"actions":["` + long(relay.MaxActionLen+1) + `"]`), `field "actions": item 0 is longer than 64 characters`},
		{"duplicate action", ev(`"actions":["approve","approve"]`), `field "actions": duplicate action "approve"`},
		{"bad priority", ev(`"priority":"urgent"`), `field "priority": must be "high" or "normal", got "urgent"`},
		{"empty priority", ev(`"priority":""`), `field "priority": must be "high" or "normal", got ""`},
		{"bad time", ev(`"occurred_at":"yesterday"`), `field "occurred_at": expected an RFC 3339 time like "2026-11-27T10:00:00Z", got "yesterday"`},
		{"time without zone", ev(`"expires_at":"2026-11-27T10:00:00"`), `field "expires_at": expected an RFC 3339 time like "2026-11-27T10:00:00Z", got "2026-11-27T10:00:00"`},
		{"time number", ev(`"expires_at":1764237600`), `field "expires_at": expected string, got number`},
		{"expires before occurred", ev(`"occurred_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T09:59:59Z"`), `field "expires_at": before occurred_at`},
		{"trailing garbage", ev(``) + `x`, `unexpected data after the event object at byte 59`},
		{"two objects", ev(``) + ev(``), `unexpected data after the event object at byte 59`},
		{"unterminated", `{"id":"a`, `field "id": invalid JSON at byte 8: unterminated string`},
		{"unterminated object", `{"id":"a"`, `invalid JSON at byte 9: expected ',' or '}' after field "id", got end of input`},
		{"missing colon", `{"id" "a"}`, `field "id": invalid JSON at byte 6: expected ':' after field name, got string`},
		{"trailing comma", `{"id":"a",}`, `invalid JSON at byte 10: expected a field name, got invalid character '}'`},
		{"bad literal", `{"id":nul}`, `field "id": invalid JSON at byte 6: invalid literal`},
		{"bad escape", `{"id":"\x"}`, `field "id": invalid JSON at byte 7: invalid escape "\\x"`},
		{"bad unicode escape", `{"id":"\u12g4"}`, `field "id": invalid JSON at byte 7: invalid \u escape`},
		{"lone surrogate", `{"id":"\ud800x"}`, `field "id": invalid JSON at byte 7: unpaired surrogate in \u escape`},
		{"invalid utf8", "{\"id\":\"a\xffb\"}", `field "id": invalid JSON at byte 7: invalid UTF-8 in string`},
		{"invalid utf8 after escape", "{\"id\":\"\\n\xff\"}", `field "id": invalid JSON at byte 9: invalid UTF-8 in string`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEvent([]byte(tc.in), knownTestType)
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n %s\nwant\n %s", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FieldError", err)
			}
		})
	}
}

func dataEntries(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	return b.String()
}

func TestDecodeEventPartialID(t *testing.T) {
	got, err := DecodeEvent([]byte(`{"id":"evt-9","workspace":"w","user":"u","type":"nope"}`), knownTestType)
	if err == nil || got.ID != "evt-9" {
		t.Fatalf("got id %q, err %v; want the id decoded before the fault", got.ID, err)
	}
}

func TestDecodeEventTooLarge(t *testing.T) {
	body := ev(`"body":"` + strings.Repeat("x", relay.MaxEventBytes) + `"`)
	if _, err := DecodeEvent([]byte(body), nil); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("err %v, want ErrEventTooLarge", err)
	}
	if got, want := ErrEventTooLarge.Error(), "event larger than 16384 bytes"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
}

func TestDecodeEventNilKnownType(t *testing.T) {
	if _, err := DecodeEvent([]byte(`{"id":"a","workspace":"w","user":"u","type":"anything"}`), nil); err != nil {
		t.Fatal(err)
	}
	_, err := DecodeEvent([]byte(`{"id":"a","workspace":"w","user":"u","type":""}`), nil)
	if err == nil || err.Error() != `field "type": must not be empty` {
		t.Fatalf("err %v", err)
	}
}

func TestDecodeBatch(t *testing.T) {
	body := ev(`"title":"one"`) + "\n" +
		"\n" +
		"   \r\n" +
		`{"id":"b","workspace":"w","user":"u","type":"otp_received","foo":1}` + "\r\n" +
		`not json` + "\n" +
		`{"id":"c","workspace":"w","user":"u","type":"otp_received"}` // no final newline
	lines, err := DecodeBatch(strings.NewReader(body), knownTestType)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		n   int
		id  string
		err string
	}
	var gots []got
	for _, l := range lines {
		g := got{n: l.N, id: l.Event.ID}
		if l.Err != nil {
			g.err = l.Err.Error()
		}
		gots = append(gots, g)
	}
	want := []got{
		{1, "a", ""},
		{4, "b", `unknown field "foo"`},
		{5, "", `expected a JSON object, got invalid character 'n'`},
		{6, "c", ""},
	}
	if !reflect.DeepEqual(gots, want) {
		t.Fatalf("got %+v\nwant %+v", gots, want)
	}
}

func TestDecodeBatchOversizeLine(t *testing.T) {
	huge := ev(`"body":"` + strings.Repeat("x", relay.MaxEventBytes*3) + `"`)
	exact := ev(`"title":"` + strings.Repeat("x", relay.MaxEventBytes-len(ev(`"title":""`))) + `"`)
	if len(exact) != relay.MaxEventBytes {
		t.Fatalf("exact is %d bytes", len(exact))
	}
	over := ev(`"title":"` + strings.Repeat("x", relay.MaxEventBytes+1-len(ev(`"title":""`))) + `"`)
	for _, end := range []string{"", "\n"} {
		body := ev("") + "\n" + huge + "\n" + exact + "\r\n" + over + "\n" + ev(`"title":"last"`) + end
		lines, err := DecodeBatch(strings.NewReader(body), knownTestType)
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != 5 {
			t.Fatalf("%d lines, want 5", len(lines))
		}
		if lines[0].Err != nil || lines[4].Err != nil || lines[4].Event.Title != "last" || lines[4].N != 5 {
			t.Fatalf("good lines: %+v / %+v", lines[0], lines[4])
		}
		if !errors.Is(lines[1].Err, ErrEventTooLarge) || lines[1].N != 2 {
			t.Fatalf("huge line: %+v", lines[1])
		}
		// A max-size event passes the size check (and fails only on the
		// title's length).
		if errors.Is(lines[2].Err, ErrEventTooLarge) || lines[2].Event.ID != "a" {
			t.Fatalf("exact line: %+v", lines[2].Err)
		}
		if !errors.Is(lines[3].Err, ErrEventTooLarge) {
			t.Fatalf("over line: %v", lines[3].Err)
		}
	}
}

func TestDecodeBatchTooMany(t *testing.T) {
	line := ev("") + "\n"
	ok := strings.Repeat(line, relay.MaxBatchEvents) + "\n\n"
	lines, err := DecodeBatch(strings.NewReader(ok), knownTestType)
	if err != nil || len(lines) != relay.MaxBatchEvents {
		t.Fatalf("%d lines, err %v", len(lines), err)
	}
	_, err = DecodeBatch(strings.NewReader(ok+line), knownTestType)
	if !errors.Is(err, ErrTooManyEvents) || err.Error() != "batch has more than 10000 events" {
		t.Fatalf("err %v, want ErrTooManyEvents", err)
	}
}

func TestDecodeBatchReadError(t *testing.T) {
	r := ioErrReader{data: []byte(ev("") + "\n" + ev(""))}
	if _, err := DecodeBatch(&r, nil); !errors.Is(err, errBroken) {
		t.Fatalf("err %v, want it to wrap the read error", err)
	}
}

var errBroken = errors.New("broken pipe")

type ioErrReader struct{ data []byte }

func (r *ioErrReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errBroken
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// checkInvariants asserts what every accepted event satisfies.
func checkInvariants(t *testing.T, in []byte, e relay.Event) {
	t.Helper()
	for _, id := range []string{e.ID, e.Workspace, e.User, e.Type} {
		if id == "" || utf8.RuneCountInString(id) > relay.MaxIDLen || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
			t.Fatalf("accepted bad id %q from %q", id, in)
		}
		if _, bad := firstNotPrintable(id); bad {
			t.Fatalf("accepted non-printable id %q", id)
		}
	}
	if !knownTestType(e.Type) {
		t.Fatalf("accepted unknown type %q", e.Type)
	}
	if utf8.RuneCountInString(e.Title) > relay.MaxTitleLen || utf8.RuneCountInString(e.Body) > relay.MaxBodyLen {
		t.Fatalf("accepted long title/body")
	}
	if len(e.Data) > relay.MaxDataEntries || len(e.Actions) > relay.MaxActions {
		t.Fatalf("accepted too many data/actions")
	}
	for k, v := range e.Data {
		if k == "" || utf8.RuneCountInString(k) > relay.MaxDataKeyLen || utf8.RuneCountInString(v) > relay.MaxDataValueLen || !utf8.ValidString(k) || !utf8.ValidString(v) {
			t.Fatalf("accepted bad data %q=%q", k, v)
		}
	}
	for _, a := range e.Actions {
		if a == "" || utf8.RuneCountInString(a) > relay.MaxActionLen {
			t.Fatalf("accepted bad action %q", a)
		}
	}
	if e.Priority != "" && !e.Priority.Valid() {
		t.Fatalf("accepted priority %q", e.Priority)
	}
	if !e.OccurredAt.IsZero() && !e.ExpiresAt.IsZero() && e.ExpiresAt.Before(e.OccurredAt) {
		t.Fatalf("accepted expiry before occurrence")
	}
	// encoding/json must read the same event from an accepted input.
	var std relay.Event
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&std); err != nil {
		t.Fatalf("encoding/json rejects an accepted event %q: %v", in, err)
	}
	if !eventsEqual(std, e) {
		t.Fatalf("encoding/json reads %+v, DecodeEvent %+v from %q", std, e, in)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(sampleEvent))
	f.Add([]byte(ev("")))
	f.Add([]byte(ev(`"title":"\u00e9\ud83d\ude00","body":"a\nb","data":{"k":"v"},"actions":["x"]`)))
	f.Add([]byte(ev(`"priority":"normal","occurred_at":"2026-11-27T10:00:00.123+02:00"`)))
	f.Add([]byte(`{"id":null}`))
	f.Add([]byte(`{"id":"\ud800"}`))
	f.Add([]byte("{\"id\":\"\xff\"}"))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := DecodeEvent(in, knownTestType)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) && !errors.Is(err, ErrEventTooLarge) {
				t.Fatalf("error %T %v", err, err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		checkInvariants(t, in, e)
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(sampleEvent + "\n" + ev("") + "\n\n" + "garbage\r\n" + ev(`"id":"b"`)))
	f.Add([]byte(strings.ReplaceAll(sampleEvent, "\n", "") + "\n"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		lines, err := DecodeBatch(bytes.NewReader(in), knownTestType)
		if err != nil {
			t.Fatalf("error %v on a short in-memory batch", err)
		}
		prev := 0
		for _, l := range lines {
			if l.N <= prev {
				t.Fatalf("line numbers not increasing: %d after %d", l.N, prev)
			}
			prev = l.N
			if l.Err == nil {
				raw := bytes.Split(in, []byte("\n"))[l.N-1]
				checkInvariants(t, bytes.TrimSuffix(raw, []byte("\r")), l.Event)
			}
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	in := []byte(sampleEvent)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(in, knownTestType); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEventStdlib is the yardstick: encoding/json with
// DisallowUnknownFields, no validation.
func BenchmarkDecodeEventStdlib(b *testing.B) {
	in := []byte(sampleEvent)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var e relay.Event
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBatch10k(b *testing.B) {
	var buf bytes.Buffer
	for i := range relay.MaxBatchEvents {
		fmt.Fprintf(&buf, `{"id":"evt-%d","workspace":"acme","user":"u-42","type":"otp_received","title":"Code for GitHub","body":"Tap to copy","data":{"account":"github","ip":"203.0.113.9"},"actions":["approve","deny"],"priority":"high","occurred_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:05:00Z"}`+"\n", i)
	}
	in := buf.Bytes()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		lines, err := DecodeBatch(bytes.NewReader(in), knownTestType)
		if err != nil || len(lines) != relay.MaxBatchEvents {
			b.Fatal(len(lines), err)
		}
	}
}

// A rejected line's result carries its id whenever one can be read, even
// when the fault comes before the id (DESIGN.md "Local socket API").
func TestDecodeEventIDAfterFault(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown field first", `{"colour":"red","id":"evt-7","workspace":"w","user":"u","type":"otp_received"}`, "evt-7"},
		{"bad type first", `{"title":42,"data":{"a":["x",{"y":"}"}]},"id":"evt-8"}`, "evt-8"},
		{"nested id is not the id", `{"bogus":{"id":"inner"},"zz":1}`, ""},
		{"syntax error before id", `{"bogus":"open,"id":"evt-9"}`, ""},
		{"unbalanced before id", `{"bogus":[1},"id":"evt-9"}`, ""},
		{"escaped id", `{"x":1,"id":"e\u0076t"}`, "evt"},
		{"unreadable id", `{"x":1,"id":7}`, ""},
		{"id with a control character", "{\"x\":1,\"id\":\"a\\u0001\"}", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeEvent([]byte(tc.in), knownTestType)
			if err == nil {
				t.Fatal("accepted")
			}
			if got.ID != tc.want {
				t.Fatalf("id %q, want %q (err %v)", got.ID, tc.want, err)
			}
		})
	}
}

func TestDecodeBatchRejectedLineKeepsID(t *testing.T) {
	body := ev("") + "\n" + `{"colour":"red","id":"evt-7","workspace":"w","user":"u","type":"otp_received"}` + "\n"
	lines, err := DecodeBatch(strings.NewReader(body), knownTestType)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[1].Err == nil || lines[1].Event.ID != "evt-7" || lines[1].N != 2 {
		t.Fatalf("got %+v", lines)
	}
}

// An event already past its expires_at (no occurred_at) is a valid event:
// it is accepted and recorded expired (DESIGN.md "Domain"); only expires_at
// before occurred_at is refused.
func TestDecodeEventAlreadyExpired(t *testing.T) {
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if _, err := DecodeEvent([]byte(ev(`"expires_at":"`+past+`"`)), knownTestType); err != nil {
		t.Fatalf("already expired event refused: %v", err)
	}
	if _, err := DecodeEvent([]byte(ev(`"expires_at":"2026-01-01T00:00:00Z","occurred_at":"2026-01-01T00:00:01Z"`)), knownTestType); err == nil {
		t.Fatal("expires_at before occurred_at accepted")
	}
}

// TestBatchEventsOutliveTheLineBuffer: a batch's events keep their fields
// after its reader is released and the pooled line buffer is read into by
// the next batch (decoded strings must not alias the buffer).
func TestBatchEventsOutliveTheLineBuffer(t *testing.T) {
	batch := func(tag string) []byte {
		var b bytes.Buffer
		for i := range 20 {
			fmt.Fprintf(&b, `{"id":"%s-%d","workspace":"w-%s","user":"u-%s","type":"account_shared","title":"%s title","body":"%s body","data":{"k":"%s"}}`+"\n", tag, i, tag, tag, tag, tag, tag)
		}
		return b.Bytes()
	}
	first, err := DecodeBatch(bytes.NewReader(batch("aaaa")), knownTestType)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // the next batches reuse the buffer (sync.Pool, same P)
		if _, err := DecodeBatch(bytes.NewReader(batch("zzzz")), knownTestType); err != nil {
			t.Fatal(err)
		}
	}
	for i, l := range first {
		e := l.Event
		if l.Err != nil || e.ID != fmt.Sprintf("aaaa-%d", i) || e.Workspace != "w-aaaa" || e.User != "u-aaaa" ||
			e.Title != "aaaa title" || e.Body != "aaaa body" || e.Data["k"] != "aaaa" {
			t.Fatalf("line %d changed after the buffer was reused: %+v (%v)", l.N, e, l.Err)
		}
	}
}
