//go:build wasip1

package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"runtime"
	"strconv"
	"unsafe"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// MaxInputBytes is the largest input relay_alloc agrees to hold.
const MaxInputBytes = 16 << 20

// The guest has one thread and runs only while the host is inside a call,
// so package globals need no locking. Go's GC does not move objects, so the
// buffers stay where relay_alloc said they are.
var (
	pick    func(config []byte) *rule // the rule for a config (Handle, HandleConfig, Policy)
	picked  *rule                     // the rule pickRule chose for the input being decoded
	inBuf   []byte
	outBuf  []byte
	decoder abi.InputDecoder
	calls   uint // relay_evaluate calls, for yielding every 8th
)

// A rule is a registered evaluation for one config.
type rule struct {
	h     func(abi.Input) abi.Output
	reads abi.Sections // the input sections h reads
	err   error        // the config's parse error
}

// An Option changes how a rule is registered.
type Option func(*options)

type options struct {
	reads abi.Sections
}

func newOptions(opts []Option) options {
	o := options{reads: abi.AllSections}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Reads says which sections of the input (its maps and lists) the rule
// reads; the others reach it nil. Without it a rule gets every section.
// Building them is most of what a small rule costs in a standard-Go guest
// (about 2 µs per map): a rule that reads event.data only, say so with
// Reads(abi.SectionEventData). The scalar fields (event type, title, body,
// times, config…) always arrive. Check it natively: Evaluate(in) and
// Evaluate(in.Only(sections)) must answer the same.
func Reads(s abi.Sections) Option { return func(o *options) { o.reads = s } }

// Handle registers h as the plugin's rule. Call it once, from init. An
// Output with an empty Verdict is sent as abi.VerdictAllow, so the zero
// Output means "allow unchanged". If h panics, the module traps and the host
// counts a plugin failure.
func Handle(h func(in abi.Input) abi.Output, opts ...Option) {
	r := &rule{h: h, reads: newOptions(opts).reads}
	pick = func([]byte) *rule { return r }
}

// HandleConfig registers a rule with a typed configuration. parse turns the
// manifest's config {} block (raw JSON, nil when there is none) into C; it
// runs once per instance and config (the relay lets plugins whose files
// hold the same bytes share instances, so one instance may serve several
// manifests' configs in turn; each is parsed once). A parse error fails
// every call with that config (out_len 0) with the error on stderr, which
// the host shows.
func HandleConfig[C any](parse func(raw []byte) (C, error), eval func(in abi.Input, cfg C) abi.Output, opts ...Option) {
	reads := newOptions(opts).reads
	pick = configured(func(raw []byte) (func(abi.Input) abi.Output, abi.Sections, error) {
		_, rest, err := splitPolicy(raw)
		if err != nil {
			return nil, 0, err
		}
		c, err := parse(rest)
		if err != nil {
			return nil, 0, err
		}
		return func(in abi.Input) abi.Output { return eval(in, c) }, reads, nil
	})
}

// policies are the named policies of a bundle (Policy).
var policies map[string]func(raw []byte) (func(abi.Input) abi.Output, abi.Sections, error)

// Policy registers one policy of a bundle: a module holding several
// policies, each installed as its own plugin (the same .wasm file under
// each name) and selected by the "policy" key of the manifest's config:
//
//	config {
//	  policy = "otp_redaction"
//	  body   = "Tap to view your code for {account}"
//	}
//
// The rest of the config goes to parse, as with HandleConfig. Plugins whose
// files hold the same bytes share one compiled module and its instances in
// the relay, so a bundle costs one compile, one copy of the code and one
// set of instances instead of one per plugin (a standard-Go module's code
// is megabytes; calls that alternate between separately compiled modules
// run with cold caches). Call Policy from init, once per policy; do not mix
// it with Handle or HandleConfig. Options (Reads) are per policy.
func Policy[C any](name string, parse func(raw []byte) (C, error), eval func(in abi.Input, cfg C) abi.Output, opts ...Option) {
	if policies == nil {
		policies = make(map[string]func([]byte) (func(abi.Input) abi.Output, abi.Sections, error))
		pick = configured(func(raw []byte) (func(abi.Input) abi.Output, abi.Sections, error) {
			name, rest, err := splitPolicy(raw)
			if err != nil {
				return nil, 0, err
			}
			mk, ok := policies[name]
			if !ok {
				return nil, 0, errors.New("config.policy " + strconv.Quote(name) + " names no policy of this module")
			}
			return mk(rest)
		})
	}
	reads := newOptions(opts).reads
	policies[name] = func(raw []byte) (func(abi.Input) abi.Output, abi.Sections, error) {
		c, err := parse(raw)
		if err != nil {
			return nil, 0, err
		}
		return func(in abi.Input) abi.Output { return eval(in, c) }, reads, nil
	}
}

// maxConfigs bounds the configs an instance remembers (configured).
const maxConfigs = 64

// configured returns a picker that builds the rule for each config it
// meets once, with build, and remembers it (or the error) by the config's
// bytes. It scans the few configs it knows (a bundle's instance serves
// its policies in turn): comparing mostly stops at the length, which in a
// guest is cheaper than hashing the config for a map.
func configured(build func(raw []byte) (func(abi.Input) abi.Output, abi.Sections, error)) func([]byte) *rule {
	type known struct {
		config []byte
		r      *rule
	}
	var rules []known
	return func(config []byte) *rule {
		for _, k := range rules {
			if bytes.Equal(k.config, config) {
				return k.r
			}
		}
		if len(rules) >= maxConfigs {
			rules = rules[:0]
		}
		r := &rule{}
		r.h, r.reads, r.err = build(config)
		rules = append(rules, known{config: bytes.Clone(config), r: r})
		return r
	}
}

// pickRule is the decoder's pick: it chooses the rule for the input's
// config and tells the decoder the sections the rule reads.
func pickRule(config []byte) abi.Sections {
	picked = pick(config)
	if picked.err != nil {
		return 0
	}
	return picked.reads
}

// splitPolicy takes the "policy" key out of a config object: the policy's
// name and the rest of the config (nil when nothing else is left).
func splitPolicy(config []byte) (string, []byte, error) {
	if len(config) == 0 || !bytes.Contains(config, []byte(`"policy"`)) {
		return "", config, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(config, &m); err != nil {
		return "", nil, errors.New("config: " + err.Error())
	}
	p, ok := m["policy"]
	if !ok {
		return "", config, nil
	}
	var name string
	if err := json.Unmarshal(p, &name); err != nil {
		return "", nil, errors.New("config.policy: want a string")
	}
	delete(m, "policy")
	if len(m) == 0 {
		return name, nil, nil
	}
	rest, err := json.Marshal(m)
	if err != nil {
		return "", nil, errors.New("config: " + err.Error())
	}
	return name, rest, nil
}

//go:wasmexport relay_abi_version
func relayABIVersion() int32 { return abi.Version }

// relayEncoding asks the host for the compact (binary) input and output:
// decoding the JSON input was most of a typical policy's call.
//
//go:wasmexport relay_encoding
func relayEncoding() int32 { return abi.EncodingCompact }

// relayInputSections tells the host which input sections the rule for a
// config reads (Reads), so that it need not send the others.
//
//go:wasmexport relay_input_sections
func relayInputSections(ptr unsafe.Pointer, n int32) int32 {
	if pick == nil || n < 0 || (n > 0 && ptr == nil) {
		return int32(abi.AllSections)
	}
	var config []byte
	if n > 0 {
		config = unsafe.Slice((*byte)(ptr), n)
	}
	r := pick(config) // remembers config by a copy
	if r.err != nil {
		return int32(abi.AllSections) // the error shows on relay_evaluate
	}
	return int32(r.reads)
}

//go:wasmexport relay_alloc
func relayAlloc(size int32) unsafe.Pointer {
	if size < 0 || size > MaxInputBytes {
		return nil
	}
	if int(size) > cap(inBuf) {
		inBuf = make([]byte, size)
	}
	inBuf = inBuf[:cap(inBuf)]
	if len(inBuf) == 0 {
		inBuf = make([]byte, 1)
	}
	return unsafe.Pointer(unsafe.SliceData(inBuf))
}

//go:wasmexport relay_evaluate
func relayEvaluate(ptr unsafe.Pointer, n int32) int64 {
	if n < 0 || ptr == nil {
		println("relay_evaluate: bad input pointer or length")
		return 0
	}
	out, ok := evaluate(unsafe.Slice((*byte)(ptr), n))
	if !ok {
		return 0
	}
	return int64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))<<32 | int64(len(out))
}

// evaluate runs the handler on one input document and returns the encoded
// output, which aliases outBuf. On failure it writes the reason to stderr
// and returns false.
func evaluate(doc []byte) ([]byte, bool) {
	if pick == nil {
		println("relay_evaluate: no handler registered (call sdk.Handle from init)")
		return nil, false
	}
	var in abi.Input
	picked = nil
	if err := decoder.DecodeCompactSections(doc, &in, pickRule); err != nil {
		println("relay_evaluate: decode input:", err.Error())
		return nil, false
	}
	r := picked
	var out abi.Output
	if r.err == nil {
		out = r.h(in)
	}
	// Let the runtime's other goroutines run now and then: the garbage
	// collector's mark workers get no other chance in a module that only
	// runs inside host calls, and without them a collection never finishes
	// and the heap grows until the memory limit traps the instance
	// (relay/policy TestGuestGarbageIsCollected). A worker runs its cycle to
	// the end once scheduled; yielding on every call would cost each call
	// about 40 more guest function calls.
	if calls++; calls%8 == 0 {
		runtime.Gosched()
	}
	if r.err != nil {
		println("relay_evaluate: config:", r.err.Error())
		return nil, false
	}
	if out.Verdict == "" {
		out.Verdict = abi.VerdictAllow
	}
	// The relay validates the output (abi.Output.Validate) and names what
	// is wrong; the verdict is checked here too, since the compact
	// encoding can only carry the three.
	switch out.Verdict {
	case abi.VerdictAllow, abi.VerdictSuppress, abi.VerdictDefer:
	default:
		println("relay_evaluate: invalid output: verdict: unknown verdict", strconv.Quote(out.Verdict))
		return nil, false
	}
	outBuf = abi.AppendOutputCompact(outBuf[:0], &out)
	return outBuf, true
}
