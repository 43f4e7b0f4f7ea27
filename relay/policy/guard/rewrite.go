package guard

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// rewrite emits the instrumented module. Defined functions shift up by one
// index (the guard import comes after the module's own imports); each
// wrapped function keeps its index, as the wrapper, and its body moves to a
// new function appended after all others; two globals are appended (fuel,
// depth), so no existing global index changes.
func (m *module) rewrite(secs []section) ([]byte, error) {
	n := len(m.bodies)
	// A recursive function counts its depth itself (on entry, and down
	// before each return and its end) unless a branch leaves it without a
	// return: then a wrapper counts around a call of the moved body.
	var wrapped []int
	for f := 0; f < n; f++ {
		if m.cyclic[f] && m.bodies[f].brExit {
			wrapped = append(wrapped, f)
		}
	}
	shift := func(idx uint32) uint32 {
		if idx >= m.importFuncs {
			return idx + 1
		}
		return idx
	}
	hostIdx := m.importFuncs
	innerIdx := make(map[int]uint32, len(wrapped))
	for k, f := range wrapped {
		innerIdx[f] = m.importFuncs + 1 + uint32(n+k)
	}
	hostType := uint32(len(m.types))
	fuelGlobal := m.totalGlobs()
	depthGlobal := fuelGlobal + 1
	newGlobals := []byte{
		0x7f, 0x01, 0x41, 0x00, 0x0b, // fuel: (mut i32) (i32.const 0): the first count asks the host
		0x7f, 0x01, 0x41, 0x00, 0x0b, // depth: (mut i32) (i32.const 0)
	}
	hostImport := appendName(nil, Module)
	hostImport = appendName(hostImport, Func)
	hostImport = append(hostImport, 0x00)
	hostImport = appendU32(hostImport, hostType)

	out := append([]byte(nil), magic...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	have := map[byte]bool{}
	// insert emits the sections the module lacks before the first section
	// that must follow them.
	insert := func(next byte) {
		if next == 0 {
			return
		}
		if !have[1] && order(next) > order(1) {
			emit(1, append(appendU32(nil, 1), hostTypeBytes...))
			have[1] = true
		}
		if !have[2] && order(next) > order(2) {
			emit(2, append(appendU32(nil, 1), hostImport...))
			have[2] = true
		}
		if !have[6] && order(next) > order(6) {
			emit(6, append(appendU32(nil, 2), newGlobals...))
			have[6] = true
		}
	}
	for i, s := range secs {
		insert(s.id)
		if s.id == 0 && !slices.ContainsFunc(secs[i:], func(s section) bool { return s.id != 0 }) {
			insert(11) // trailing custom sections stay last
		}
		switch s.id {
		case 1:
			b := appendU32(nil, uint32(len(m.types)+1))
			b = append(b, countedTail(s.body)...)
			emit(1, append(b, hostTypeBytes...))
		case 2:
			r := &reader{b: s.body}
			cnt := r.u32()
			b := appendU32(nil, cnt+1)
			b = append(b, s.body[r.i:]...)
			emit(2, append(b, hostImport...))
		case 3:
			b := appendU32(nil, uint32(n+len(wrapped)))
			for _, t := range m.funcTypes {
				b = appendU32(b, t)
			}
			for _, f := range wrapped {
				b = appendU32(b, m.funcTypes[f])
			}
			emit(3, b)
		case 6:
			r := &reader{b: s.body}
			cnt := r.u32()
			b := appendU32(nil, cnt+2)
			b = append(b, patch(s.body[r.i:], r.i, m.globalSites, shift)...)
			emit(6, append(b, newGlobals...))
		case 7:
			emit(7, patch(s.body, 0, m.exportSites, shift))
		case 8:
			emit(8, patch(s.body, 0, []site{*m.startSite}, shift))
		case 9:
			emit(9, patch(s.body, 0, m.elemSites, shift))
		case 10:
			b := appendU32(nil, uint32(n+len(wrapped)))
			for f := range m.bodies {
				var fb []byte
				if _, ok := innerIdx[f]; ok {
					fb = m.wrapper(f, innerIdx[f], hostIdx, depthGlobal)
				} else {
					fb = m.body(f, shift, hostIdx, fuelGlobal, m.cyclic[f], depthGlobal)
				}
				b = appendU32(b, uint32(len(fb)))
				b = append(b, fb...)
			}
			for _, f := range wrapped {
				fb := m.body(f, shift, hostIdx, fuelGlobal, false, depthGlobal)
				b = appendU32(b, uint32(len(fb)))
				b = append(b, fb...)
			}
			emit(10, b)
		case 0:
			emit(0, m.customSection(s.body, shift))
		default:
			emit(s.id, s.body)
		}
		have[s.id] = true
	}
	insert(11) // a module without code: still a valid module with the import
	if !have[1] || !have[2] || !have[6] {
		return nil, errors.New("guard: internal error: sections not emitted")
	}
	return out, nil
}

// hostTypeBytes is the host function's type: (i32) -> (i32).
var hostTypeBytes = []byte{0x60, 0x01, 0x7f, 0x01, 0x7f}

// countedTail returns a vector's bytes after its count.
func countedTail(b []byte) []byte {
	r := &reader{b: b}
	r.u32()
	return b[r.i:]
}

// patch copies b (which starts at offset base of its section) with the
// function indexes at sites shifted.
func patch(b []byte, base int, sites []site, shift func(uint32) uint32) []byte {
	out := make([]byte, 0, len(b)+len(sites))
	last := 0
	for _, s := range sites {
		off, end := s.off-base, s.end-base
		out = append(out, b[last:off]...)
		out = appendU32(out, shift(s.idx))
		last = end
	}
	return append(out, b[last:]...)
}

// body returns function f's body with fuel counts added and function
// indexes shifted.
func (m *module) body(f int, shift func(uint32) uint32, host, fuel uint32, depth bool, depthGlobal uint32) []byte {
	b := &m.bodies[f]
	out := make([]byte, 0, len(b.locals)+len(b.code)+len(b.ticks)*24+len(b.sites)*2+32)
	out = append(out, b.locals...)
	if depth {
		out = appendDepthUp(out, host, depthGlobal)
	}
	ti := 0
	emitTicks := func(at int) {
		for ti < len(b.ticks) && b.ticks[ti].at == at {
			out = appendTick(out, b.ticks[ti].weight, host, fuel)
			ti++
		}
	}
	last := 0
	for _, s := range b.sites {
		if s.off > 0 || s.kind != siteLoop {
			emitTicks(0)
		}
		out = append(out, b.code[last:s.off]...)
		switch s.kind {
		case siteLoop:
			emitTicks(s.off)
		case siteCall:
			out = append(out, 0x10)
			out = appendU32(out, shift(s.idx))
		case siteRefFunc:
			out = append(out, 0xd2)
			out = appendU32(out, shift(s.idx))
		case siteReturn:
			if depth {
				out = appendDepthDown(out, depthGlobal)
			}
		}
		last = s.end
	}
	emitTicks(0)
	out = append(out, b.code[last:]...)
	if ti != len(b.ticks) {
		panic(fmt.Sprintf("guard: %d of %d ticks placed", ti, len(b.ticks)))
	}
	return out
}

// appendTick appends: fuel -= weight; if fuel < 0 { fuel = host(ReasonFuel) }.
func appendTick(b []byte, weight uint64, host, fuel uint32) []byte {
	b = append(b, 0x23)
	b = appendU32(b, fuel)
	b = append(b, 0x41)
	b = appendS32(b, int32(weight))
	b = append(b, 0x6b, 0x24) // i32.sub global.set
	b = appendU32(b, fuel)
	b = append(b, 0x23)
	b = appendU32(b, fuel)
	b = append(b, 0x41, 0x00, 0x48, 0x04, 0x40) // i32.const 0 i32.lt_s if
	b = append(b, 0x41, ReasonFuel, 0x10)
	b = appendU32(b, host)
	b = append(b, 0x24)
	b = appendU32(b, fuel)
	return append(b, 0x0b)
}

// appendDepthUp appends: depth++; if depth > MaxDepth { host(ReasonDepth) }.
func appendDepthUp(b []byte, host, depth uint32) []byte {
	g := func(op byte) { b = append(b, op); b = appendU32(b, depth) }
	g(0x23) // global.get depth
	b = append(b, 0x41, 0x01, 0x6a)
	g(0x24) // global.set depth
	g(0x23)
	b = append(b, 0x41)
	b = appendS32(b, MaxDepth)
	b = append(b, 0x4b, 0x04, 0x40) // i32.gt_u if
	b = append(b, 0x41, ReasonDepth, 0x10)
	b = appendU32(b, host)
	return append(b, 0x1a, 0x00, 0x0b) // drop unreachable end
}

// appendDepthDown appends: depth--.
func appendDepthDown(b []byte, depth uint32) []byte {
	b = append(b, 0x23)
	b = appendU32(b, depth)
	b = append(b, 0x41, 0x01, 0x6b, 0x24)
	return appendU32(b, depth)
}

// wrapper is the body that replaces wrapped function f: it counts the call
// depth around a call of the moved body.
func (m *module) wrapper(f int, inner, host, depth uint32) []byte {
	b := appendDepthUp([]byte{0x00}, host, depth) // no locals
	g := func(op byte) { b = append(b, op); b = appendU32(b, depth) }
	r := &reader{b: m.types[m.funcTypes[f]]}
	r.byte()
	params := r.u32()
	for i := uint32(0); i < params; i++ {
		b = append(b, 0x20)
		b = appendU32(b, i)
	}
	b = append(b, 0x10)
	b = appendU32(b, inner)
	g(0x23)
	b = append(b, 0x41, 0x01, 0x6b)
	g(0x24)
	return append(b, 0x0b)
}

// customSection returns a custom section for the rewritten module: the
// "name" section with its function indexes renumbered, other custom
// sections unchanged. A section it cannot decode is kept as it is, for
// wazero to judge.
func (m *module) customSection(body []byte, shift func(uint32) uint32) []byte {
	r := &reader{b: body}
	nm := r.name()
	if r.err != nil || nm != "name" || !utf8.ValidString(nm) {
		return body
	}
	out := append([]byte(nil), body[:r.i]...)
	nameMap := func(sr *reader, b []byte, shift func(uint32) uint32) []byte {
		cnt := sr.u32()
		b = appendU32(b, cnt)
		for k := uint32(0); k < cnt && sr.err == nil; k++ {
			idx := sr.u32()
			s := sr.name()
			if !utf8.ValidString(s) {
				sr.err = errShort
			}
			b = appendU32(b, shift(idx))
			b = appendName(b, s)
		}
		return b
	}
	for !r.done() && r.err == nil {
		id := r.byte()
		sub := r.bytes(int(r.u32()))
		if r.err != nil {
			return body
		}
		sr := &reader{b: sub}
		var payload []byte
		switch id {
		case 1: // function names
			payload = nameMap(sr, nil, shift)
		case 2: // local names, by function: shift the function, not the locals
			cnt := sr.u32()
			payload = appendU32(nil, cnt)
			for k := uint32(0); k < cnt && sr.err == nil; k++ {
				payload = appendU32(payload, shift(sr.u32()))
				payload = nameMap(sr, payload, func(i uint32) uint32 { return i })
			}
		default:
			payload = sub
			sr.i = len(sub)
		}
		if sr.err != nil || sr.i != len(sub) || payload == nil {
			return body
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
	}
	if r.err != nil {
		return body
	}
	return out
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendS32(b []byte, v int32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if (x == 0 && c&0x40 == 0) || (x == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	b   []byte
	i   int
	err error
}

var errShort = errors.New("unexpected end")

func (r *reader) done() bool { return r.i >= len(r.b) }

func (r *reader) byte() byte {
	if r.err != nil || r.i >= len(r.b) {
		r.err = errShort
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) peek() byte {
	if r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || len(r.b)-r.i < n {
		r.err = errShort
		return nil
	}
	s := r.b[r.i : r.i+n]
	r.i += n
	return s
}

func (r *reader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 0xffffffff {
				break
			}
			return uint32(v)
		}
	}
	if r.err == nil {
		r.err = errors.New("bad LEB128")
	}
	return 0
}

// count reads a vector's length, which cannot exceed the bytes left (every
// element takes at least one): wazero allocates vectors up front, and a
// 14-byte module declaring 2^32 tables makes it run out of memory.
func (r *reader) count() uint32 {
	n := r.u32()
	if r.err == nil && int64(n) > int64(len(r.b)-r.i) {
		r.err = fmt.Errorf("vector of %d elements in %d bytes", n, len(r.b)-r.i)
		return 0
	}
	return n
}

func (r *reader) s64() {
	for k := 0; k < 10; k++ {
		if r.byte()&0x80 == 0 || r.err != nil {
			return
		}
	}
	r.err = errors.New("bad LEB128")
}

// s33 decodes a signed 33-bit LEB128 (a block type index).
func (r *reader) s33() int64 {
	var v int64
	var shift uint
	for k := 0; k < 5; k++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
	r.err = errors.New("bad LEB128")
	return 0
}

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

func (r *reader) valtypes() { r.bytes(int(r.count())) }

func (r *reader) limits() {
	if r.byte()&1 != 0 {
		r.u32()
	}
	r.u32()
}
