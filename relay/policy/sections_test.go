package policy

import (
	"context"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

// The chain asks each plugin once which input sections it reads
// (relay_input_sections) and sends only those; a plugin whose answer fails
// gets everything, and is not asked again.
func TestChainSendsTheSectionsAPluginReads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go plugin")
	}
	w, err := buildGoPlugin(t.TempDir(), "./testdata/gosections")
	if err != nil {
		t.Fatal(err)
	}
	e := openEngine(t, Options{Timeout: time.Second})
	entry := func(name string, order int, config string) Entry {
		return Entry{Plugin: mustLoad(t, e, name, w),
			Manifest: Manifest{Order: order, Mode: ModeEnforce, Config: []byte(config)}}
	}
	s := NewSet(SetOptions{}, []Entry{
		entry("data", 1, `{"reads":1}`),          // event.data
		entry("devices", 2, `{"reads":112}`),     // user.devices, user.recent, prior
		entry("trap", 3, `{"trap":true}`),        // fails to answer: everything
		entry("unknown", 4, `{"reads":1048577}`), // event.data and a bit no host knows
	})
	req := testRequest("otp_received", false)
	req.Event.Actions = []string{"approve"}
	req.Preferences = map[string]bool{"otp_received": true}
	req.Recent = map[string]abi.Recent{"otp_received": {M1: 1, M10: 1, H1: 1}}
	want := map[string]string{"data": "1", "devices": "112", "trap": "127", "unknown": "1"}
	for range 2 {
		res, err := s.Evaluate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Plugins) != len(want) {
			t.Fatalf("decided %+v", res.Plugins)
		}
		for _, d := range res.Plugins {
			if d.Verdict != abi.VerdictAllow || d.Reason != want[d.Name] {
				t.Errorf("%s: %s %q, want allow with the sections %s", d.Name, d.Verdict, d.Reason, want[d.Name])
			}
		}
	}
	for _, en := range s.Entries() {
		wantDiscarded := uint64(0)
		if en.Plugin.Name() == "trap" {
			wantDiscarded = 1 // asked once, on the first event
		}
		if st := en.Plugin.Stats(); st.Discarded != wantDiscarded || st.Failures != 0 {
			t.Errorf("%s: stats %+v, want %d discarded and no failed evaluation", en.Plugin.Name(), st, wantDiscarded)
		}
	}
}

// A plugin without relay_input_sections reads everything.
func TestInputSectionsWithoutTheExport(t *testing.T) {
	e := openEngine(t, Options{})
	p := mustLoad(t, e, "const", wasmtest.ConstPlugin(`{"verdict":"allow"}`))
	secs, err := p.InputSections(context.Background(), "ws1", []byte(`{"x":1}`))
	if err != nil || secs != abi.AllSections {
		t.Fatalf("got %b, %v; want every section", secs, err)
	}
}
