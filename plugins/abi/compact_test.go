package abi

import (
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// compactInputs are inputs whose compact and JSON encodings must decode to
// the same Input: the sample, and its nil, empty and zero variants.
func compactInputs() []Input {
	full := sampleInput()
	bare := Input{ABI: Version, Event: Event{ID: "e", Type: "otp_received"}}
	empty := sampleInput()
	empty.Event.Data, empty.Event.Actions = map[string]string{}, []string{}
	empty.Workspace.Settings, empty.User.Preferences = map[string]string{}, map[string]bool{}
	empty.User.Devices, empty.User.Recent, empty.Prior = []Device{}, map[string]Recent{}, []Prior{}
	empty.Now, empty.Event.OccurredAt = time.Time{}, time.Time{}
	odd := sampleInput()
	odd.Event.Title = "bad \xff utf-8"
	odd.Event.ExpiresAt = time.Date(1969, 7, 20, 20, 17, 40, 999999999, time.UTC)
	odd.Event.Body = strings.Repeat("é", 300) // lengths past one varint byte
	return []Input{full, bare, empty, odd}
}

func TestCompactInputMatchesJSON(t *testing.T) {
	for i, in := range compactInputs() {
		var fromJSON, fromCompact Input
		if err := DecodeInput(AppendInput(nil, &in), &fromJSON); err != nil {
			t.Fatalf("%d: json: %v", i, err)
		}
		var dec InputDecoder
		if err := dec.DecodeCompact(AppendInputCompact(nil, &in), &fromCompact); err != nil {
			t.Fatalf("%d: compact: %v", i, err)
		}
		normConfig(&fromJSON)
		normConfig(&fromCompact)
		if !reflect.DeepEqual(fromJSON, fromCompact) {
			t.Errorf("%d: decodings differ:\n json    %#v\n compact %#v", i, fromJSON, fromCompact)
		}
	}
}

func TestCompactInputIgnoresAppendedFields(t *testing.T) {
	in := sampleInput()
	doc := append(AppendInputCompact(nil, &in), 7, 'n', 'e', 'w')
	var got Input
	var dec InputDecoder
	if err := dec.DecodeCompact(doc, &got); err != nil {
		t.Fatalf("a newer host's trailing fields: %v", err)
	}
	if got.Event.ID != in.Event.ID || string(got.Config) != string(in.Config) {
		t.Fatalf("decoded %#v", got)
	}
}

func TestCompactInputAliasesACopy(t *testing.T) {
	in := sampleInput()
	doc := AppendInputCompact(nil, &in)
	var got Input
	var dec InputDecoder
	if err := dec.DecodeCompact(doc, &got); err != nil {
		t.Fatal(err)
	}
	clear(doc) // the guest's input buffer is reused by the next call
	if got.Event.Title != in.Event.Title || got.Event.Data["code"] != "123456" {
		t.Fatalf("strings changed with the buffer: %q %v", got.Event.Title, got.Event.Data)
	}
}

func TestCompactOutputMatchesJSON(t *testing.T) {
	sup := Suppress("push_bombing_guard")
	empty := Output{Verdict: VerdictAllow, Set: &Set{Data: map[string]string{}}, Devices: []string{}}
	ignore := Output{Verdict: VerdictAllow, Reason: "exempt", IgnoreType: true}
	for i, out := range []Output{sampleOutput(), Allow(), sup, empty, ignore} {
		var fromJSON, fromCompact Output
		if err := DecodeOutput(AppendOutput(nil, &out), &fromJSON); err != nil {
			t.Fatalf("%d: json: %v", i, err)
		}
		if err := DecodeOutputCompact(AppendOutputCompact(nil, &out), &fromCompact); err != nil {
			t.Fatalf("%d: compact: %v", i, err)
		}
		if !reflect.DeepEqual(fromJSON, fromCompact) {
			t.Errorf("%d: decodings differ:\n json    %#v\n compact %#v", i, fromJSON, fromCompact)
		}
	}
}

// Every prefix of a valid document is an error naming a field, never a
// panic or a partly filled value.
func TestCompactTruncated(t *testing.T) {
	in, out := sampleInput(), sampleOutput()
	idoc, odoc := AppendInputCompact(nil, &in), AppendOutputCompact(nil, &out)
	for n := range len(idoc) {
		var got Input
		var dec InputDecoder
		err := dec.DecodeCompact(idoc[:n], &got)
		if err == nil {
			t.Fatalf("input cut at %d of %d decoded", n, len(idoc))
		}
		if !reflect.DeepEqual(got, Input{}) {
			t.Fatalf("input cut at %d left %#v", n, got)
		}
	}
	for n := range len(odoc) {
		var got Output
		if err := DecodeOutputCompact(odoc[:n], &got); err == nil {
			t.Fatalf("output cut at %d of %d decoded", n, len(odoc))
		}
	}
}

func TestCompactOutputErrors(t *testing.T) {
	allow := AppendOutputCompact(nil, &Output{Verdict: VerdictAllow})
	badUTF8 := AppendOutputCompact(nil, &Output{Verdict: VerdictAllow})
	badUTF8 = append(badUTF8[:3], 2, 0xff, 'x') // reason
	badUTF8 = append(badUTF8, 0, 0, 0, 0, 0)
	long := Output{Verdict: VerdictAllow, Set: &Set{Title: String(strings.Repeat("t", MaxTitleLen+1))}}
	for _, tc := range []struct {
		name, field string
		doc         []byte
	}{
		{"json", "", []byte(`{"verdict":"allow"}`)},
		{"unknown verdict", "verdict", append([]byte{'O', 1, 9}, allow[3:]...)},
		{"trailing data", "", append(slices.Clip(allow), 0)},
		{"invalid UTF-8", "reason", badUTF8},
		{"validated", "set.title", AppendOutputCompact(nil, &long)},
		{"hostile count", "devices", append(slices.Clip(allow[:len(allow)-3]), 0xff, 0xff, 0xff, 0x7f, 0, 0)},
		{"unknown flag", "flags", append(slices.Clip(allow[:len(allow)-1]), 2)},
		{"ignore_type with a change", "ignore_type", AppendOutputCompact(nil, &Output{Verdict: VerdictAllow, IgnoreType: true, Devices: []string{"d1"}})},
		{"ignore_type with suppress", "ignore_type", AppendOutputCompact(nil, &Output{Verdict: VerdictSuppress, IgnoreType: true})},
	} {
		var out Output
		err := DecodeOutputCompact(tc.doc, &out)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: got %v, want an error naming field %q", tc.name, err, tc.field)
		}
	}
}

func FuzzDecodeCompactInput(f *testing.F) {
	for _, in := range compactInputs() {
		f.Add(AppendInputCompact(nil, &in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var x Input
		var dec InputDecoder
		if err := dec.DecodeCompact(b, &x); err != nil {
			return
		}
		// The decoder trusts the host to send valid UTF-8 (it does not
		// check again); the encoder makes it so. After one pass through
		// the encoder, a round trip changes nothing.
		var y, z Input
		if err := dec.DecodeCompact(AppendInputCompact(nil, &x), &y); err != nil {
			t.Fatalf("decode(append(x)): %v", err)
		}
		if err := dec.DecodeCompact(AppendInputCompact(nil, &y), &z); err != nil {
			t.Fatalf("decode(append(y)): %v", err)
		}
		normConfig(&y)
		normConfig(&z)
		if !reflect.DeepEqual(y, z) {
			t.Fatalf("round trip differs:\n y %#v\n z %#v", y, z)
		}
		if !utf8.ValidString(y.Event.Title) || !utf8.ValidString(y.Event.Body) {
			t.Fatalf("the encoder let invalid UTF-8 through: %q %q", y.Event.Title, y.Event.Body)
		}
		// A reader of some sections sees the same document without the
		// others.
		for _, s := range []Sections{0, SectionEventData | SectionRecent, AllSections &^ SectionEventData} {
			var p Input
			if err := dec.DecodeCompactSections(b, &p, func([]byte) Sections { return s }); err != nil {
				t.Fatalf("DecodeCompact accepts what DecodeCompactSections refuses: %v", err)
			}
			if want := x.Only(s); !reflect.DeepEqual(p, want) {
				t.Fatalf("sections %b:\n got  %#v\n want %#v", s, p, want)
			}
		}
	})
}

func FuzzDecodeCompactOutput(f *testing.F) {
	for _, out := range []Output{sampleOutput(), Allow(), Suppress("x"), {Verdict: VerdictAllow, IgnoreType: true}} {
		f.Add(AppendOutputCompact(nil, &out))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var x Output
		if err := DecodeOutputCompact(b, &x); err != nil {
			return
		}
		var y, z Output
		if err := DecodeOutputCompact(AppendOutputCompact(nil, &x), &y); err != nil {
			t.Fatalf("decode(append(x)): %v", err)
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("round trip differs:\n x %#v\n y %#v", x, y)
		}
		// What the guest said means the same in JSON.
		if err := DecodeOutput(AppendOutput(nil, &x), &z); err != nil || !reflect.DeepEqual(x, z) {
			t.Fatalf("json of a valid compact output: %v\n x %#v\n z %#v", err, x, z)
		}
	})
}

func TestDecodeCompactSections(t *testing.T) {
	picks := []Sections{0, AllSections, SectionEventData, SectionRecent, SectionEventData | SectionPrior,
		SectionActions | SectionSettings | SectionPreferences | SectionDevices}
	for i, in := range compactInputs() {
		doc := AppendInputCompact(nil, &in)
		var dec InputDecoder
		var full Input
		if err := dec.DecodeCompact(doc, &full); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		for _, s := range picks {
			var got Input
			var sawConfig []byte
			calls := 0
			err := dec.DecodeCompactSections(doc, &got, func(config []byte) Sections {
				calls++
				sawConfig = config
				return s
			})
			if err != nil {
				t.Fatalf("%d, sections %b: %v", i, s, err)
			}
			if calls != 1 || string(sawConfig) != string(in.Config) {
				t.Errorf("%d, sections %b: pick called %d times with config %q, want once with %q", i, s, calls, sawConfig, in.Config)
			}
			if want := full.Only(s); !reflect.DeepEqual(got, want) {
				t.Errorf("%d, sections %b:\n got  %#v\n want %#v", i, s, got, want)
			}
		}
	}
}

// An error in a section nobody reads is still an error, named as
// DecodeCompact names it, and pick is not asked.
func TestDecodeCompactSectionsChecksSkippedSections(t *testing.T) {
	in := sampleInput()
	in.Config = nil
	doc := AppendInputCompact(nil, &in)
	// Every cut of the document ends inside some field.
	var dec InputDecoder
	for n := len(doc) - 1; n > 2; n-- {
		var full, part Input
		errFull := dec.DecodeCompact(doc[:n], &full)
		called := false
		errPart := dec.DecodeCompactSections(doc[:n], &part, func([]byte) Sections { called = true; return 0 })
		if (errFull == nil) != (errPart == nil) || (errFull != nil && errFull.Error() != errPart.Error()) {
			t.Fatalf("cut at %d: DecodeCompact: %v; DecodeCompactSections: %v", n, errFull, errPart)
		}
		if errPart != nil && (called || !reflect.DeepEqual(part, Input{})) {
			t.Fatalf("cut at %d: failed decode called pick (%v) or left %#v", n, called, part)
		}
	}
}

// uvarintAt decodes what binary.Uvarint decodes and refuses what it
// refuses, from any offset.
func FuzzUvarintAt(f *testing.F) {
	for _, b := range [][]byte{{0}, {0x7f}, {0x80, 1}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2}, {0x80}, {}} {
		f.Add(b, 0)
	}
	f.Fuzz(func(t *testing.T, b []byte, i int) {
		if i < 0 || i > len(b) {
			return
		}
		want, n := binary.Uvarint(b[i:])
		got, next, ok := uvarintAt(b, i)
		if ok != (n > 0) || (ok && (got != want || next != i+n)) || (!ok && (got != 0 || next != i)) {
			t.Fatalf("uvarintAt(%x, %d) = %d, %d, %v; binary.Uvarint: %d, %d", b, i, got, next, ok, want, n)
		}
	})
}
