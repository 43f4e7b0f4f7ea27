package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// Load-time hardening against the two holes wazero v1.12 leaves open even
// with WithCloseOnContextDone (see doc.go):
//
//   - The deadline is checked only at loop headers, so loop-free code (a
//     recursive or exponential call tree) runs on past it.
//   - Unbounded recursion grows the host-side stack to ~400 MB before
//     wazero reports a stack overflow.
//
// harden decodes every function body, builds the call graph (call_indirect
// may reach any function placed in a table or named by ref.func whose type
// matches) and picks the functions that need a guard: every function on a
// call-graph cycle, and every loop-free function whose worst-case work
// without passing a loop header (its own instructions plus that of the
// unguarded functions it calls) exceeds guardBudget. A guarded function's
// body moves to a new function; the original index becomes a wrapper that
// enters an empty loop (so wazero checks the deadline on every call),
// counts the call depth in a new global and traps past maxCallDepth. A
// function whose entry runs straight into a loop header (no branch or call
// before it) is already checked on entry (Go's
// compiler emits such bodies: a short prologue, then a loop around the
// whole body), so its wrapper only counts depth.
const (
	guardBudget  = 1 << 20 // instructions between deadline checks
	maxCallDepth = 1 << 14 // nested calls of guarded functions
	// depthExport names the exported depth counter, read after a trap to
	// tell a depth overrun from other traps.
	depthExport = "__relay_call_depth"
)

var wasmMagic = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

type wasmSection struct {
	id   byte
	body []byte
}

type funcBody struct {
	locals       []byte // the encoded local declarations
	code         []byte // instructions, including the final end
	calls        []uint32
	indirect     []uint32 // type indexes of call_indirect sites
	size         uint64   // instructions
	entryChecked bool     // every call passes a loop header before any call or branch
}

// harden returns wasm with guards added, or wasm itself when no function
// needs one. Malformed modules are returned as they are, for the compiler
// to reject with its own message; an instruction this decoder does not know
// is refused.
func harden(wasm []byte) ([]byte, error) {
	if !bytes.HasPrefix(wasm, wasmMagic) {
		return wasm, nil
	}
	secs, err := splitSections(wasm[len(wasmMagic):])
	if err != nil {
		return wasm, nil
	}
	m, err := analyse(secs)
	if err != nil {
		var ue *unsupportedError
		if errors.As(err, &ue) {
			return nil, err
		}
		return wasm, nil // let the compiler report it
	}
	guard := m.pickGuards()
	if len(guard) == 0 {
		return wasm, nil
	}
	return m.rewrite(secs, guard), nil
}

type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }

func splitSections(b []byte) ([]wasmSection, error) {
	var secs []wasmSection
	r := &reader{b: b}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, r.err
		}
		secs = append(secs, wasmSection{id: id, body: body})
	}
	return secs, nil
}

type wasmModule struct {
	types        [][]byte // encoded function types
	importFuncs  uint32
	importGlobal uint32
	funcTypes    []uint32 // type of each defined function
	globals      uint32   // defined globals
	refFuncs     map[uint32]bool
	bodies       []funcBody
}

func analyse(secs []wasmSection) (*wasmModule, error) {
	m := &wasmModule{refFuncs: make(map[uint32]bool)}
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case 1: // type
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				start := r.i
				if r.byte() != 0x60 {
					return nil, &unsupportedError{"unsupported type form"}
				}
				r.skipValtypes()
				r.skipValtypes()
				m.types = append(m.types, r.b[start:r.i])
			}
		case 2: // import
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				r.name()
				r.name()
				switch r.byte() {
				case 0:
					r.u32()
					m.importFuncs++
				case 1:
					r.byte()
					r.limits()
				case 2:
					r.limits()
				case 3:
					r.byte()
					r.byte()
					m.importGlobal++
				default:
					return nil, errors.New("bad import kind")
				}
			}
		case 3: // function
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				m.funcTypes = append(m.funcTypes, r.u32())
			}
		case 6: // global
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				r.byte()
				r.byte()
				if err := m.constExpr(r); err != nil {
					return nil, err
				}
				m.globals++
			}
		case 9: // element
			if err := m.elements(r); err != nil {
				return nil, err
			}
		case 10: // code
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				size := r.u32()
				body := r.bytes(int(size))
				if r.err != nil {
					break
				}
				fb, err := m.decodeBody(body)
				if err != nil {
					return nil, fmt.Errorf("function %d: %w", int(m.importFuncs)+len(m.bodies), err)
				}
				m.bodies = append(m.bodies, fb)
			}
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	if len(m.bodies) != len(m.funcTypes) {
		return nil, errors.New("function and code counts differ")
	}
	for _, t := range m.funcTypes {
		if int(t) >= len(m.types) {
			return nil, errors.New("function type out of range")
		}
	}
	return m, nil
}

func (m *wasmModule) elements(r *reader) error {
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		flags := r.u32()
		if flags > 7 {
			return errors.New("bad element segment")
		}
		if flags&2 != 0 && flags&1 == 0 {
			r.u32() // table index
		}
		if flags&1 == 0 {
			if err := m.constExpr(r); err != nil { // offset
				return err
			}
		}
		if flags&3 != 0 {
			r.byte() // elemkind or reftype
		}
		for k := r.u32(); k > 0 && r.err == nil; k-- {
			if flags&4 == 0 {
				m.refFuncs[r.u32()] = true
			} else if err := m.constExpr(r); err != nil {
				return err
			}
		}
	}
	return r.err
}

// constExpr skips a constant expression, noting ref.func.
func (m *wasmModule) constExpr(r *reader) error {
	for r.err == nil {
		op := r.byte()
		switch op {
		case 0x0b:
			return nil
		case 0xd2:
			m.refFuncs[r.u32()] = true
		default:
			if err := skipImmediates(r, op, nil); err != nil {
				return err
			}
		}
	}
	return r.err
}

func (m *wasmModule) decodeBody(body []byte) (funcBody, error) {
	r := &reader{b: body}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.u32()
		r.byte()
	}
	fb := funcBody{locals: body[:r.i], code: body[r.i:]}
	prefix := true // still in the straight-line code every call runs
	for !r.done() && r.err == nil {
		op := r.byte()
		if prefix {
			switch op {
			case 0x03: // a loop header every call reaches: wazero checks here
				fb.entryChecked, prefix = true, false
			case 0x04, 0x05, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11:
				prefix = false
			}
		}
		fb.size++
		switch op {
		case 0x10:
			fb.calls = append(fb.calls, r.u32())
		case 0x11:
			fb.indirect = append(fb.indirect, r.u32())
			r.u32()
		case 0xd2:
			m.refFuncs[r.u32()] = true
		default:
			if err := skipImmediates(r, op, &fb); err != nil {
				return fb, err
			}
		}
	}
	return fb, r.err
}

// skipImmediates skips the immediates of op (WebAssembly 2.0: MVP, sign
// extension, saturating conversions, bulk memory, reference types,
// multi-value and SIMD).
func skipImmediates(r *reader, op byte, fb *funcBody) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		if c := r.peek(); c == 0x40 || isValtype(c) {
			r.byte()
		} else {
			r.s64()
		}
	case op == 0x0c || op == 0x0d: // br, br_if
		r.u32()
	case op == 0x0e: // br_table
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.u32()
		}
		r.u32()
	case op == 0x1c: // select t*
		r.skipValtypes()
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.u32()
		r.u32()
	case op == 0x3f || op == 0x40: // memory.size/grow
		r.u32()
	case op == 0x41:
		r.s64()
	case op == 0x42:
		r.s64()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null
		r.byte()
	case op == 0xfc:
		sub := r.u32()
		switch {
		case sub <= 7:
		case sub == 8 || sub == 10 || sub == 12 || sub == 14:
			r.u32()
			r.u32()
		case sub == 9 || sub == 11 || sub == 13 || (sub >= 15 && sub <= 17):
			r.u32()
		default:
			return &unsupportedError{fmt.Sprintf("unsupported instruction 0xfc %d", sub)}
		}
	case op == 0xfd:
		sub := r.u32()
		switch {
		case sub <= 11 || sub == 92 || sub == 93:
			r.u32()
			r.u32()
		case sub == 12 || sub == 13:
			r.bytes(16)
		case sub >= 21 && sub <= 34:
			r.byte()
		case sub >= 84 && sub <= 91:
			r.u32()
			r.u32()
			r.byte()
		case sub > 0x113:
			return &unsupportedError{fmt.Sprintf("unsupported instruction 0xfd %d", sub)}
		}
	case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b ||
		(op >= 0x45 && op <= 0xc4) || op == 0xd1:
	default:
		return &unsupportedError{fmt.Sprintf("unsupported instruction 0x%02x", op)}
	}
	return r.err
}

func isValtype(c byte) bool {
	switch c {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		return true
	}
	return false
}

// pickGuards returns the defined-function indexes (0-based, without
// imports) to wrap.
func (m *wasmModule) pickGuards() map[int]bool {
	n := len(m.bodies)
	// Indirect targets by type, compared structurally.
	targets := make(map[string][]int)
	for f := range m.refFuncs {
		if f < m.importFuncs || int(f-m.importFuncs) >= n {
			continue
		}
		d := int(f - m.importFuncs)
		k := string(m.types[m.funcTypes[d]])
		targets[k] = append(targets[k], d)
	}
	succ := make([][]int, n)
	for i, b := range m.bodies {
		for _, c := range b.calls {
			if c >= m.importFuncs && int(c-m.importFuncs) < n {
				succ[i] = append(succ[i], int(c-m.importFuncs))
			}
		}
		for _, t := range b.indirect {
			if int(t) < len(m.types) {
				succ[i] = append(succ[i], targets[string(m.types[t])]...)
			}
		}
	}
	guard := make(map[int]bool)
	work := make([]uint64, n) // unchecked work a call to f adds to its caller
	for _, scc := range tarjan(succ) {
		if len(scc) > 1 || slices.Contains(succ[scc[0]], scc[0]) {
			for _, f := range scc {
				guard[f] = true
			}
			continue // guarded: work 0 for callers
		}
		f := scc[0]
		if m.bodies[f].entryChecked {
			continue
		}
		w := m.bodies[f].size
		for _, c := range m.bodies[f].calls {
			if c >= m.importFuncs && int(c-m.importFuncs) < n {
				w = satAdd(w, work[c-m.importFuncs])
			}
		}
		for _, t := range m.bodies[f].indirect {
			var most uint64
			if int(t) < len(m.types) {
				for _, g := range targets[string(m.types[t])] {
					most = max(most, work[g])
				}
			}
			w = satAdd(w, most)
		}
		if w > guardBudget {
			guard[f] = true
			continue
		}
		work[f] = w
	}
	return guard
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}

// tarjan returns the strongly connected components of the graph in reverse
// topological order (callees before callers). Iterative, for big modules.
func tarjan(succ [][]int) [][]int {
	n := len(succ)
	index := make([]int, n)
	low := make([]int, n)
	on := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var out [][]int
	var st []int
	next := 0
	type frame struct{ v, i int }
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		call := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		st = append(st, root)
		on[root] = true
		for len(call) > 0 {
			fr := &call[len(call)-1]
			v := fr.v
			if fr.i < len(succ[v]) {
				w := succ[v][fr.i]
				fr.i++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					st = append(st, w)
					on[w] = true
					call = append(call, frame{w, 0})
				} else if on[w] {
					low[v] = min(low[v], index[w])
				}
				continue
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				low[p] = min(low[p], low[v])
			}
			if low[v] == index[v] {
				var scc []int
				for {
					w := st[len(st)-1]
					st = st[:len(st)-1]
					on[w] = false
					scc = append(scc, w)
					if w == v {
						break
					}
				}
				out = append(out, scc)
			}
		}
	}
	return out
}

// rewrite moves each guarded function's body to a new function appended
// after all others and turns the original into a wrapper. Appending keeps
// every existing function and global index valid.
func (m *wasmModule) rewrite(secs []wasmSection, guard map[int]bool) []byte {
	n := len(m.bodies)
	depthGlobal := m.importGlobal + m.globals
	var order []int
	for f := 0; f < n; f++ {
		if guard[f] {
			order = append(order, f)
		}
	}
	innerIdx := make(map[int]uint32, len(order))
	for k, f := range order {
		innerIdx[f] = m.importFuncs + uint32(n+k)
	}
	global := append([]byte{0x7f, 0x01}, 0x41, 0x00, 0x0b) // (mut i32) (i32.const 0)
	out := append([]byte(nil), wasmMagic...)
	haveGlobal := false
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	emitGlobals := func() {
		emit(6, append(appendU32(nil, 1), global...))
	}
	for _, s := range secs {
		// The global section comes after memory (5) and before export (7).
		if !haveGlobal && s.id != 0 && sectionRank(s.id) > sectionRank(6) {
			emitGlobals()
			haveGlobal = true
		}
		switch s.id {
		case 3:
			b := appendU32(nil, uint32(n+len(order)))
			for _, t := range m.funcTypes {
				b = appendU32(b, t)
			}
			for _, f := range order {
				b = appendU32(b, m.funcTypes[f])
			}
			emit(3, b)
		case 6:
			r := &reader{b: s.body}
			cnt := r.u32()
			emit(6, append(appendU32(nil, cnt+1), append(append([]byte(nil), s.body[r.i:]...), global...)...))
			haveGlobal = true
		case 7:
			r := &reader{b: s.body}
			cnt := r.u32()
			b := appendU32(nil, cnt+1)
			b = append(b, s.body[r.i:]...)
			b = appendU32(b, uint32(len(depthExport)))
			b = append(b, depthExport...)
			b = append(b, 0x03)
			b = appendU32(b, depthGlobal)
			emit(7, b)
		case 10:
			b := appendU32(nil, uint32(n+len(order)))
			for f, body := range m.bodies {
				fb := body.locals
				fb = append(fb[:len(fb):len(fb)], body.code...)
				if guard[f] {
					fb = m.wrapper(f, innerIdx[f], depthGlobal, !body.entryChecked)
				}
				b = appendU32(b, uint32(len(fb)))
				b = append(b, fb...)
			}
			for _, f := range order {
				body := m.bodies[f]
				b = appendU32(b, uint32(len(body.locals)+len(body.code)))
				b = append(b, body.locals...)
				b = append(b, body.code...)
			}
			emit(10, b)
		default:
			emit(s.id, s.body)
		}
	}
	return out
}

// wrapper is the body that replaces guarded function f.
func (m *wasmModule) wrapper(f int, inner, depth uint32, check bool) []byte {
	b := []byte{0x00} // no locals
	if check {
		b = append(b, 0x03, 0x40, 0x0b) // loop end: wazero checks the deadline here
	}
	g := func(op byte) { b = append(b, op); b = appendU32(b, depth) }
	g(0x23) // global.get depth
	b = append(b, 0x41, 0x01, 0x6a)
	g(0x24) // global.set depth
	g(0x23)
	b = append(b, 0x41)
	b = appendS32(b, maxCallDepth)
	b = append(b, 0x4b, 0x04, 0x40, 0x00, 0x0b) // i32.gt_u if unreachable end
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

// sectionRank orders known sections as the binary format requires.
func sectionRank(id byte) int {
	switch id {
	case 12: // data count comes before code
		return 95
	case 10:
		return 100
	case 11:
		return 110
	}
	return int(id) * 10
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

var errShort = errors.New("unexpected end of module")

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
			return uint32(v)
		}
	}
	r.err = errors.New("bad LEB128")
	return 0
}

func (r *reader) s64() {
	for k := 0; k < 10; k++ {
		if r.byte()&0x80 == 0 || r.err != nil {
			return
		}
	}
	r.err = errors.New("bad LEB128")
}

func (r *reader) name() { r.bytes(int(r.u32())) }

func (r *reader) skipValtypes() { r.bytes(int(r.u32())) }

func (r *reader) limits() {
	if r.byte()&1 != 0 {
		r.u32()
	}
	r.u32()
}
