package guard

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// The host function the rewritten module imports: (reason i32) -> fuel i32.
const (
	Module = "edgerelay_guard"
	Func   = "check"
)

// Reasons the guest calls Func with.
const (
	ReasonFuel  = 0 // the fuel ran out: check the deadline, return new fuel
	ReasonDepth = 1 // nested guarded calls passed MaxDepth: end the call
)

const (
	// Fuel is what the host should return for ReasonFuel: the instruction
	// budget between two deadline checks. At roughly a nanosecond per
	// instruction that is a check every few milliseconds at most (fuel
	// counts upper bounds, so in practice far more often).
	Fuel = 1 << 22
	// MaxDepth is the deepest nesting of guarded (recursive) calls.
	MaxDepth = 1 << 14
	// tickFreeWork is the most work a loop-free, non-recursive function may
	// do to be charged to its callers instead of counting itself.
	tickFreeWork = 1 << 12
	// maxWeight caps one count (the fuel must not wrap around).
	maxWeight = 1 << 30
	// wrapperCost is charged to a guarded function's entry for its wrapper.
	wrapperCost = 16
)

// Error says why a module cannot be instrumented (and so must not run).
type Error struct{ Reason string }

func (e *Error) Error() string { return "cannot analyse module: " + e.Reason }

func refuse(format string, args ...any) error { return &Error{Reason: fmt.Sprintf(format, args...)} }

var magic = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

// Stats describe what Instrument did.
type Stats struct {
	Functions int // defined functions
	Counting  int // functions that count fuel themselves
	Wrapped   int // functions on a call-graph cycle, wrapped for depth
	Inline    int // functions on a call-graph cycle counting depth themselves
	Ticks     int // fuel counts added (entries and loop headers)
}

// Instrument returns wasm with fuel counting and depth limits added, or an
// *Error when the module cannot be analysed.
func Instrument(wasm []byte) ([]byte, error) {
	out, _, err := instrument(wasm)
	return out, err
}

// InstrumentStats is Instrument, also reporting what it added.
func InstrumentStats(wasm []byte) ([]byte, Stats, error) { return instrument(wasm) }

func instrument(wasm []byte) ([]byte, Stats, error) {
	if !bytes.HasPrefix(wasm, magic) {
		return nil, Stats{}, refuse("not a WebAssembly 1.0 binary (bad magic or version)")
	}
	secs, err := splitSections(wasm[len(magic):])
	if err != nil {
		return nil, Stats{}, err
	}
	m, err := analyse(secs)
	if err != nil {
		var ge *Error
		if !errors.As(err, &ge) {
			err = &Error{Reason: err.Error()}
		}
		return nil, Stats{}, err
	}
	m.plan()
	out, err := m.rewrite(secs)
	if err != nil {
		return nil, Stats{}, err
	}
	st := Stats{Functions: len(m.bodies)}
	for i := range m.bodies {
		if m.cyclic[i] && m.bodies[i].brExit {
			st.Wrapped++
		} else if m.cyclic[i] {
			st.Inline++
		}
		if len(m.bodies[i].ticks) > 0 {
			st.Counting++
		}
		st.Ticks += len(m.bodies[i].ticks)
	}
	return out, st, nil
}

type section struct {
	id   byte
	body []byte
}

// order is the position a known section must keep (custom sections: any).
func order(id byte) int {
	switch id {
	case 12: // data count: after element, before code
		return 95
	case 10:
		return 100
	case 11:
		return 110
	}
	return int(id) * 10
}

func splitSections(b []byte) ([]section, error) {
	var secs []section
	r := &reader{b: b}
	last := 0
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, refuse("section %d: %v", id, r.err)
		}
		if id > 12 {
			return nil, refuse("unsupported section id %d", id)
		}
		if id != 0 {
			if order(id) <= last {
				return nil, refuse("section %d out of order or repeated", id)
			}
			last = order(id)
		}
		secs = append(secs, section{id: id, body: body})
	}
	return secs, nil
}

// site is something in a function body the rewrite changes.
type site struct {
	off, end int    // byte range in code of what to replace (end == off: insert)
	kind     byte   // siteCall, siteRefFunc, siteLoop
	idx      uint32 // function index (call, ref.func)
	pos      uint64 // instruction index
}

const (
	siteCall = iota
	siteRefFunc
	siteLoop
	siteReturn // a return or the final end: the depth count goes down here
)

type funcBody struct {
	locals   []byte // encoded local declarations
	code     []byte // instructions, including the final end
	sites    []site
	calls    []site // direct calls (a subset of sites)
	indirect []site // call_indirect, idx = type index
	size     uint64 // instructions
	loops    int    // loop headers
	entryOK  bool   // every call reaches a loop header before any branch, call or return
	brExit   bool   // a branch targets the function's own label (an exit that is not a return)
	ticks    []tick // planned fuel counts
	work     uint64 // for tick-free functions: the work a call adds to its caller
	tickFree bool   // charged to its callers, counts nothing itself
}

type tick struct {
	at     int // byte offset in code where the count goes (after the loop's block type, or 0)
	weight uint64
}

type module struct {
	types       [][]byte // encoded function types
	importFuncs uint32
	importGlobs uint32
	funcTypes   []uint32
	globals     uint32
	refFuncs    map[uint32]bool
	bodies      []funcBody
	cyclic      []bool

	// where the rewrite patches function indexes outside code
	exportSites []site
	elemSites   []site
	globalSites []site
	startSite   *site
}

func (m *module) totalFuncs() uint32 { return m.importFuncs + uint32(len(m.funcTypes)) }
func (m *module) totalGlobs() uint32 { return m.importGlobs + m.globals }

func analyse(secs []section) (*module, error) {
	m := &module{refFuncs: make(map[uint32]bool)}
	codeSeen, funcSeen := false, false
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case 1: // type
			for n := r.count(); n > 0 && r.err == nil; n-- {
				start := r.i
				if f := r.byte(); f != 0x60 && r.err == nil {
					return nil, refuse("type %d: unsupported form 0x%02x", len(m.types), f)
				}
				r.valtypes()
				r.valtypes()
				m.types = append(m.types, r.b[start:r.i])
			}
		case 2: // import
			for n := r.count(); n > 0 && r.err == nil; n-- {
				mod := r.name()
				fn := r.name()
				if mod == Module {
					return nil, refuse("imports %s.%s: the module %q is reserved for the host", mod, fn, Module)
				}
				switch k := r.byte(); k {
				case 0:
					if t := r.u32(); r.err == nil && int(t) >= len(m.types) {
						return nil, refuse("import %s.%s: type %d out of range", mod, fn, t)
					}
					m.importFuncs++
				case 1:
					r.byte()
					r.limits()
				case 2:
					r.limits()
				case 3:
					r.byte()
					r.byte()
					m.importGlobs++
				default:
					if r.err == nil {
						return nil, refuse("import %s.%s: unsupported kind %d", mod, fn, k)
					}
				}
			}
		case 3: // function
			funcSeen = true
			for n := r.count(); n > 0 && r.err == nil; n-- {
				t := r.u32()
				if r.err == nil && int(t) >= len(m.types) {
					return nil, refuse("function %d: type %d out of range", len(m.funcTypes), t)
				}
				m.funcTypes = append(m.funcTypes, t)
			}
		case 6: // global
			for n := r.count(); n > 0 && r.err == nil; n-- {
				r.byte()
				r.byte()
				if err := m.constExpr(r, &m.globalSites); err != nil {
					return nil, err
				}
				m.globals++
			}
		case 7: // export
			for n := r.count(); n > 0 && r.err == nil; n-- {
				r.name()
				kind := r.byte()
				off := r.i
				idx := r.u32()
				if kind == 0 && r.err == nil {
					if idx >= m.totalFuncs() {
						return nil, refuse("export of function %d out of range", idx)
					}
					m.exportSites = append(m.exportSites, site{off: off, end: r.i, idx: idx})
				}
				// The rewrite appends its globals: an export of a global
				// past the module's own would name the fuel counter.
				if kind == 3 && r.err == nil && idx >= m.totalGlobs() {
					return nil, refuse("export of global %d out of range", idx)
				}
			}
		case 4: // table
			for n := r.count(); n > 0 && r.err == nil; n-- {
				r.byte()
				r.limits()
			}
		case 5: // memory
			for n := r.count(); n > 0 && r.err == nil; n-- {
				r.limits()
			}
		case 11: // data
			for n := r.count(); n > 0 && r.err == nil; n-- {
				switch flags := r.u32(); flags {
				case 0, 2:
					if flags == 2 {
						r.u32()
					}
					if err := m.constExpr(r, nil); err != nil {
						return nil, err
					}
				case 1:
				default:
					if r.err == nil {
						return nil, refuse("data segment: unsupported flags %d", flags)
					}
				}
				r.bytes(int(r.count()))
			}
		case 12: // data count
			r.u32()
		case 8: // start
			off := r.i
			idx := r.u32()
			if r.err == nil && idx >= m.totalFuncs() {
				return nil, refuse("start function %d out of range", idx)
			}
			m.startSite = &site{off: off, end: r.i, idx: idx}
		case 9: // element
			if err := m.elements(r); err != nil {
				return nil, err
			}
		case 10: // code
			codeSeen = true
			n := r.count()
			if r.err == nil && int(n) != len(m.funcTypes) {
				return nil, refuse("%d function bodies for %d functions", n, len(m.funcTypes))
			}
			for ; n > 0 && r.err == nil; n-- {
				size := r.u32()
				body := r.bytes(int(size))
				if r.err != nil {
					break
				}
				fb, err := m.decodeBody(body)
				if err != nil {
					return nil, refuse("function %d: %v", int(m.importFuncs)+len(m.bodies), err)
				}
				m.bodies = append(m.bodies, fb)
			}
		}
		if r.err != nil {
			return nil, refuse("section %d: %v", s.id, r.err)
		}
		if s.id != 0 && !r.done() {
			return nil, refuse("section %d: %d trailing bytes", s.id, len(r.b)-r.i)
		}
	}
	if len(m.bodies) != len(m.funcTypes) || (funcSeen && len(m.funcTypes) > 0 && !codeSeen) {
		return nil, refuse("%d function bodies for %d functions", len(m.bodies), len(m.funcTypes))
	}
	for f := range m.refFuncs {
		if f >= m.totalFuncs() {
			return nil, refuse("reference to function %d out of range", f)
		}
	}
	for _, s := range m.elemSites {
		if s.idx >= m.totalFuncs() {
			return nil, refuse("element refers to function %d out of range", s.idx)
		}
	}
	for _, s := range m.globalSites {
		if s.idx >= m.totalFuncs() {
			return nil, refuse("global refers to function %d out of range", s.idx)
		}
	}
	if m.startSite != nil && m.startSite.idx >= m.totalFuncs() {
		return nil, refuse("start function %d out of range", m.startSite.idx)
	}
	for i := range m.bodies {
		for _, c := range m.bodies[i].sites {
			if (c.kind == siteCall || c.kind == siteRefFunc) && c.idx >= m.totalFuncs() {
				return nil, refuse("function %d: call or reference to function %d out of range", int(m.importFuncs)+i, c.idx)
			}
		}
	}
	return m, nil
}

func (m *module) elements(r *reader) error {
	for n := r.count(); n > 0 && r.err == nil; n-- {
		flags := r.u32()
		if flags > 7 {
			return refuse("element segment: unsupported flags %d", flags)
		}
		if flags&2 != 0 && flags&1 == 0 {
			r.u32() // table index
		}
		if flags&1 == 0 {
			if err := m.constExpr(r, nil); err != nil { // offset
				return err
			}
		}
		if flags&3 != 0 {
			r.byte() // elemkind or reftype
		}
		for k := r.count(); k > 0 && r.err == nil; k-- {
			if flags&4 == 0 {
				off := r.i
				f := r.u32()
				m.refFuncs[f] = true
				m.elemSites = append(m.elemSites, site{off: off, end: r.i, idx: f})
			} else if err := m.constExpr(r, &m.elemSites); err != nil {
				return err
			}
		}
	}
	return r.err
}

// constExpr reads a constant expression, noting ref.func (in sites, when
// given, for the rewrite to patch).
func (m *module) constExpr(r *reader, sites *[]site) error {
	for r.err == nil {
		op := r.byte()
		switch op {
		case 0x0b:
			return nil
		case 0x41, 0x42:
			r.s64()
		case 0x43:
			r.bytes(4)
		case 0x44:
			r.bytes(8)
		case 0x23:
			if g := r.u32(); r.err == nil && g >= m.importGlobs {
				return refuse("constant expression reads global %d, not an import", g)
			}
		case 0xd0:
			r.byte()
		case 0xd2:
			off := r.i
			f := r.u32()
			m.refFuncs[f] = true
			if sites == nil {
				return refuse("ref.func in an element offset")
			}
			*sites = append(*sites, site{off: off, end: r.i, idx: f})
		case 0xfd:
			if sub := r.u32(); sub != 12 {
				return refuse("unsupported instruction 0xfd %d in a constant expression", sub)
			}
			r.bytes(16)
		default:
			if op == 0x6a || op == 0x6b || op == 0x6c || op == 0x7c || op == 0x7d || op == 0x7e {
				continue // extended constant expressions
			}
			return refuse("unsupported instruction 0x%02x in a constant expression", op)
		}
	}
	return r.err
}

func (m *module) decodeBody(body []byte) (funcBody, error) {
	r := &reader{b: body}
	var nlocals uint64
	for n := r.count(); n > 0 && r.err == nil; n-- {
		nlocals += uint64(r.u32())
		r.byte()
	}
	if r.err != nil {
		return funcBody{}, r.err
	}
	if nlocals > 50000 {
		return funcBody{}, fmt.Errorf("%d locals", nlocals)
	}
	fb := funcBody{locals: body[:r.i], code: body[r.i:]}
	base := r.i
	prefix := true // still in the straight-line code every call runs
	depth := 1
	for !r.done() && r.err == nil {
		off := r.i - base
		op := r.byte()
		pos := fb.size
		fb.size++
		if prefix {
			switch op {
			case 0x03:
				fb.entryOK, prefix = true, false
			case 0x00, 0x04, 0x05, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11:
				prefix = false
			}
		}
		switch op {
		case 0x02, 0x03, 0x04: // block, loop, if
			if err := m.blockType(r); err != nil {
				return fb, err
			}
			depth++
			if op == 0x03 {
				fb.loops++
				fb.sites = append(fb.sites, site{off: r.i - base, end: r.i - base, kind: siteLoop, pos: pos})
			}
		case 0x0b:
			depth--
			if depth == 0 {
				if !r.done() {
					return fb, fmt.Errorf("code after the function's end")
				}
				fb.sites = append(fb.sites, site{off: off, end: off, kind: siteReturn, pos: pos})
			}
		case 0x0f:
			fb.sites = append(fb.sites, site{off: off, end: off, kind: siteReturn, pos: pos})
		case 0x0c, 0x0d: // br, br_if
			if l := r.u32(); r.err == nil && int(l) == depth-1 {
				fb.brExit = true
			}
		case 0x0e: // br_table
			for n := r.count() + 1; n > 0 && r.err == nil; n-- {
				if l := r.u32(); r.err == nil && int(l) == depth-1 {
					fb.brExit = true
				}
			}
		case 0x10:
			s := site{off: off, kind: siteCall, pos: pos}
			s.idx = r.u32()
			s.end = r.i - base
			fb.sites = append(fb.sites, s)
			fb.calls = append(fb.calls, s)
		case 0x11:
			t := r.u32()
			r.u32() // table
			if r.err == nil && int(t) >= len(m.types) {
				return fb, fmt.Errorf("call_indirect type %d out of range", t)
			}
			fb.indirect = append(fb.indirect, site{idx: t, pos: pos})
		case 0xd2:
			s := site{off: off, kind: siteRefFunc, pos: pos}
			s.idx = r.u32()
			s.end = r.i - base
			m.refFuncs[s.idx] = true
			fb.sites = append(fb.sites, s)
		case 0x23, 0x24:
			if g := r.u32(); r.err == nil && g >= m.totalGlobs() {
				return fb, fmt.Errorf("global %d out of range", g)
			}
		default:
			if err := skipImmediates(r, op); err != nil {
				return fb, err
			}
		}
	}
	if r.err != nil {
		return fb, r.err
	}
	if depth != 0 {
		return fb, fmt.Errorf("missing end")
	}
	return fb, nil
}

func (m *module) blockType(r *reader) error {
	c := r.peek()
	if c == 0x40 || isValtype(c) {
		r.byte()
		return nil
	}
	t := r.s33()
	if r.err == nil && (t < 0 || t >= int64(len(m.types))) {
		return fmt.Errorf("block type %d out of range", t)
	}
	return nil
}

// skipImmediates skips the immediates of op (WebAssembly 2.0 as wazero
// compiles it by default: MVP, sign extension, saturating conversions, bulk
// memory, reference types, multi-value and SIMD). Anything else is refused.
func skipImmediates(r *reader, op byte) error {
	switch {
	case op == 0x1c: // select t*
		r.valtypes()
	case op >= 0x20 && op <= 0x22, op == 0x25 || op == 0x26: // local.*, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.u32()
		r.u32()
	case op == 0x3f || op == 0x40: // memory.size/grow
		r.byte()
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
		case sub == 8: // memory.init data mem
			r.u32()
			r.byte()
		case sub == 10: // memory.copy mem mem
			r.byte()
			r.byte()
		case sub == 11: // memory.fill mem
			r.byte()
		case sub == 12 || sub == 14: // table.init, table.copy
			r.u32()
			r.u32()
		case sub == 9 || sub == 13 || (sub >= 15 && sub <= 17):
			r.u32()
		default:
			return fmt.Errorf("unsupported instruction 0xfc %d", sub)
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
			return fmt.Errorf("unsupported instruction 0xfd %d", sub)
		}
	case op <= 0x01 || op == 0x05 || op == 0x0f || op == 0x1a || op == 0x1b ||
		(op >= 0x45 && op <= 0xc4) || op == 0xd1:
	default:
		return fmt.Errorf("unsupported instruction 0x%02x", op)
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

// plan finds the call-graph cycles and decides where fuel is counted and
// by how much.
func (m *module) plan() {
	n := len(m.bodies)
	targets := make(map[string][]int) // indirect targets by type, structurally
	for f := range m.refFuncs {
		if f < m.importFuncs {
			continue
		}
		d := int(f - m.importFuncs)
		k := string(m.types[m.funcTypes[d]])
		targets[k] = append(targets[k], d)
	}
	for k := range targets {
		slices.Sort(targets[k])
	}
	succ := make([][]int, n)
	for i := range m.bodies {
		b := &m.bodies[i]
		for _, c := range b.calls {
			if c.idx >= m.importFuncs {
				succ[i] = append(succ[i], int(c.idx-m.importFuncs))
			}
		}
		for _, c := range b.indirect {
			succ[i] = append(succ[i], targets[string(m.types[c.idx])]...)
		}
	}
	m.cyclic = make([]bool, n)
	// Callees before callers: a callee's work is known when its caller is
	// planned.
	for _, scc := range tarjan(succ) {
		if len(scc) > 1 || slices.Contains(succ[scc[0]], scc[0]) {
			for _, f := range scc {
				m.cyclic[f] = true
			}
		}
		for _, f := range scc {
			m.planFunc(f, targets)
		}
	}
}

// calleeWork is what a call adds to its caller's count: the work of a
// tick-free callee, 0 for one that counts itself or an import.
func (m *module) calleeWork(idx uint32) uint64 {
	if idx < m.importFuncs {
		return 0
	}
	b := &m.bodies[idx-m.importFuncs]
	if b.tickFree {
		return b.work
	}
	return 0
}

func (m *module) indirectWork(t uint32, targets map[string][]int) uint64 {
	var most uint64
	for _, g := range targets[string(m.types[t])] {
		if b := &m.bodies[g]; b.tickFree {
			most = max(most, b.work)
		}
	}
	return most
}

func (m *module) planFunc(f int, targets map[string][]int) {
	b := &m.bodies[f]
	// extra[k]: callee work of the calls at instruction index >= pos of
	// site k, computed from the end.
	type callAt struct {
		pos  uint64
		work uint64
	}
	var cs []callAt
	for _, c := range b.calls {
		cs = append(cs, callAt{c.pos, m.calleeWork(c.idx)})
	}
	for _, c := range b.indirect {
		cs = append(cs, callAt{c.pos, m.indirectWork(c.idx, targets)})
	}
	slices.SortFunc(cs, func(a, b callAt) int {
		switch {
		case a.pos < b.pos:
			return -1
		case a.pos > b.pos:
			return 1
		}
		return 0
	})
	suffix := make([]uint64, len(cs)+1) // suffix[i]: callee work of cs[i:]
	for i := len(cs) - 1; i >= 0; i-- {
		suffix[i] = satAdd(suffix[i+1], cs[i].work)
	}
	after := func(pos uint64) uint64 { // callee work of the calls after pos
		i, _ := slices.BinarySearchFunc(cs, pos+1, func(c callAt, p uint64) int {
			switch {
			case c.pos < p:
				return -1
			case c.pos > p:
				return 1
			}
			return 0
		})
		return suffix[i]
	}
	total := satAdd(b.size, suffix[0])
	if !m.cyclic[f] && b.loops == 0 && total <= tickFreeWork {
		b.tickFree, b.work = true, total
		return
	}
	entry := total
	if m.cyclic[f] {
		entry = satAdd(entry, wrapperCost)
	}
	first := true
	if !b.entryOK {
		b.ticks = append(b.ticks, tick{at: 0, weight: min(entry, maxWeight)})
		first = false
	}
	for _, s := range b.sites {
		if s.kind != siteLoop {
			continue
		}
		w := satAdd(b.size-s.pos, after(s.pos))
		if first { // the loop every call reaches first also pays for the entry
			w, first = entry, false
		}
		b.ticks = append(b.ticks, tick{at: s.off, weight: min(max(w, 1), maxWeight)})
	}
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
