package guard

// A minimal WebAssembly binary encoder for test modules: enough to write
// the ABI exports and the misbehaving guests by hand, without wat2wasm.

import "bytes"

const (
	tI32 = 0x7f
	tI64 = 0x7e

	opUnreachable = 0x00
	opBlock       = 0x02
	opLoop        = 0x03
	opIf          = 0x04
	opEnd         = 0x0b
	opBr          = 0x0c
	opBrIf        = 0x0d
	opReturn      = 0x0f
	opCall        = 0x10
	opDrop        = 0x1a
	opLocalGet    = 0x20
	opLocalSet    = 0x21
	opLocalTee    = 0x22
	opI32Store    = 0x36
	opMemoryGrow  = 0x40
	opI32Const    = 0x41
	opI64Const    = 0x42
	opI32Eqz      = 0x45
	opI32Eq       = 0x46
	opI32Add      = 0x6a
	opI32Sub      = 0x6b
	opI64Or       = 0x84
	opI64Shl      = 0x86
	opI64ExtendU  = 0xad
	blockEmpty    = 0x40
)

func uleb(v uint64) []byte {
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

func sleb(v int64) []byte {
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

func i32c(v int32) []byte        { return append([]byte{opI32Const}, sleb(int64(v))...) }
func i64c(v int64) []byte        { return append([]byte{opI64Const}, sleb(v)...) }
func lget(i uint32) []byte       { return append([]byte{opLocalGet}, uleb(uint64(i))...) }
func call(i uint32) []byte       { return append([]byte{opCall}, uleb(uint64(i))...) }
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
func vecOf(items ...[]byte) []byte {
	return append(uleb(uint64(len(items))), bytes.Join(items, nil)...)
}
func name(s string) []byte { return append(uleb(uint64(len(s))), s...) }

type wfunc struct {
	typ    uint32
	locals []byte // encoded local declarations, nil = none
	code   []byte // without the final end
}

type wmod struct {
	types   [][]byte
	imports [][]byte
	nImport uint32
	funcs   []wfunc
	mem     []byte
	exports [][]byte
	data    [][]byte
}

func newMod() *wmod { return &wmod{} }

func (m *wmod) typ(params, results []byte) uint32 {
	t := cat([]byte{0x60}, uleb(uint64(len(params))), params, uleb(uint64(len(results))), results)
	for i, have := range m.types {
		if bytes.Equal(have, t) {
			return uint32(i)
		}
	}
	m.types = append(m.types, t)
	return uint32(len(m.types) - 1)
}

// importFunc adds an imported function; call it before any func.
func (m *wmod) importFunc(mod, fn string, params, results []byte) uint32 {
	t := m.typ(params, results)
	m.imports = append(m.imports, cat(name(mod), name(fn), []byte{0x00}, uleb(uint64(t))))
	m.nImport++
	return m.nImport - 1
}

// memory declares memory 0 with min pages (max < 0: no max) and exports it.
func (m *wmod) memory(min uint32, max int64) *wmod {
	if max < 0 {
		m.mem = cat([]byte{0x00}, uleb(uint64(min)))
	} else {
		m.mem = cat([]byte{0x01}, uleb(uint64(min)), uleb(uint64(max)))
	}
	m.exports = append(m.exports, cat(name("memory"), []byte{0x02, 0x00}))
	return m
}

// fn adds a function, exported as export unless it is empty, and returns
// its index.
func (m *wmod) fn(export string, params, results []byte, locals []byte, code ...[]byte) uint32 {
	idx := m.nImport + uint32(len(m.funcs))
	m.funcs = append(m.funcs, wfunc{typ: m.typ(params, results), locals: locals, code: cat(code...)})
	if export != "" {
		m.exports = append(m.exports, cat(name(export), []byte{0x00}, uleb(uint64(idx))))
	}
	return idx
}

// dataAt adds an active data segment for memory 0 at offset.
func (m *wmod) dataAt(offset int32, b []byte) *wmod {
	m.data = append(m.data, cat([]byte{0x00}, i32c(offset), []byte{opEnd}, uleb(uint64(len(b))), b))
	return m
}

func wsection(id byte, body []byte) []byte {
	return cat([]byte{id}, uleb(uint64(len(body))), body)
}

func (m *wmod) bytes() []byte {
	out := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	out = append(out, wsection(1, vecOf(m.types...))...)
	if len(m.imports) > 0 {
		out = append(out, wsection(2, vecOf(m.imports...))...)
	}
	var fidx [][]byte
	for _, f := range m.funcs {
		fidx = append(fidx, uleb(uint64(f.typ)))
	}
	out = append(out, wsection(3, vecOf(fidx...))...)
	if m.mem != nil {
		out = append(out, wsection(5, vecOf(m.mem))...)
	}
	out = append(out, wsection(7, vecOf(m.exports...))...)
	var bodies [][]byte
	for _, f := range m.funcs {
		locals := f.locals
		if locals == nil {
			locals = []byte{0x00}
		}
		body := cat(locals, f.code, []byte{opEnd})
		bodies = append(bodies, cat(uleb(uint64(len(body))), body))
	}
	out = append(out, wsection(10, vecOf(bodies...))...)
	if len(m.data) > 0 {
		out = append(out, wsection(11, vecOf(m.data...))...)
	}
	return out
}

var (
	noT  = []byte{}
	i32T = []byte{tI32}
	i64T = []byte{tI64}
	ppT  = []byte{tI32, tI32}
)

// abiMod returns a module with memory, relay_abi_version (returning
// version) and relay_alloc (a buffer at 1024), ready for relay_evaluate.
func abiMod(version int32) *wmod {
	m := newMod().memory(2, -1)
	m.fn("relay_abi_version", noT, i32T, nil, i32c(version))
	m.fn("relay_alloc", i32T, i32T, nil, i32c(1024))
	return m
}

// packed returns code that computes (ptr<<32)|len from two i32 expressions.
func packed(ptr, n []byte) []byte {
	return cat(ptr, []byte{opI64ExtendU}, i64c(32), []byte{opI64Shl}, n, []byte{opI64ExtendU}, []byte{opI64Or})
}

// constPlugin returns a module whose relay_evaluate always returns out.
func constPlugin(out string) []byte {
	m := abiMod(1).dataAt(16, []byte(out))
	m.fn("relay_evaluate", ppT, i64T, nil, i64c(16<<32|int64(len(out))))
	return m.bytes()
}

// echoPlugin returns a module whose relay_evaluate returns its input.
func echoPlugin() []byte {
	m := abiMod(1)
	m.fn("relay_evaluate", ppT, i64T, nil, packed(lget(0), lget(1)))
	return m.bytes()
}
