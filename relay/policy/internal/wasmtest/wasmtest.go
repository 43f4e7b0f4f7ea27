// Package wasmtest is a minimal WebAssembly binary encoder for test
// modules: enough to write the ABI exports and the misbehaving guests of
// the policy engine's and the guard's tests by hand, without wat2wasm.
package wasmtest

import "bytes"

// Value types, opcodes and the empty block type, as the binary format
// spells them.
const (
	TI32 = 0x7f
	TI64 = 0x7e

	OpUnreachable = 0x00
	OpBlock       = 0x02
	OpLoop        = 0x03
	OpIf          = 0x04
	OpEnd         = 0x0b
	OpBr          = 0x0c
	OpBrIf        = 0x0d
	OpReturn      = 0x0f
	OpCall        = 0x10
	OpDrop        = 0x1a
	OpLocalGet    = 0x20
	OpLocalSet    = 0x21
	OpLocalTee    = 0x22
	OpI32Store    = 0x36
	OpMemoryGrow  = 0x40
	OpI32Const    = 0x41
	OpI64Const    = 0x42
	OpI32Eqz      = 0x45
	OpI32Eq       = 0x46
	OpI32Add      = 0x6a
	OpI32Sub      = 0x6b
	OpI64Or       = 0x84
	OpI64Shl      = 0x86
	OpI64ExtendU  = 0xad
	BlockEmpty    = 0x40
)

// ULEB encodes v as unsigned LEB128.
func ULEB(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

// SLEB encodes v as signed LEB128.
func SLEB(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		done := (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0)
		if !done {
			c |= 0x80
		}
		b = append(b, c)
		if done {
			return b
		}
	}
}

// I32Const, I64Const, LocalGet and Call encode one instruction each.
func I32Const(v int32) []byte  { return append([]byte{OpI32Const}, SLEB(int64(v))...) }
func I64Const(v int64) []byte  { return append([]byte{OpI64Const}, SLEB(v)...) }
func LocalGet(i uint32) []byte { return append([]byte{OpLocalGet}, ULEB(uint64(i))...) }
func Call(i uint32) []byte     { return append([]byte{OpCall}, ULEB(uint64(i))...) }

// Cat concatenates encoded code.
func Cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Vec encodes a vector: its length, then the items.
func Vec(items ...[]byte) []byte {
	return append(ULEB(uint64(len(items))), bytes.Join(items, nil)...)
}

// Name encodes a name: its length, then its bytes.
func Name(s string) []byte { return append(ULEB(uint64(len(s))), s...) }

type wfunc struct {
	typ    uint32
	locals []byte // encoded local declarations, nil = none
	code   []byte // without the final end
}

// Module is a module being built; Bytes encodes it.
type Module struct {
	types   [][]byte
	imports [][]byte
	nImport uint32
	funcs   []wfunc
	mem     []byte
	exports [][]byte
	data    [][]byte
}

// NewModule returns an empty module.
func NewModule() *Module { return &Module{} }

// Type adds (or finds) a function type and returns its index.
func (m *Module) Type(params, results []byte) uint32 {
	t := Cat([]byte{0x60}, ULEB(uint64(len(params))), params, ULEB(uint64(len(results))), results)
	for i, have := range m.types {
		if bytes.Equal(have, t) {
			return uint32(i)
		}
	}
	m.types = append(m.types, t)
	return uint32(len(m.types) - 1)
}

// ImportFunc adds an imported function; Call it before any func.
func (m *Module) ImportFunc(mod, fn string, params, results []byte) uint32 {
	t := m.Type(params, results)
	m.imports = append(m.imports, Cat(Name(mod), Name(fn), []byte{0x00}, ULEB(uint64(t))))
	m.nImport++
	return m.nImport - 1
}

// Memory declares memory 0 with min pages (max < 0: no max) and exports it.
func (m *Module) Memory(min uint32, max int64) *Module {
	if max < 0 {
		m.mem = Cat([]byte{0x00}, ULEB(uint64(min)))
	} else {
		m.mem = Cat([]byte{0x01}, ULEB(uint64(min)), ULEB(uint64(max)))
	}
	m.exports = append(m.exports, Cat(Name("memory"), []byte{0x02, 0x00}))
	return m
}

// Func adds a function, exported as export unless it is empty, and returns
// its index.
func (m *Module) Func(export string, params, results []byte, locals []byte, code ...[]byte) uint32 {
	idx := m.nImport + uint32(len(m.funcs))
	m.funcs = append(m.funcs, wfunc{typ: m.Type(params, results), locals: locals, code: Cat(code...)})
	if export != "" {
		m.exports = append(m.exports, Cat(Name(export), []byte{0x00}, ULEB(uint64(idx))))
	}
	return idx
}

// DataAt adds an active data segment for memory 0 at offset.
func (m *Module) DataAt(offset int32, b []byte) *Module {
	m.data = append(m.data, Cat([]byte{0x00}, I32Const(offset), []byte{OpEnd}, ULEB(uint64(len(b))), b))
	return m
}

// Section encodes a section with its id and size.
func Section(id byte, body []byte) []byte {
	return Cat([]byte{id}, ULEB(uint64(len(body))), body)
}

// Bytes encodes the module.
func (m *Module) Bytes() []byte {
	out := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	out = append(out, Section(1, Vec(m.types...))...)
	if len(m.imports) > 0 {
		out = append(out, Section(2, Vec(m.imports...))...)
	}
	var fidx [][]byte
	for _, f := range m.funcs {
		fidx = append(fidx, ULEB(uint64(f.typ)))
	}
	out = append(out, Section(3, Vec(fidx...))...)
	if m.mem != nil {
		out = append(out, Section(5, Vec(m.mem))...)
	}
	out = append(out, Section(7, Vec(m.exports...))...)
	var bodies [][]byte
	for _, f := range m.funcs {
		locals := f.locals
		if locals == nil {
			locals = []byte{0x00}
		}
		body := Cat(locals, f.code, []byte{OpEnd})
		bodies = append(bodies, Cat(ULEB(uint64(len(body))), body))
	}
	out = append(out, Section(10, Vec(bodies...))...)
	if len(m.data) > 0 {
		out = append(out, Section(11, Vec(m.data...))...)
	}
	return out
}

// Type lists for Func and ImportFunc: none, one i32, one i64, two i32.
var (
	NoT   = []byte{}
	I32T  = []byte{TI32}
	I64T  = []byte{TI64}
	PairT = []byte{TI32, TI32}
)

// ABIModule returns a module with memory, relay_abi_version (returning
// version) and relay_alloc (a buffer at 1024), ready for relay_evaluate.
func ABIModule(version int32) *Module {
	m := NewModule().Memory(2, -1)
	m.Func("relay_abi_version", NoT, I32T, nil, I32Const(version))
	m.Func("relay_alloc", I32T, I32T, nil, I32Const(1024))
	return m
}

// Packed returns code that computes (ptr<<32)|len from two i32 expressions.
func Packed(ptr, n []byte) []byte {
	return Cat(ptr, []byte{OpI64ExtendU}, I64Const(32), []byte{OpI64Shl}, n, []byte{OpI64ExtendU}, []byte{OpI64Or})
}

// ConstPlugin returns a module whose relay_evaluate always returns out.
func ConstPlugin(out string) []byte {
	m := ABIModule(1).DataAt(16, []byte(out))
	m.Func("relay_evaluate", PairT, I64T, nil, I64Const(16<<32|int64(len(out))))
	return m.Bytes()
}

// EchoPlugin returns a module whose relay_evaluate returns its input.
func EchoPlugin() []byte {
	m := ABIModule(1)
	m.Func("relay_evaluate", PairT, I64T, nil, Packed(LocalGet(0), LocalGet(1)))
	return m.Bytes()
}
