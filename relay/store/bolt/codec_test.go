package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
)

// encodeJob is a closed job's value.
func encodeJob(j *relay.Job) []byte { return appendJob(nil, j, nil) }

func TestJobCodecRoundTrip(t *testing.T) {
	k := relay.EventKey{Workspace: "acme", ID: "evt-1"}
	tests := []relay.Job{
		{Event: k, DeviceID: "d"},
		job(k, "phone", relay.StatePending),
		{Event: k, DeviceID: "x\xff", Platform: "windows", State: "weird", Attempts: -3, LastError: "boom: 503",
			NextAt: time.Unix(-1, 999_999_999).UTC(), ExpiresAt: time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC), UpdatedAt: t0},
	}
	for _, want := range tests {
		got, err := decodeJob(jobKey(want.Event, want.DeviceID), encodeJob(&want))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
	// Other zones come back as the same instant in UTC.
	j := job(k, "p", relay.StatePending)
	j.UpdatedAt = t0.In(time.FixedZone("x", 3600))
	got, err := decodeJob(jobKey(k, "p"), encodeJob(&j))
	if err != nil || !got.UpdatedAt.Equal(t0) {
		t.Fatalf("zone: %v %v", got.UpdatedAt, err)
	}
}

// FuzzDecodeJob: a job value never panics the decoder, and what decodes
// re-encodes to the same bytes.
func FuzzDecodeJob(f *testing.F) {
	k := relay.EventKey{Workspace: "acme", ID: "e"}
	f.Add(encodeJob(&relay.Job{}))
	j := job(k, "p", relay.StateDeferred)
	j.LastError, j.Attempts, j.NextAt = "429", 7, t0
	f.Add(encodeJob(&j))
	f.Add(appendJob(nil, &j, schedPlace("demo/ios", rankHigh, t0)))
	f.Add([]byte{jobFormat, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		place, perr := jobPlace(v)
		got, err := decodeJob(jobKey(k, "p"), v)
		if err != nil {
			return
		}
		if perr != nil {
			t.Fatalf("decodes, but its place does not: %v", perr)
		}
		// A new place keeps the job.
		want := schedPlace("demo/ios", rankNormal|rankLeased, t0)
		if bytes.Equal(place, want) {
			want = schedPlace("demo/android", rankHigh, t0)
		}
		moved, err := withPlace(v, want)
		if err != nil {
			t.Fatalf("with a new place: %v", err)
		}
		if p, err := jobPlace(moved); err != nil || !bytes.Equal(p, want) {
			t.Fatalf("place after withPlace: %q, %v; want %q", p, err, want)
		}
		if j, err := decodeJob(jobKey(k, "p"), moved); err != nil || !reflect.DeepEqual(j, got) {
			t.Fatalf("job after withPlace:\n%+v (%v)\nwant %+v", j, err, got)
		}
		again, err := decodeJob(jobKey(k, "p"), encodeJob(&got))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("not stable:\n%+v\n%+v", got, again)
		}
	})
}

func TestEventAndDecisionCodecRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 123, time.UTC)
	events := []relay.Event{
		{ID: "e", Workspace: "w"},
		{ID: "evt-1", Workspace: "acme", User: "u-42", Type: relay.TypeIdentityVerification, Title: "Sign-in", Body: "Approve?",
			Data: map[string]string{"b": "2", "a": "1", "": "empty"}, Actions: []string{"approve", "deny"},
			Priority: relay.PriorityHigh, OccurredAt: at.Add(-time.Second), ExpiresAt: at.Add(time.Minute)},
	}
	for _, want := range events {
		b, err := encodeEvent(want, at)
		if err != nil {
			t.Fatal(err)
		}
		setEventSeq(b, 42)
		got, err := decodeEvent(b)
		if err != nil {
			t.Fatal(err)
		}
		if seq, _ := eventSeq(b); seq != 42 || !reflect.DeepEqual(got.Event, want) || !got.ReceivedAt.Equal(at) {
			t.Fatalf("round trip (seq %d):\n got %+v\nwant %+v", seq, got, want)
		}
		if u, at2, err := eventUser(b); err != nil || u != want.User || !at2.Equal(at) {
			t.Fatalf("eventUser = %q, %v, %v", u, at2, err)
		}
	}
	alert := &relay.Alert{EventID: "evt-1", Workspace: "acme", Type: "t", Title: "T", Body: "B", Data: map[string]string{"k": "v"},
		Category: "C", Actions: []string{"approve"}, Priority: relay.PriorityNormal, InterruptionLevel: "time-sensitive",
		Sound: "s", ThreadID: "th", CollapseID: "c", ExpiresAt: at, Silent: true, MutableContent: true}
	decisions := []decisionValue{
		{Decision: relay.Decision{Verdict: relay.VerdictSuppress, Reason: "r"}},
		{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: relay.ReasonEnforced, Enforced: true, Plugins: []relay.PluginDecision{}}, Alert: alert},
		{Decision: relay.Decision{Verdict: relay.VerdictDefer, DeferUntil: at, Plugins: []relay.PluginDecision{
			{Name: "quiet", Hash: "h", Verdict: "defer", Reason: "night", Shadow: true}, {Name: "x"}}}, Alert: &relay.Alert{}},
	}
	for _, want := range decisions {
		b, err := encodeDecision(want.Decision, want.Alert)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeDecision(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
		// Damage is an error, never a panic.
		for i := range len(b) {
			if _, err := decodeDecision(b[:i]); err == nil && i > 0 {
				t.Fatalf("decision cut at %d of %d bytes decoded", i, len(b))
			}
		}
	}
}

// TestJSONValuesStillRead: stores written before the binary format (events
// format 1, JSON decisions) open and read as before.
func TestJSONValuesStillRead(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	e := relay.Event{ID: "evt-1", Workspace: "acme", User: "u-42", Type: "t", Data: map[string]string{"a": "1"}, ExpiresAt: at}
	js, err := json.Marshal(eventValue{Event: e, ReceivedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	ev := append([]byte{eventFormatJSON, 0, 0, 0, 0, 0, 0, 0, 7}, js...)
	got, err := decodeEvent(ev)
	if seq, _ := eventSeq(ev); err != nil || seq != 7 || !reflect.DeepEqual(got.Event, e) || !got.ReceivedAt.Equal(at) {
		t.Fatalf("old event: %+v, %v", got, err)
	}
	if u, at2, err := eventUser(ev); err != nil || u != "u-42" || !at2.Equal(at) {
		t.Fatalf("old event's user: %q, %v, %v", u, at2, err)
	}
	d := decisionValue{Decision: relay.Decision{Verdict: relay.VerdictDeliver, Reason: "enabled", Plugins: []relay.PluginDecision{}},
		Alert: &relay.Alert{EventID: "evt-1", Title: "T", ExpiresAt: at}}
	dv, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeDecision(dv); err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("old decision: %+v, %v", got, err)
	}
}

// TestCodecCoversEveryField fails when relay.Event, relay.Alert,
// relay.Decision or relay.PluginDecision gain a field: add it to the
// binary encoding (codec.go) — in a new format if old values must still
// read — and then to the count here.
func TestCodecCoversEveryField(t *testing.T) {
	for _, c := range []struct {
		v    any
		want int
	}{{relay.Event{}, 11}, {relay.Alert{}, 16}, {relay.Decision{}, 5}, {relay.PluginDecision{}, 5}} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.want {
			t.Errorf("%T has %d fields, the codec encodes %d", c.v, n, c.want)
		}
	}
}

// TestCheckValueAgreesWithDecode: the start-up check's value parsers
// (checkEventValue, checkDecisionValue) accept exactly what the decoders
// decode, for valid values and for every cut and many random changes.
func TestCheckValueAgreesWithDecode(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 123, time.UTC)
	ev, err := encodeEvent(relay.Event{ID: "evt-1", Workspace: "acme", User: "u-42", Type: relay.TypeIdentityVerification, Title: "Sign-in", Body: "Approve?",
		Data: map[string]string{"b": "2", "a": "1"}, Actions: []string{"approve", "deny"}, Priority: relay.PriorityHigh, ExpiresAt: at}, at)
	if err != nil {
		t.Fatal(err)
	}
	alert := &relay.Alert{EventID: "evt-1", Workspace: "acme", Type: "t", Title: "T", Body: "B", Data: map[string]string{"k": "v"},
		Category: "C", Actions: []string{"approve"}, Priority: relay.PriorityNormal, CollapseID: "c", ExpiresAt: at, Silent: true}
	dec, err := encodeDecision(relay.Decision{Verdict: relay.VerdictDefer, DeferUntil: at, Plugins: []relay.PluginDecision{{Name: "quiet", Verdict: "defer"}}}, alert)
	if err != nil {
		t.Fatal(err)
	}
	agree := func(what string, b []byte, check func([]byte) error, decode func([]byte) error) {
		t.Helper()
		if c, d := check(b), decode(b); (c == nil) != (d == nil) {
			t.Fatalf("%s %x: check says %v, decode says %v", what, b, c, d)
		}
	}
	decEvent := func(b []byte) error { _, err := decodeEvent(b); return err }
	decDecision := func(b []byte) error { _, err := decodeDecision(b); return err }
	// eventUser reads only two fields but must reject what decodeEvent does.
	decEventUser := func(b []byte) error {
		u, at, err := eventUser(b)
		if v, derr := decodeEvent(b); err == nil && derr == nil && (u != v.Event.User || !at.Equal(v.ReceivedAt)) {
			t.Fatalf("eventUser %x = %q, %v; decodeEvent: %q, %v", b, u, at, v.Event.User, v.ReceivedAt)
		}
		return err
	}
	// A decided value (format 3) holds its decision: the check checks it.
	decided, err := withDecision(ev, dec)
	if err != nil {
		t.Fatal(err)
	}
	decEventAndDecision := func(b []byte) error {
		_, d, err := eventParts(b)
		if err == nil && d != nil {
			_, err = decodeDecision(d)
		}
		return errors.Join(err, decEvent(b))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range []struct {
		name   string
		b      []byte
		check  func([]byte) error
		decode func([]byte) error
	}{{"event", ev, checkEventValue, decEvent}, {"decision", dec, checkDecisionValue, decDecision},
		{"event user", ev, decEvent, decEventUser}, {"decided event", decided, checkEventValue, decEventAndDecision}} {
		if err := v.check(v.b); err != nil {
			t.Fatalf("valid %s: %v", v.name, err)
		}
		for i := range len(v.b) {
			agree(v.name+" cut", v.b[:i], v.check, v.decode)
		}
		for range 5000 {
			b := bytes.Clone(v.b)
			for range 1 + rng.IntN(3) {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
			agree(v.name+" changed", b, v.check, v.decode)
		}
	}
}

// TestDecodedStringsOwnTheirBytes: decoded events and decisions cut their
// strings from one copy of the value, never from the value itself (bbolt's
// values are its mmap, valid only inside the transaction).
func TestDecodedStringsOwnTheirBytes(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	e := relay.Event{ID: "evt-1", Workspace: "acme", User: "u-42", Type: relay.TypeOTPReceived, Title: "Code", Body: "Tap",
		Data: map[string]string{"account": "github"}, Actions: []string{"approve"}, Priority: relay.PriorityHigh, ExpiresAt: at}
	a := &relay.Alert{EventID: "evt-1", Workspace: "acme", Type: "t", Title: "Code", Body: "Tap", Data: map[string]string{"account": "github"},
		Actions: []string{"approve"}, Priority: relay.PriorityHigh, CollapseID: "c", ExpiresAt: at}
	ev, err := encodeEvent(e, at)
	if err != nil {
		t.Fatal(err)
	}
	dv, err := encodeDecision(relay.Decision{Verdict: relay.VerdictDeliver, Reason: "enabled"}, a)
	if err != nil {
		t.Fatal(err)
	}
	gotEv, err := decodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	gotDec, err := decodeDecision(dv)
	if err != nil {
		t.Fatal(err)
	}
	user, _, err := eventUser(ev)
	if err != nil {
		t.Fatal(err)
	}
	clear(ev) // as a remapped or reused page would
	clear(dv)
	if !reflect.DeepEqual(gotEv.Event, e) || user != "u-42" {
		t.Errorf("event after its value changed: %+v, user %q", gotEv.Event, user)
	}
	if !reflect.DeepEqual(gotDec.Alert, a) || gotDec.Decision.Reason != "enabled" {
		t.Errorf("decision after its value changed: %+v", gotDec)
	}
}
