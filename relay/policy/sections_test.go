package policy

import (
	"context"
	"testing"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

// sectionsPlugin is a compact plugin that always allows and answers
// relay_input_sections with secs, or traps there when trap is set.
func sectionsPlugin(secs int32, trap bool) []byte {
	allow := abi.Allow()
	m := wasmtest.ABIModule(1).DataAt(16, abi.AppendOutputCompact(nil, &allow))
	m.Func("relay_encoding", wasmtest.NoT, wasmtest.I32T, nil, wasmtest.I32Const(abi.EncodingCompact))
	body := wasmtest.I32Const(secs)
	if trap {
		body = []byte{wasmtest.OpUnreachable}
	}
	m.Func("relay_input_sections", wasmtest.PairT, wasmtest.I32T, nil, body)
	m.Func("relay_evaluate", wasmtest.PairT, wasmtest.I64T, nil,
		wasmtest.I64Const(16<<32|int64(len(abi.AppendOutputCompact(nil, &allow)))))
	return m.Bytes()
}

// sent decodes the input p's idle instance was last given (its relay_alloc
// buffer is at 1024; decoding ignores what follows the document) and
// returns the sections it carried.
func sent(t *testing.T, p *Plugin) abi.Sections {
	t.Helper()
	p.mod.mu.Lock()
	defer p.mod.mu.Unlock()
	if len(p.mod.idle) != 1 {
		t.Fatalf("%s: %d idle instances, want 1", p.name, len(p.mod.idle))
	}
	view, ok := p.mod.idle[0].mem.Read(1024, 8192)
	if !ok {
		t.Fatal("read guest memory")
	}
	var in abi.Input
	var dec abi.InputDecoder
	if err := dec.DecodeCompact(view, &in); err != nil {
		t.Fatalf("%s: the input it got: %v", p.name, err)
	}
	var s abi.Sections
	for sec, present := range map[abi.Sections]bool{
		abi.SectionEventData: in.Event.Data != nil, abi.SectionActions: in.Event.Actions != nil,
		abi.SectionSettings: in.Workspace.Settings != nil, abi.SectionPreferences: in.User.Preferences != nil,
		abi.SectionDevices: in.User.Devices != nil, abi.SectionRecent: in.User.Recent != nil,
		abi.SectionPrior: in.Prior != nil,
	} {
		if present {
			s |= sec
		}
	}
	return s
}

// The chain asks each plugin once which input sections it reads
// (relay_input_sections) and sends only those; a plugin whose answer fails
// gets everything, and is not asked again.
func TestChainSendsTheSectionsAPluginReads(t *testing.T) {
	e := openEngine(t, Options{})
	entry := func(name string, order int, wasm []byte) Entry {
		return Entry{Plugin: mustLoad(t, e, name, wasm), Manifest: Manifest{Order: order, Mode: ModeEnforce}}
	}
	s := NewSet(SetOptions{}, []Entry{
		entry("data", 1, sectionsPlugin(int32(abi.SectionEventData), false)),
		entry("devices", 2, sectionsPlugin(int32(abi.SectionDevices|abi.SectionRecent|abi.SectionPrior), false)),
		entry("trap", 3, sectionsPlugin(0, true)),                                     // fails to answer: everything
		entry("unknown", 4, sectionsPlugin(int32(abi.SectionEventData)|1<<20, false)), // and a bit no host knows
	})
	req := testRequest("otp_received", false)
	req.Event.Actions = []string{"approve"}
	req.Preferences = map[string]bool{"otp_received": true}
	req.Recent = map[string]abi.Recent{"otp_received": {M1: 1, M10: 1, H1: 1}}
	want := map[string]abi.Sections{
		"data":    abi.SectionEventData,
		"devices": abi.SectionDevices | abi.SectionRecent | abi.SectionPrior, // the first plugin's allow is in prior
		"trap":    abi.AllSections,
		"unknown": abi.SectionEventData,
	}
	for range 2 {
		res, err := s.Evaluate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Plugins) != len(want) {
			t.Fatalf("decided %+v", res.Plugins)
		}
		for _, en := range s.Entries() {
			if got := sent(t, en.Plugin); got != want[en.Plugin.Name()] {
				t.Errorf("%s got the sections %b, want %b", en.Plugin.Name(), got, want[en.Plugin.Name()])
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
