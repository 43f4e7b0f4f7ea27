package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/edgerelay/edgerelay/plugins/abi"
	"github.com/edgerelay/edgerelay/relay"
)

// Defaults for Options fields left zero.
const (
	DefaultMemoryLimit = 64 << 20 // bytes of linear memory per instance
	DefaultTimeout     = 500 * time.Millisecond
	DefaultIdleTimeout = 2 * time.Minute
	DefaultMaxIdle     = 8
	// MaxModuleBytes caps the size of a .wasm file the engine will compile.
	MaxModuleBytes = 32 << 20
	// MaxInputBytes caps the input handed to relay_evaluate.
	MaxInputBytes = 256 << 10
	// MaxOutputBytes caps the output a plugin may return.
	MaxOutputBytes = abi.MaxOutputBytes
	// stderrBytes is the size of each instance's stdout/stderr ring buffer.
	stderrBytes = 4 << 10
	// stderrInError is how much of the captured stderr an error carries.
	stderrInError = 300
)

// Options configure an Engine.
type Options struct {
	// CacheDir holds wazero's on-disk compilation cache (created with mode
	// 0700). Empty: compile in memory only. The cached files are machine code
	// the daemon will run, so the directory must be owned by the daemon.
	CacheDir string
	// MemoryLimit caps each instance's linear memory, in bytes (rounded down
	// to 64 KiB pages). Zero: DefaultMemoryLimit.
	MemoryLimit int64
	// Timeout bounds every guest call (a kill switch, not a latency goal).
	// Zero: DefaultTimeout.
	Timeout time.Duration
	// Logger receives load and failure messages. Nil: no logging.
	Logger hclog.Logger
	// MaxConcurrent caps concurrent evaluations across all plugins. Zero:
	// GOMAXPROCS. Deadlines are wall-clock, so more evaluations than cores
	// lets healthy calls be killed.
	MaxConcurrent int
	// PoolSize caps the idle instances kept per plugin for one workspace
	// (an instance only ever serves one). Zero: MaxConcurrent.
	PoolSize int
	// MaxIdle caps the idle instances kept per plugin across workspaces;
	// past it the least recently used goes. Instantiating a standard-Go
	// module takes about 10 ms, so the pool must hold an instance for
	// every workspace with steady traffic. Zero: DefaultMaxIdle, at least
	// PoolSize.
	MaxIdle int
	// Prewarm is how many instances Load creates before returning (at least
	// one, which also checks the ABI version). Zero: 1.
	Prewarm int
	// IdleTimeout is how long an instance may sit unused in its pool
	// before the Watcher's periodic resync closes it, releasing its memory.
	// Zero: DefaultIdleTimeout.
	IdleTimeout time.Duration

	// noMmap switches the mmap-backed memory allocator off (tests measure the
	// difference).
	noMmap bool
	// noDeadline runs guests with no kill switch at all: no load-time
	// rewrite and no deadline (benchmarks measure the cost of the switch).
	noDeadline bool
}

// Engine owns one wazero runtime, its compilation cache and the plugins
// loaded into it.
//
// # Notes
//
//   - Engine is safe for concurrent use.
//   - Close closes every plugin the engine loaded.
type Engine struct {
	opts    Options
	log     hclog.Logger
	rt      wazero.Runtime
	cache   wazero.CompilationCache
	sem     chan struct{}
	pages   uint32
	instCtx context.Context // carries the memory allocator

	mu      sync.Mutex
	plugins map[*Plugin]struct{}
	closed  bool

	cacheMu    sync.Mutex          // serializes compiles and cache pruning
	cacheIndex map[string][]string // module key -> cache files (cache.go)

	modMu   sync.Mutex               // serializes module lookups and compiles
	modules map[string]*sharedModule // module key -> the compiled module plugins share
	byInput map[string]*sharedModule // sha256 of a loaded plugin's file -> its module
}

// sharedModule is one compiled module, its pool of instances and the
// number of loaded plugins using it. Plugins whose (instrumented) bytes are
// identical, such as the shipped policies installed from one bundle, share
// it: wazero's CompiledModule holds the decoded module besides the machine
// code (about 9 MiB for a standard-Go plugin), and each standard-Go
// instance 4-8 MiB of linear memory. An instance still serves one
// workspace only; plugins of the same bytes are the same code, and the Go
// SDK keeps each config's parsed rule apart.
type sharedModule struct {
	compiled wazero.CompiledModule
	key      string   // sha256 of the compiled (instrumented) bytes
	input    string   // sha256 of the file's bytes they came from
	files    []string // its compilation cache files
	refs     int      // guarded by Engine.modMu

	initMu   sync.Mutex // held while the first plugin checks and prewarms it
	ready    bool       // checked and prewarmed (guarded by initMu)
	compact  bool       // reads and writes the compact encoding; set before ready
	sections bool       // exports relay_input_sections; set before ready

	mu   sync.Mutex
	idle []*instance // least recently used first

	live    atomic.Int64
	created atomic.Uint64
}

func (m *sharedModule) closeInstance(inst *instance) {
	_ = inst.mod.Close(context.Background())
	m.live.Add(-1)
}

// moduleOf returns, with one more use, the module of a loaded plugin whose
// file's sha256 is input; nil when there is none. A non-nil result must be
// matched by releaseModule.
func (e *Engine) moduleOf(input string) *sharedModule {
	e.modMu.Lock()
	defer e.modMu.Unlock()
	m := e.byInput[input]
	if m != nil {
		m.refs++
	}
	return m
}

// module returns the compiled module for code (key is its sha256; input
// the sha256 of the file it was made from), compiling it unless a loaded
// plugin already did. Every successful call must be matched by
// releaseModule.
func (e *Engine) module(ctx context.Context, key, input string, code []byte) (*sharedModule, error) {
	e.modMu.Lock()
	defer e.modMu.Unlock()
	if m, ok := e.modules[key]; ok {
		m.refs++
		return m, nil
	}
	var compiled wazero.CompiledModule
	files, err := e.compileCached(key, func() (err error) {
		compiled, err = e.rt.CompileModule(ctx, code)
		return err
	})
	if err != nil {
		return nil, err
	}
	m := &sharedModule{compiled: compiled, key: key, input: input, files: files, refs: 1}
	e.modules[key] = m
	e.byInput[input] = m
	return m, nil
}

// releaseModule drops one use of the module key; the last closes its idle
// instances and the compiled code.
func (e *Engine) releaseModule(ctx context.Context, key string) error {
	e.modMu.Lock()
	m, ok := e.modules[key]
	if !ok {
		e.modMu.Unlock()
		return nil
	}
	if m.refs--; m.refs > 0 {
		e.modMu.Unlock()
		return nil
	}
	delete(e.modules, key)
	if e.byInput[m.input] == m {
		delete(e.byInput, m.input)
	}
	e.modMu.Unlock()
	m.mu.Lock()
	idle := m.idle
	m.idle = nil
	m.mu.Unlock()
	for _, inst := range idle {
		m.closeInstance(inst)
	}
	return m.compiled.Close(ctx)
}

// Open creates the runtime (deadlines enforced, memory capped, compilation
// cache on disk when opts.CacheDir is set) and instantiates WASI preview 1,
// the only host module plugins may import.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	if opts.MemoryLimit < 1<<16 {
		return nil, fmt.Errorf("open policy engine: memory limit %d bytes is below one 64 KiB page", opts.MemoryLimit)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = runtime.GOMAXPROCS(0)
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = opts.MaxConcurrent
	}
	if opts.MaxIdle <= 0 {
		opts.MaxIdle = DefaultMaxIdle
	}
	opts.MaxIdle = max(opts.MaxIdle, opts.PoolSize)
	if opts.Prewarm <= 0 {
		opts.Prewarm = 1
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	pages := opts.MemoryLimit >> 16
	if pages > 65536 {
		pages = 65536
	}
	e := &Engine{
		opts:    opts,
		log:     opts.Logger,
		sem:     make(chan struct{}, opts.MaxConcurrent),
		pages:   uint32(pages),
		plugins: make(map[*Plugin]struct{}),
		modules: make(map[string]*sharedModule),
		byInput: make(map[string]*sharedModule),
	}
	// No WithCloseOnContextDone: the kill switch is the load-time rewrite
	// (killswitch.go), which costs a few instructions per loop iteration
	// instead of a trip to Go at every loop back-edge.
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(e.pages)
	if opts.CacheDir != "" {
		if err := prepareCacheDir(opts.CacheDir, e.log); err != nil {
			return nil, fmt.Errorf("open policy engine: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("open compilation cache %s: %w", opts.CacheDir, err)
		}
		e.cache = c
		e.loadCacheIndex()
		rc = rc.WithCompilationCache(c)
	}
	e.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.rt); err != nil {
		return nil, errors.Join(fmt.Errorf("instantiate wasi: %w", err), e.closeRuntime(ctx))
	}
	if err := instantiateGuard(ctx, e.rt); err != nil {
		return nil, errors.Join(fmt.Errorf("instantiate kill switch: %w", err), e.closeRuntime(ctx))
	}
	e.instCtx = context.Background()
	if alloc := newMmapAllocator(); alloc != nil && !opts.noMmap {
		e.instCtx = experimental.WithMemoryAllocator(e.instCtx, alloc)
	}
	return e, nil
}

// Timeout returns the per-call deadline in effect.
func (e *Engine) Timeout() time.Duration { return e.opts.Timeout }

// Close closes every plugin (waiting for their in-flight evaluations), then
// the runtime and the compilation cache. It succeeds even with a done ctx.
func (e *Engine) Close(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	ps := make([]*Plugin, 0, len(e.plugins))
	for p := range e.plugins {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Close(ctx))
	}
	errs = append(errs, e.closeRuntime(ctx))
	return errors.Join(errs...)
}

func (e *Engine) closeRuntime(ctx context.Context) error {
	var errs []error
	if err := e.rt.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close wasm runtime: %w", err))
	}
	if e.cache != nil {
		if err := e.cache.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close compilation cache: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) track(p *Plugin) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return relay.ErrClosed
	}
	e.plugins[p] = struct{}{}
	return nil
}

func (e *Engine) untrack(p *Plugin) {
	e.mu.Lock()
	delete(e.plugins, p)
	e.mu.Unlock()
}

// acquire takes an evaluation slot, or fails when ctx ends first.
func (e *Engine) acquire(ctx context.Context) error {
	select {
	case e.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case e.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) release() { <-e.sem }

// prepareCacheDir creates dir with mode 0700 and removes compilation caches
// left behind by other wazero versions.
func prepareCacheDir(dir string, log hclog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create cache dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod cache dir %s: %w", dir, err)
	}
	keep := "wazero-" + wazeroVersion() + "-" + runtime.GOARCH + "-" + runtime.GOOS
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read cache dir %s: %w", dir, err)
	}
	for _, ent := range entries {
		name := ent.Name()
		if !ent.IsDir() || !strings.HasPrefix(name, "wazero-") || name == keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			log.Warn("cannot prune old compilation cache", "dir", name, relay.LogKeyError, err)
			continue
		}
		log.Info("pruned compilation cache of another wazero version", "dir", name)
	}
	return nil
}

// wazeroVersion mirrors how wazero names its cache directory.
func wazeroVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if strings.Contains(dep.Path, "github.com/tetratelabs/wazero") {
				if dep.Version != "" && dep.Version != "(devel)" {
					return dep.Version
				}
			}
		}
	}
	return "dev"
}
