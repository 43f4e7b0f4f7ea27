// Command gobad is a standard-Go test plugin that misbehaves on request:
// the input selects what relay_evaluate does.
package main

import (
	"bytes"
	"os"
	"unsafe"
)

var (
	inBuf  []byte
	outBuf []byte
	sink   [][]byte
	loops  int

	remembered string
)

//go:wasmexport relay_abi_version
func relayABIVersion() int32 { return 1 }

//go:wasmexport relay_alloc
func relayAlloc(size int32) unsafe.Pointer {
	if int(size) > cap(inBuf) {
		inBuf = make([]byte, size)
	}
	return unsafe.Pointer(unsafe.SliceData(inBuf))
}

//go:wasmexport relay_evaluate
func relayEvaluate(ptr unsafe.Pointer, n int32) int64 {
	in := unsafe.Slice((*byte)(ptr), n)
	switch {
	case bytes.Contains(in, []byte(`"loop"`)):
		for {
			loops++
		}
	case bytes.Contains(in, []byte(`"bomb"`)):
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case bytes.Contains(in, []byte(`"panic"`)):
		var m map[string]int
		m["x"] = 1
	case bytes.Contains(in, []byte(`"recurse"`)):
		return recurse(1)
	case bytes.Contains(in, []byte(`"exit"`)):
		os.Exit(3)
	case bytes.Contains(in, []byte(`"remember"`)):
		// Keeps the last event's title in a global and reports it: state
		// that must never cross from one workspace to another.
		prev := remembered
		if i := bytes.Index(in, []byte(`"title":"`)); i >= 0 {
			t := in[i+9:]
			remembered = string(t[:bytes.IndexByte(t, '"')])
		}
		outBuf = append(append(append(outBuf[:0], `{"verdict":"allow","reason":"previous: `...), prev...), `"}`...)
		return int64(uintptr(unsafe.Pointer(unsafe.SliceData(outBuf))))<<32 | int64(len(outBuf))
	}
	outBuf = append(outBuf[:0], `{"verdict":"allow","reason":"go"}`...)
	return int64(uintptr(unsafe.Pointer(unsafe.SliceData(outBuf))))<<32 | int64(len(outBuf))
}

func recurse(n int64) int64 {
	var pad [64]byte
	pad[n%64] = byte(n)
	return recurse(n+1) + int64(pad[0])
}

func main() {}
