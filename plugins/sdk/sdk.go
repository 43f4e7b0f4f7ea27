//go:build wasip1

package sdk

import (
	"bytes"
	"unsafe"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

// MaxInputBytes is the largest input relay_alloc agrees to hold.
const MaxInputBytes = 16 << 20

// The guest has one thread and runs only while the host is inside a call,
// so package globals need no locking. Go's GC does not move objects, so the
// buffers stay where relay_alloc said they are.
var (
	handler func(abi.Input) (abi.Output, error)
	inBuf   []byte
	outBuf  []byte
	decoder abi.InputDecoder // remembers the validated config across calls
)

// Handle registers h as the plugin's rule. Call it once, from init. An
// Output with an empty Verdict is sent as abi.VerdictAllow, so the zero
// Output means "allow unchanged". If h panics, the module traps and the host
// counts a plugin failure.
func Handle(h func(in abi.Input) abi.Output) {
	handler = func(in abi.Input) (abi.Output, error) { return h(in), nil }
}

// HandleConfig registers a rule with a typed configuration. parse turns the
// manifest's config {} block (raw JSON, nil when there is none) into C; it
// runs on the first call and again only when the config bytes change, so a
// plugin pays for it once per instance. A parse error fails every call
// (out_len 0) with the error on stderr, which the host shows.
func HandleConfig[C any](parse func(raw []byte) (C, error), eval func(in abi.Input, cfg C) abi.Output) {
	var (
		raw    []byte
		cfg    C
		err    error
		parsed bool
	)
	handler = func(in abi.Input) (abi.Output, error) {
		if !parsed || !bytes.Equal(raw, in.Config) {
			raw = append(raw[:0], in.Config...)
			cfg, err = parse(in.Config)
			parsed = true
		}
		if err != nil {
			return abi.Output{}, err
		}
		return eval(in, cfg), nil
	}
}

//go:wasmexport relay_abi_version
func relayABIVersion() int32 { return abi.Version }

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
	if handler == nil {
		println("relay_evaluate: no handler registered (call sdk.Handle from init)")
		return nil, false
	}
	var in abi.Input
	if err := decoder.Decode(doc, &in); err != nil {
		println("relay_evaluate: decode input:", err.Error())
		return nil, false
	}
	out, err := handler(in)
	if err != nil {
		println("relay_evaluate: config:", err.Error())
		return nil, false
	}
	if out.Verdict == "" {
		out.Verdict = abi.VerdictAllow
	}
	if err := out.Validate(); err != nil {
		println("relay_evaluate: invalid output:", err.Error())
		return nil, false
	}
	outBuf = abi.AppendOutput(outBuf[:0], &out)
	return outBuf, true
}
