package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/policy/guard"
)

// ABI version 1 names (DESIGN.md "Plugin ABI").
const (
	abiVersion        = abi.Version
	exportMemory      = abi.ExportMemory
	exportABIVersion  = abi.ExportAbiVersion
	exportAlloc       = abi.ExportAlloc
	exportEvaluate    = abi.ExportEvaluate
	exportInitialize  = abi.ExportInitialize
	exportEncoding    = abi.ExportEncoding
	exportSections    = abi.ExportInputSections
	wasiModule        = abi.ImportModule
	minInitTimeout    = 2 * time.Second
	initTimeoutFactor = 5
)

// Plugin is one compiled version of a plugin. Its module and pool of
// instances are shared with every loaded plugin whose file holds the same
// bytes (sharedModule).
//
// # Notes
//
//   - Plugin is safe for concurrent use; an instance is used by one
//     goroutine at a time and discarded after any error.
//   - A Plugin never changes: a new version of the file is a new Plugin.
type Plugin struct {
	name     string
	hash     string
	size     int
	loadedAt time.Time
	eng      *Engine
	mod      *sharedModule // the compiled module and its instances

	cacheKey string // sha256 of the compiled bytes (the module's key)

	mu     sync.RWMutex // read: an evaluation in flight; write: Close
	closed bool         // guarded by mu

	breaker breaker

	calls     atomic.Uint64
	failures  atomic.Uint64
	timeouts  atomic.Uint64
	discarded atomic.Uint64
}

// Stats are a plugin version's counters.
type Stats struct {
	Calls     uint64 // evaluations attempted
	Failures  uint64 // evaluations that failed (all kinds)
	Timeouts  uint64 // failures of kind timeout
	Discarded uint64 // instances thrown away after a failure
	Instances int64  // instances alive (idle or in use), shared with plugins of the same bytes
	Created   uint64 // instances created (each runs the guest's initialization), likewise
}

// Name returns the plugin's name (its file name without .wasm).
func (p *Plugin) Name() string { return p.name }

// Hash returns the hex sha256 of the plugin's .wasm bytes.
func (p *Plugin) Hash() string { return p.hash }

// LoadedAt returns when the plugin finished loading.
func (p *Plugin) LoadedAt() time.Time { return p.loadedAt }

// Stats returns the plugin's counters.
func (p *Plugin) Stats() Stats {
	return Stats{
		Calls:     p.calls.Load(),
		Failures:  p.failures.Load(),
		Timeouts:  p.timeouts.Load(),
		Discarded: p.discarded.Load(),
		Instances: p.mod.live.Load(),
		Created:   p.mod.created.Load(),
	}
}

type instance struct {
	// ws is the workspace the instance serves ("" until its first call):
	// a guest may keep anything in its globals, so an instance never
	// serves a second workspace.
	ws     string
	idleAt time.Time // when it went back to the pool
	cs     callState
	ctx    context.Context // carries cs to the kill switch
	mod    api.Module
	mem    api.Memory
	alloc  api.Function
	eval   api.Function
	// sections is relay_input_sections, nil when the module has none.
	sections api.Function
	out      *ring
	stack    [2]uint64
	bufPtr   uint32
	bufCap   uint32
}

// Load compiles wasm, checks it against ABI version 1 (exports and their
// signatures, imports only from wasi_snapshot_preview1, relay_abi_version()
// == 1) and pre-warms its instance pool. Expensive (milliseconds to a
// second for a cold standard-Go module): call it off the hot path.
func (e *Engine) Load(name string, wasm []byte) (*Plugin, error) {
	ctx := context.Background()
	if len(wasm) > MaxModuleBytes {
		return nil, fmt.Errorf("load policy %s: module is %d bytes, limit %d", name, len(wasm), MaxModuleBytes)
	}
	start := time.Now()
	hash := sha256hex(wasm)
	// The same bytes as a loaded plugin's (the shipped policies are one
	// bundle): its module, without instrumenting them again.
	m := e.moduleOf(hash)
	if m == nil {
		code := wasm
		if !e.opts.noDeadline {
			var err error
			if code, err = guard.Instrument(wasm); err != nil {
				return nil, fmt.Errorf("load policy %s: refused: %w", name, err)
			}
		}
		var err error
		if m, err = e.module(ctx, sha256hex(code), hash, code); err != nil {
			return nil, fmt.Errorf("compile policy %s: %w", name, err)
		}
	}
	key := m.key
	if err := validate(name, m.compiled); err != nil {
		return nil, errors.Join(err, e.releaseModule(ctx, key))
	}
	p := &Plugin{
		name:     name,
		hash:     hash,
		size:     len(wasm),
		eng:      e,
		mod:      m,
		cacheKey: key,
	}
	if err := e.track(p); err != nil {
		return nil, errors.Join(fmt.Errorf("load policy %s: %w", name, err), e.releaseModule(ctx, key))
	}
	if err := p.prewarm(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("load policy %s: %w", name, err), p.Close(ctx))
	}
	p.loadedAt = time.Now()
	e.log.Debug("loaded policy", relay.LogKeyPolicy, name, "hash", p.hash[:12],
		"bytes", len(wasm), "took", p.loadedAt.Sub(start))
	return p, nil
}

// validate checks the compiled module's imports and exports against ABI v1.
func validate(name string, m wazero.CompiledModule) error {
	for _, f := range m.ImportedFunctions() {
		mod, fn, _ := f.Import()
		if mod == guard.Module && fn == guard.Func {
			continue // added by the kill switch's rewrite
		}
		if mod != wasiModule {
			return fmt.Errorf("plugin %s imports %s.%s: only %s is allowed", name, mod, fn, wasiModule)
		}
	}
	for _, mem := range m.ImportedMemories() {
		mod, n, _ := mem.Import()
		return fmt.Errorf("plugin %s imports memory %s.%s: a plugin must export its own memory", name, mod, n)
	}
	// A declared maximum above the limit is clamped by wazero v1.12 (a
	// declared minimum above it fails to compile).
	if _, ok := m.ExportedMemories()[exportMemory]; !ok {
		return fmt.Errorf("plugin %s: missing export %q (memory)", name, exportMemory)
	}
	fns := m.ExportedFunctions()
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	want := []struct {
		name            string
		params, results []api.ValueType
		optional        bool
	}{
		{exportABIVersion, nil, []api.ValueType{i32}, false},
		{exportAlloc, []api.ValueType{i32}, []api.ValueType{i32}, false},
		{exportEvaluate, []api.ValueType{i32, i32}, []api.ValueType{i64}, false},
		{exportInitialize, nil, nil, true},
		{exportEncoding, nil, []api.ValueType{i32}, true},
		{exportSections, []api.ValueType{i32, i32}, []api.ValueType{i32}, true},
	}
	for _, w := range want {
		def, ok := fns[w.name]
		if !ok {
			if w.optional {
				continue
			}
			return fmt.Errorf("plugin %s: missing export %q", name, w.name)
		}
		if !slices.Equal(def.ParamTypes(), w.params) || !slices.Equal(def.ResultTypes(), w.results) {
			return fmt.Errorf("plugin %s: export %q has signature %s, want %s", name, w.name,
				signature(def.ParamTypes(), def.ResultTypes()), signature(w.params, w.results))
		}
	}
	return nil
}

func signature(params, results []api.ValueType) string {
	list := func(ts []api.ValueType) string {
		var b bytes.Buffer
		b.WriteByte('(')
		for i, t := range ts {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(api.ValueTypeName(t))
		}
		b.WriteByte(')')
		return b.String()
	}
	return list(params) + " -> " + list(results)
}

// prewarm creates the first instance (checking the ABI version) and fills
// the pool up to the engine's Prewarm count, once per shared module: a
// plugin with the same bytes as one already loaded finds it done.
func (p *Plugin) prewarm(ctx context.Context) error {
	p.mod.initMu.Lock()
	defer p.mod.initMu.Unlock()
	if p.mod.ready {
		return nil
	}
	first, err := p.newInstance(ctx)
	if err != nil {
		return err
	}
	insts := []*instance{first}
	first.cs.arm(ctx, p.eng.opts.Timeout)
	res, err := first.mod.ExportedFunction(exportABIVersion).Call(first.ctx)
	first.cs.disarm()
	if err != nil {
		p.closeInstance(first)
		return p.failure(fmt.Errorf("call %s: %w", exportABIVersion, err), first)
	}
	if v := int32(uint32(res[0])); v != abiVersion {
		p.closeInstance(first)
		return fmt.Errorf("plugin %s: unsupported ABI version %d", p.name, v)
	}
	if enc := first.mod.ExportedFunction(exportEncoding); enc != nil {
		first.cs.arm(ctx, p.eng.opts.Timeout)
		res, err := enc.Call(first.ctx)
		first.cs.disarm()
		if err != nil {
			p.closeInstance(first)
			return p.failure(fmt.Errorf("call %s: %w", exportEncoding, err), first)
		}
		switch v := int32(uint32(res[0])); v {
		case abi.EncodingJSON:
		case abi.EncodingCompact:
			p.mod.compact = true
		default:
			p.closeInstance(first)
			return fmt.Errorf("plugin %s: %s returned %d, want %d (JSON) or %d (compact)",
				p.name, exportEncoding, v, abi.EncodingJSON, abi.EncodingCompact)
		}
	}
	p.mod.sections = first.sections != nil
	for len(insts) < min(p.eng.opts.Prewarm, p.eng.opts.PoolSize) {
		inst, err := p.newInstance(ctx)
		if err != nil {
			for _, in := range insts {
				p.closeInstance(in)
			}
			return err
		}
		insts = append(insts, inst)
	}
	now := time.Now()
	for _, in := range insts {
		in.idleAt = now
	}
	p.mod.mu.Lock()
	p.mod.idle = append(p.mod.idle, insts...)
	p.mod.mu.Unlock()
	p.mod.ready = true
	return nil
}

// newInstance instantiates the module with no FS, env, args or sockets,
// running _initialize when the module has one.
func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	out := newRing(stderrBytes)
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(exportInitialize).
		WithStdout(out).
		WithStderr(out)
	inst := &instance{out: out}
	inst.ctx = withCallState(p.eng.instCtx, &inst.cs)
	inst.cs.arm(ctx, max(minInitTimeout, initTimeoutFactor*p.eng.opts.Timeout))
	mod, err := p.eng.rt.InstantiateModule(inst.ctx, p.mod.compiled, cfg)
	inst.cs.disarm()
	if err != nil {
		kind := classify(err, out.Tail(stderrBytes), false)
		return nil, &Error{Plugin: p.name, Kind: kind, Stderr: out.Excerpt(stderrInError),
			Err: fmt.Errorf("instantiate: %w", err)}
	}
	p.mod.live.Add(1)
	p.mod.created.Add(1)
	inst.mod = mod
	inst.mem = mod.ExportedMemory(exportMemory)
	inst.alloc = mod.ExportedFunction(exportAlloc)
	inst.eval = mod.ExportedFunction(exportEvaluate)
	inst.sections = mod.ExportedFunction(exportSections) // nil when not exported
	return inst, nil
}

func (p *Plugin) closeInstance(inst *instance) { p.mod.closeInstance(inst) }

// failure wraps a guest error as *Error, naming its kind, and attaches what
// the guest printed.
func (p *Plugin) failure(err error, inst *instance) error {
	memFull := inst.mem != nil && uint64(inst.mem.Size())+1<<16 > uint64(p.eng.pages)<<16
	kind := classify(err, inst.out.Tail(stderrBytes), memFull)
	return &Error{Plugin: p.name, Kind: kind, Stderr: inst.out.Excerpt(stderrInError), Err: err}
}

// rawWorkspace is the workspace EvaluateRaw calls are bound to.
const rawWorkspace = "\x00raw"

// EvaluateRaw runs relay_evaluate once on in and returns a copy of the
// plugin's output, both in the plugin's own encoding (JSON unless it asked
// for the compact one), on an instance reserved for raw calls. It waits for one of the engine's evaluation slots (or ctx
// to end), and bounds the guest call with the engine's Timeout. A guest
// failure returns *Error (matching relay.ErrPolicyTimeout or
// relay.ErrPolicyTrap); the instance is discarded. A closed plugin returns
// an error matching relay.ErrClosed.
func (p *Plugin) EvaluateRaw(ctx context.Context, in []byte) ([]byte, error) {
	return p.evaluate(ctx, rawWorkspace, in, nil)
}

// Evaluate encodes in, runs the plugin and decodes and validates its
// output (abi.DecodeOutput, or abi.DecodeOutputCompact for a plugin that
// asked for the compact encoding). Output that does not decode or validate is a
// failure of kind bad_output, like a trap: the instance is discarded.
func (p *Plugin) Evaluate(ctx context.Context, in *abi.Input) (abi.Output, error) {
	return p.evaluateInput(ctx, in, abi.AllSections)
}

// evaluateInput is Evaluate sending only the input sections in secs (the
// others empty), as the plugin asked (InputSections).
func (p *Plugin) evaluateInput(ctx context.Context, in *abi.Input, secs abi.Sections) (abi.Output, error) {
	send := in
	if secs&abi.AllSections != abi.AllSections {
		only := in.Only(secs)
		send = &only
	}
	bp := bufPool.Get().(*[]byte)
	decode := abi.DecodeOutput
	if p.mod.compact {
		*bp = abi.AppendInputCompact((*bp)[:0], send)
		decode = abi.DecodeOutputCompact
	} else {
		*bp = abi.AppendInput((*bp)[:0], send)
	}
	var out abi.Output
	_, err := p.evaluate(ctx, in.Event.Workspace, *bp, func(b []byte) error {
		if err := decode(b, &out); err != nil {
			return &badOutputError{msg: "decode output: " + err.Error()}
		}
		return nil
	})
	if cap(*bp) <= 64<<10 {
		bufPool.Put(bp)
	}
	return out, err
}

// InputSections asks the plugin which input sections it reads with config
// (its manifest's config JSON, nil when none), through its optional
// relay_input_sections export, on an instance of workspace ws. A plugin
// without the export reads them all. A failed call returns the failure
// (*Error; the instance is discarded) with abi.AllSections; it is not
// counted as a failed evaluation.
func (p *Plugin) InputSections(ctx context.Context, ws string, config []byte) (abi.Sections, error) {
	if !p.mod.sections {
		return abi.AllSections, nil
	}
	if len(config) > MaxInputBytes {
		return abi.AllSections, fmt.Errorf("policy %s: config is %d bytes, limit %d", p.name, len(config), MaxInputBytes)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return abi.AllSections, fmt.Errorf("policy %s: %w", p.name, relay.ErrClosed)
	}
	if err := p.eng.acquire(ctx); err != nil {
		return abi.AllSections, fmt.Errorf("policy %s: wait for a slot: %w", p.name, err)
	}
	defer p.eng.release()
	inst, err := p.get(ctx, ws)
	if err != nil {
		return abi.AllSections, err
	}
	secs, err := p.callSections(ctx, inst, config)
	if err != nil {
		ferr := p.failure(err, inst)
		p.discard(inst)
		return abi.AllSections, ferr
	}
	p.put(inst)
	return secs, nil
}

// callSections is one relay_input_sections call on inst.
func (p *Plugin) callSections(ctx context.Context, inst *instance, config []byte) (abi.Sections, error) {
	inst.cs.arm(ctx, p.eng.opts.Timeout)
	defer inst.cs.disarm()
	inst.out.Reset()
	if err := p.write(inst, config); err != nil {
		return 0, err
	}
	inst.stack[0], inst.stack[1] = uint64(inst.bufPtr), uint64(len(config))
	if err := inst.sections.CallWithStack(inst.ctx, inst.stack[:]); err != nil {
		return 0, fmt.Errorf("call %s: %w", exportSections, err)
	}
	return abi.Sections(uint32(inst.stack[0])), nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// evaluate runs relay_evaluate; check, when set, judges the output while the
// instance is still held, so a bad output discards the instance.
func (p *Plugin) evaluate(ctx context.Context, ws string, in []byte, check func([]byte) error) ([]byte, error) {
	if len(in) == 0 || len(in) > MaxInputBytes {
		return nil, fmt.Errorf("evaluate policy %s: input is %d bytes, want 1..%d", p.name, len(in), MaxInputBytes)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, fmt.Errorf("evaluate policy %s: %w", p.name, relay.ErrClosed)
	}
	if err := p.eng.acquire(ctx); err != nil {
		return nil, fmt.Errorf("evaluate policy %s: wait for a slot: %w", p.name, err)
	}
	defer p.eng.release()
	p.calls.Add(1)
	inst, err := p.get(ctx, ws)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("evaluate policy %s: %w", p.name, ctx.Err())
		}
		p.failures.Add(1)
		return nil, err
	}
	out, err := p.call(ctx, inst, in)
	if err == nil {
		if check != nil {
			err = check(out) // out is a view of guest memory
			out = nil
		} else {
			out = bytes.Clone(out)
		}
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The caller gave up: not the plugin's fault, but the
			// instance was interrupted, so it goes.
			p.discard(inst)
			return nil, fmt.Errorf("evaluate policy %s: %w", p.name, ctx.Err())
		}
		ferr := p.failure(err, inst)
		p.discard(inst)
		p.failures.Add(1)
		var pe *Error
		if errors.As(ferr, &pe) && pe.Kind == KindTimeout {
			p.timeouts.Add(1)
		}
		return nil, ferr
	}
	p.put(inst)
	return out, nil
}

// call is one relay_evaluate round trip on inst. The output is a view of
// the guest's memory, valid until the next call on inst.
func (p *Plugin) call(ctx context.Context, inst *instance, in []byte) ([]byte, error) {
	inst.cs.arm(ctx, p.eng.opts.Timeout)
	defer inst.cs.disarm()
	cctx := inst.ctx
	inst.out.Reset()
	if err := p.write(inst, in); err != nil {
		return nil, err
	}
	inst.stack[0], inst.stack[1] = uint64(inst.bufPtr), uint64(len(in))
	if err := inst.eval.CallWithStack(cctx, inst.stack[:]); err != nil {
		return nil, fmt.Errorf("call %s: %w", exportEvaluate, err)
	}
	r := inst.stack[0]
	optr, olen := uint32(r>>32), uint32(r)
	if olen == 0 {
		return nil, badOutput("%s returned an empty output", exportEvaluate)
	}
	if olen > MaxOutputBytes {
		return nil, badOutput("%s returned %d bytes, limit %d", exportEvaluate, olen, MaxOutputBytes)
	}
	view, ok := inst.mem.Read(optr, olen)
	if !ok {
		return nil, badOutput("%s output [%d, +%d) is outside memory of %d bytes",
			exportEvaluate, optr, olen, inst.mem.Size())
	}
	return view, nil
}

// write puts b in inst's input buffer (relay_alloc), growing it when b is
// larger than any before. The caller has armed the kill switch.
func (p *Plugin) write(inst *instance, b []byte) error {
	n := max(uint32(len(b)), 1)
	if n > inst.bufCap {
		inst.stack[0] = uint64(n)
		if err := inst.alloc.CallWithStack(inst.ctx, inst.stack[:1]); err != nil {
			return fmt.Errorf("call %s: %w", exportAlloc, err)
		}
		ptr := uint32(inst.stack[0])
		if ptr == 0 {
			return badOutput("%s(%d) returned 0", exportAlloc, n)
		}
		inst.bufPtr, inst.bufCap = ptr, n
	}
	if !inst.mem.Write(inst.bufPtr, b) {
		return badOutput("%s buffer [%d, +%d) is outside memory of %d bytes",
			exportAlloc, inst.bufPtr, len(b), inst.mem.Size())
	}
	return nil
}

// get returns an idle instance that served ws before, or one that never
// served anyone, or a new one. The instance is bound to ws.
func (p *Plugin) get(ctx context.Context, ws string) (*instance, error) {
	p.mod.mu.Lock()
	pick := -1
	for i := len(p.mod.idle) - 1; i >= 0; i-- {
		if w := p.mod.idle[i].ws; w == ws {
			pick = i
			break
		} else if w == "" && pick < 0 {
			pick = i
		}
	}
	if pick >= 0 {
		inst := p.mod.idle[pick]
		p.mod.idle = append(p.mod.idle[:pick], p.mod.idle[pick+1:]...)
		p.mod.mu.Unlock()
		inst.ws = ws
		return inst, nil
	}
	p.mod.mu.Unlock()
	inst, err := p.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	inst.ws = ws
	return inst, nil
}

// put returns a healthy instance to the pool. The pool keeps at most
// PoolSize idle instances per workspace and MaxIdle in all, evicting the
// least recently used of the workspace, or of all. The caller holds
// mu.RLock, so the plugin is not closed.
func (p *Plugin) put(inst *instance) {
	inst.idleAt = time.Now()
	evict := -1
	p.mod.mu.Lock()
	same, oldest := 0, -1
	for i, x := range p.mod.idle { // least recently used first
		if x.ws == inst.ws {
			if oldest < 0 {
				oldest = i
			}
			same++
		}
	}
	switch {
	case same >= p.eng.opts.PoolSize:
		evict = oldest
	case len(p.mod.idle) >= p.eng.opts.MaxIdle:
		evict = 0
	}
	var old *instance
	if evict >= 0 {
		old = p.mod.idle[evict]
		p.mod.idle = append(p.mod.idle[:evict], p.mod.idle[evict+1:]...)
	}
	p.mod.idle = append(p.mod.idle, inst)
	p.mod.mu.Unlock()
	if old != nil {
		p.closeInstance(old)
	}
}

// Trim closes the instances idle since before now-idle, releasing their
// memory (a standard-Go guest holds 2-4 MiB). The next evaluation creates
// a new one.
func (p *Plugin) Trim(now time.Time, idle time.Duration) int {
	p.mod.mu.Lock()
	var old []*instance
	keep := p.mod.idle[:0]
	for _, inst := range p.mod.idle {
		if now.Sub(inst.idleAt) >= idle {
			old = append(old, inst)
		} else {
			keep = append(keep, inst)
		}
	}
	p.mod.idle = keep
	p.mod.mu.Unlock()
	for _, inst := range old {
		p.closeInstance(inst)
	}
	return len(old)
}

func (p *Plugin) discard(inst *instance) {
	p.discarded.Add(1)
	p.closeInstance(inst)
}

// Close waits for in-flight evaluations, then lets go of the shared
// module: the last plugin using it closes its idle instances and the
// compiled code. Later evaluations fail with relay.ErrClosed. Close is
// idempotent.
func (p *Plugin) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.eng.untrack(p)
	if err := p.eng.releaseModule(context.WithoutCancel(ctx), p.cacheKey); err != nil {
		return fmt.Errorf("close policy %s: %w", p.name, err)
	}
	return nil
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
