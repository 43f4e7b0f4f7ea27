//go:build wasip1

// Command gosections is a test plugin that reads its input whole and
// answers, as its reason, which sections the host sent (abi.Sections in
// decimal). Its relay_input_sections returns its config's "reads" and
// traps when the config says "trap".
package main

import (
	"encoding/json"
	"strconv"
	"unsafe"

	"github.com/edgerelay/edgerelay/plugins/abi"
)

var (
	inBuf  []byte
	outBuf []byte
	dec    abi.InputDecoder
)

//go:wasmexport relay_abi_version
func abiVersion() int32 { return abi.Version }

//go:wasmexport relay_encoding
func encoding() int32 { return abi.EncodingCompact }

//go:wasmexport relay_alloc
func alloc(n int32) unsafe.Pointer {
	if int(n) > len(inBuf) {
		inBuf = make([]byte, n)
	}
	return unsafe.Pointer(unsafe.SliceData(inBuf))
}

//go:wasmexport relay_input_sections
func inputSections(ptr unsafe.Pointer, n int32) int32 {
	var c struct {
		Reads uint32
		Trap  bool
	}
	if n > 0 {
		if err := json.Unmarshal(unsafe.Slice((*byte)(ptr), n), &c); err != nil {
			panic(err)
		}
	}
	if c.Trap {
		panic("trap")
	}
	return int32(c.Reads)
}

//go:wasmexport relay_evaluate
func evaluate(ptr unsafe.Pointer, n int32) int64 {
	var in abi.Input
	if err := dec.DecodeCompact(unsafe.Slice((*byte)(ptr), n), &in); err != nil {
		panic(err)
	}
	var sent abi.Sections
	for s, present := range map[abi.Sections]bool{
		abi.SectionEventData: in.Event.Data != nil, abi.SectionActions: in.Event.Actions != nil,
		abi.SectionSettings: in.Workspace.Settings != nil, abi.SectionPreferences: in.User.Preferences != nil,
		abi.SectionDevices: in.User.Devices != nil, abi.SectionRecent: in.User.Recent != nil,
		abi.SectionPrior: in.Prior != nil,
	} {
		if present {
			sent |= s
		}
	}
	out := abi.Allow()
	out.Reason = strconv.Itoa(int(sent))
	outBuf = abi.AppendOutputCompact(outBuf[:0], &out)
	return int64(uintptr(unsafe.Pointer(unsafe.SliceData(outBuf))))<<32 | int64(len(outBuf))
}

func main() {}
