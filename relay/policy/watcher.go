package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/fsperm"
)

// Watcher defaults.
const (
	DefaultDebounce = 200 * time.Millisecond
	DefaultResync   = 60 * time.Second
	// maxEvaluateAttempts bounds how often Evaluate restarts a chain whose
	// Set was replaced under it.
	maxEvaluateAttempts = 10
)

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	// Dir is plugins.dir: NAME.wasm files with optional NAME.hcl manifests.
	Dir string
	// Engine compiles and runs the plugins. The Watcher does not close it.
	Engine *Engine
	// Set configures the chains the Watcher builds.
	Set SetOptions
	// Debounce is how long the directory must be quiet before a rescan.
	Debounce time.Duration
	// Resync is the period of a full rescan even without events (events
	// can be lost: network filesystems, inotify overflow).
	Resync time.Duration
	Logger hclog.Logger
	// OnChange, when set, is told of every plugin loaded, replaced (a new
	// .wasm or manifest) or unloaded, after the new chain is in use (the
	// audit log). It is called from Reload, one call at a time.
	OnChange func(PluginChange)
}

// PluginChange is one plugin's change in a reload: Before is nil for a
// plugin loaded for the first time, After nil for one unloaded.
type PluginChange struct {
	Name          string
	Before, After *PluginVersion
}

// PluginVersion names a loaded plugin version.
type PluginVersion struct {
	Hash             string `json:"hash"` // sha256 of the .wasm file
	Order            int    `json:"order"`
	Mode             string `json:"mode"`
	OverrideEnforced bool   `json:"override_enforced"`
}

func versionOf(sl *slot) *PluginVersion {
	if sl == nil || sl.plugin == nil {
		return nil
	}
	return &PluginVersion{Hash: sl.wasmHash, Order: sl.manifest.Order, Mode: sl.manifest.Mode, OverrideEnforced: sl.manifest.OverrideEnforced}
}

// PluginInfo describes a loaded plugin for GET /v1/plugins.
type PluginInfo struct {
	Name string `json:"name"`
	Hash string `json:"hash"` // sha256 of the .wasm file
	// DecisionHash is the hash the plugin's decisions record: Hash, or
	// with a manifest config, the sha256 of Hash and the config.
	DecisionHash string    `json:"decision_hash"`
	Order        int       `json:"order"`
	Mode         string    `json:"mode"`
	LoadedAt     time.Time `json:"loaded_at"`
	Calls        uint64    `json:"calls"`
	Failures     uint64    `json:"failures"`
	Timeouts     uint64    `json:"timeouts"`
	// Instances is how many instances are alive; InstancesCreated how many
	// were ever created (one per workspace per idle period, and one after
	// each failure).
	Instances        int64  `json:"instances"`
	InstancesCreated uint64 `json:"instances_created"`
	BreakerOpen      bool   `json:"breaker_open,omitempty"`
	// LastError is why the file on disk is not the version loaded (empty
	// when they agree).
	LastError string `json:"last_error,omitempty"`
}

// Watcher keeps a Set in step with plugins.dir: new, changed and removed
// files take effect without a restart, and a broken file leaves the
// previous version running.
//
// # Notes
//
//   - Evaluate and List are safe for concurrent use and never wait for a
//     reload: the current Set is swapped atomically.
//   - Reload and Run's rescans are serialized.
type Watcher struct {
	opts WatcherOptions
	log  hclog.Logger
	cur  atomic.Pointer[Set]

	reloadMu sync.Mutex // serializes rescans
	slots    map[string]*slot
	closed   bool
	pruned   bool // the compilation cache was pruned after a rescan
	// read: the stamp and hash of each NAME.wasm as last read, for the
	// rescans to skip the files that did not change (unchanged).
	read map[string]readFile
	// stableAfter: a file changed more recently than this before it was
	// read may change again within its timestamps' granularity; its stamp
	// is not trusted (the "racy" files of git's index).
	stableAfter time.Duration

	stateMu sync.Mutex // guards lastErr for List
	lastErr map[string]string
}

// readFile is a NAME.wasm as a rescan last read it.
type readFile struct {
	stamp fileStamp
	hash  string
}

// fileStamp identifies a version of a file without reading it. The change
// time is set by the kernel on every write, rename or chmod; nothing can
// set it back, so a file rewritten in place with its old size and
// modification time still gets a new stamp.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns since the epoch
}

// defaultStableAfter covers the coarsest timestamps relayd may meet (FAT's
// 2 s); on ext4 or XFS a jiffy would do.
const defaultStableAfter = 2 * time.Second

// slot is what the watcher knows about one NAME.
type slot struct {
	plugin   *Plugin
	manifest Manifest
	wasmHash string // of the loaded version
	manHash  string // of the manifest it was loaded with ("" = none)
	badKey   string // wasmHash+manHash of the last version that failed to load
}

// NewWatcher returns a Watcher with an empty Set. It starts nothing and
// reads nothing: call Reload, then Run.
func NewWatcher(opts WatcherOptions) *Watcher {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Set.Logger == nil {
		opts.Set.Logger = opts.Logger
	}
	w := &Watcher{opts: opts, log: opts.Logger, slots: make(map[string]*slot), lastErr: make(map[string]string),
		read: make(map[string]readFile), stableAfter: defaultStableAfter}
	w.cur.Store(NewSet(opts.Set, nil))
	return w
}

// Current returns the Set in effect.
func (w *Watcher) Current() *Set { return w.cur.Load() }

// Evaluate runs the current chain for req. When a reload replaces a plugin
// mid-chain, it starts over on the new Set, so every decision comes from
// one consistent Set.
func (w *Watcher) Evaluate(ctx context.Context, req *Request) (Result, error) {
	var err error
	for range maxEvaluateAttempts {
		var res Result
		res, err = w.cur.Load().Evaluate(ctx, req)
		if !errors.Is(err, relay.ErrClosed) || ctx.Err() != nil {
			return res, err
		}
	}
	return Result{}, fmt.Errorf("evaluate policies: %w", err)
}

// Applies reports whether a plugin of the current chain would see an event
// of type typ in workspace ws (Set.Applies).
func (w *Watcher) Applies(ws, typ string) bool { return w.cur.Load().Applies(ws, typ) }

// Active reports whether the current chain has a plugin.
func (w *Watcher) Active() bool { return len(w.cur.Load().entries) > 0 }

// List describes the loaded plugins in chain order.
func (w *Watcher) List() []PluginInfo {
	s := w.cur.Load()
	now := time.Now()
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	out := make([]PluginInfo, 0, len(s.entries))
	seen := make(map[string]bool)
	for _, e := range s.entries {
		p := e.Plugin
		st := p.Stats()
		seen[p.name] = true
		out = append(out, PluginInfo{Name: p.name, Hash: p.hash, DecisionHash: e.hash, Order: e.Manifest.Order, Mode: e.Manifest.Mode,
			LoadedAt: p.loadedAt, Calls: st.Calls, Failures: st.Failures, Timeouts: st.Timeouts,
			Instances: st.Instances, InstancesCreated: st.Created,
			BreakerOpen: p.BreakerOpen(now), LastError: w.lastErr[p.name]})
	}
	// Files that never loaded show up with their error.
	var names []string
	for n := range w.lastErr {
		if !seen[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, PluginInfo{Name: n, LastError: w.lastErr[n]})
	}
	return out
}

// Run watches the directory until ctx ends, rescanning after a quiet
// period following any change, after watcher errors and every Resync. It
// returns nil when ctx ends, or an error if the directory cannot be watched.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch plugins dir: %w", err)
	}
	defer fw.Close()
	if err := fw.Add(w.opts.Dir); err != nil {
		return fmt.Errorf("watch plugins dir %s: %w", w.opts.Dir, err)
	}
	// Changes between the caller's Reload and the watch starting.
	_ = w.Reload()
	// The rescan runs Debounce after the first change of a burst; changes
	// during the wait join it. The timer is not pushed back by later
	// changes, so a directory that never goes quiet is still rescanned.
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	pending := false
	schedule := func() {
		if !pending {
			pending = true
			debounce.Reset(w.opts.Debounce)
		}
	}
	resync := time.NewTicker(w.opts.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if relevant(ev.Name) {
				schedule()
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.log.Warn("plugins dir watch error; rescanning", relay.LogKeyError, err)
			schedule()
		case <-debounce.C:
			pending = false
			_ = w.Reload()
		case <-resync.C:
			_ = w.Reload()
			w.trim(time.Now())
		}
	}
}

// trim releases the instances the current plugins have not used for the
// engine's IdleTimeout.
func (w *Watcher) trim(now time.Time) {
	idle := w.opts.Engine.opts.IdleTimeout
	for _, e := range w.Current().entries {
		if n := e.Plugin.Trim(now, idle); n > 0 {
			w.log.Debug("released idle policy instances", relay.LogKeyPolicy, e.Plugin.name, "instances", n)
		}
	}
}

// relevant reports whether a change to name can change the plugin set:
// plugin files, manifests and Kubernetes' ..data symlink.
func relevant(path string) bool {
	base := filepath.Base(path)
	if base == "..data" {
		return true
	}
	if strings.HasPrefix(base, ".") {
		return false
	}
	return strings.HasSuffix(base, ".wasm") || strings.HasSuffix(base, ".hcl")
}

// fileVersion is one NAME's files as read during a rescan.
type fileVersion struct {
	wasm     []byte
	wasmHash string
	manSrc   []byte
	manHash  string
	manPath  string
	err      error
}

// Reload rescans the directory now: it loads new and changed plugins off
// the hot path, unloads removed ones, swaps in the new Set and then drains
// and closes the versions it replaced. A file that fails to read, parse,
// compile or validate keeps its previous version (if any) and its error is
// logged, kept for List and returned (joined with the others).
func (w *Watcher) Reload() error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	if w.closed {
		return relay.ErrClosed
	}
	found, err := w.scan()
	if err != nil {
		w.log.Error("cannot scan plugins dir", "dir", w.opts.Dir, relay.LogKeyError, err)
		return err
	}
	var errs []error
	var retired []*Plugin
	changed := false
	loaded := 0
	var changes []PluginChange
	for name, fv := range found {
		sl := w.slots[name]
		if sl != nil && sl.wasmHash == fv.wasmHash && sl.manHash == fv.manHash && fv.err == nil {
			w.setErr(name, "")
			continue
		}
		key := fv.wasmHash + "/" + fv.manHash
		if sl != nil && sl.badKey == key && fv.err == nil {
			continue // the same broken bytes: already reported
		}
		before := versionOf(sl)
		ok, err := w.apply(name, sl, fv, &retired)
		if ok && err == nil {
			loaded++
			changes = append(changes, PluginChange{Name: name, Before: before, After: versionOf(w.slots[name])})
		}
		if err != nil {
			errs = append(errs, err)
			kept := ""
			if sl != nil {
				if sl.plugin != nil {
					kept = sl.plugin.hash[:12]
				}
				sl.badKey = key
			} else {
				w.slots[name] = &slot{badKey: key}
			}
			w.setErr(name, err.Error())
			w.log.Error("policy not loaded; keeping the previous version", relay.LogKeyPolicy, name,
				"kept_hash", kept, relay.LogKeyError, err)
			continue
		}
		if ok {
			changed = true
			w.setErr(name, "")
		}
	}
	for name, sl := range w.slots {
		if _, ok := found[name]; ok {
			continue
		}
		delete(w.slots, name)
		delete(w.read, name)
		w.setErr(name, "")
		if sl.plugin != nil {
			changes = append(changes, PluginChange{Name: name, Before: versionOf(sl)})
			retired = append(retired, sl.plugin)
			changed = true
			w.log.Info("policy unloaded: file removed", relay.LogKeyPolicy, name, "hash", sl.wasmHash[:12])
		}
	}
	if changed {
		w.publish()
	}
	if w.opts.OnChange != nil {
		for _, c := range changes {
			w.opts.OnChange(c)
		}
	}
	for _, p := range retired {
		if err := p.Close(context.Background()); err != nil {
			w.log.Warn("cannot close replaced policy", relay.LogKeyPolicy, p.name, relay.LogKeyError, err)
		}
	}
	if loaded > 0 {
		// Compiling a module leaves tens of MiB of garbage per standard-Go
		// plugin: give it back to the OS now rather than at the
		// scavenger's pace, so an idle relay's RSS is what it uses.
		debug.FreeOSMemory()
	}
	if changed || !w.pruned {
		// Every file in the directory has been tried: what is not loaded
		// now is not needed in the compilation cache.
		if err := w.opts.Engine.PruneCache(); err != nil {
			w.log.Warn("cannot prune compilation cache", relay.LogKeyError, err)
		}
		w.pruned = true
	}
	return errors.Join(errs...)
}

// apply loads fv for name into its slot. It reports whether the Set must
// change; plugins it replaced are appended to retired.
func (w *Watcher) apply(name string, sl *slot, fv *fileVersion, retired *[]*Plugin) (bool, error) {
	if fv.err != nil {
		return false, fv.err
	}
	man := &Manifest{Mode: ModeEnforce}
	if fv.manSrc != nil {
		m, err := ParseManifest(fv.manPath, fv.manSrc)
		if err != nil {
			return false, err
		}
		man = m
	}
	if sl != nil && sl.plugin != nil && sl.wasmHash == fv.wasmHash {
		// Only the manifest changed: same plugin, new place in the chain.
		sl.manifest, sl.manHash, sl.badKey = *man, fv.manHash, ""
		w.log.Info("policy manifest reloaded", relay.LogKeyPolicy, name)
		return true, nil
	}
	start := time.Now()
	p, err := w.opts.Engine.Load(name, fv.wasm)
	if err != nil {
		return false, err
	}
	if sl == nil {
		sl = &slot{}
		w.slots[name] = sl
	}
	if sl.plugin != nil {
		*retired = append(*retired, sl.plugin)
	}
	sl.plugin, sl.manifest, sl.wasmHash, sl.manHash, sl.badKey = p, *man, fv.wasmHash, fv.manHash, ""
	w.log.Info("policy loaded", relay.LogKeyPolicy, name, "hash", p.hash[:12], "order", man.Order,
		"mode", man.Mode, "took", time.Since(start))
	return true, nil
}

// publish swaps in a Set built from the slots.
func (w *Watcher) publish() {
	var entries []Entry
	for _, sl := range w.slots {
		if sl.plugin != nil {
			entries = append(entries, Entry{Plugin: sl.plugin, Manifest: sl.manifest})
		}
	}
	w.cur.Store(NewSet(w.opts.Set, entries))
}

func (w *Watcher) setErr(name, msg string) {
	w.stateMu.Lock()
	if msg == "" {
		delete(w.lastErr, name)
	} else {
		w.lastErr[name] = msg
	}
	w.stateMu.Unlock()
}

// scan reads every NAME.wasm (following symlinks that stay inside the
// directory) and its NAME.hcl. A NAME.wasm whose loaded version is still
// the file's (unchanged) is not read again: its fileVersion has the hash
// and no bytes.
func (w *Watcher) scan() (map[string]*fileVersion, error) {
	ents, err := os.ReadDir(w.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("read plugins dir: %w", err)
	}
	found := make(map[string]*fileVersion)
	for _, ent := range ents {
		fn := ent.Name()
		if strings.HasPrefix(fn, ".") || !strings.HasSuffix(fn, ".wasm") {
			continue
		}
		name := strings.TrimSuffix(fn, ".wasm")
		fv := &fileVersion{}
		path := filepath.Join(w.opts.Dir, fn)
		if hash, ok := w.unchanged(name, path); ok {
			fv.wasmHash = hash
		} else {
			var stamp fileStamp
			var stable bool
			fv.wasm, stamp, stable, fv.err = w.readModule(path)
			if fv.err != nil {
				delete(w.read, name)
				if errors.Is(fv.err, os.ErrNotExist) {
					continue // removed (or a dangling symlink) between ReadDir and here
				}
				fv.err = fmt.Errorf("read policy %s: %w", path, fv.err)
			}
			sum := sha256.Sum256(fv.wasm)
			fv.wasmHash = hex.EncodeToString(sum[:])
			if stable {
				w.read[name] = readFile{stamp: stamp, hash: fv.wasmHash}
			} else {
				delete(w.read, name)
			}
		}
		fv.manPath = filepath.Join(w.opts.Dir, name+".hcl")
		src, err := readCapped(w.opts.Dir, fv.manPath, MaxManifestBytes)
		switch {
		case err == nil:
			fv.manSrc = src
			ms := sha256.Sum256(src)
			fv.manHash = hex.EncodeToString(ms[:])
		case errors.Is(err, os.ErrNotExist):
		default:
			if fv.err == nil {
				fv.err = fmt.Errorf("read manifest %s: %w", fv.manPath, err)
			}
		}
		found[name] = fv
	}
	return found, nil
}

// unchanged reports whether name's loaded module is still what path holds,
// by the file's stamp, and returns its hash. Only a stamp read from a file
// that had been stable for stableAfter counts (readModule).
func (w *Watcher) unchanged(name, path string) (string, bool) {
	sl, rf := w.slots[name], w.read[name]
	if sl == nil || sl.plugin == nil || rf.hash == "" || rf.hash != sl.wasmHash {
		return "", false
	}
	if fsperm.WithinDir(w.opts.Dir, path) != nil {
		return "", false // readModule reports why
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", false
	}
	st, ok := stampOf(fi)
	return rf.hash, ok && st == rf.stamp
}

// readModule reads a NAME.wasm like readCapped, with the file's stamp.
// stable is false when the stamp must not be trusted: the file changed
// while it was read, or less than stableAfter before.
func (w *Watcher) readModule(path string) (b []byte, stamp fileStamp, stable bool, err error) {
	start := time.Now()
	var before, after os.FileInfo
	b, err = readCappedStat(w.opts.Dir, path, MaxModuleBytes, &before, &after)
	if err != nil {
		return nil, fileStamp{}, false, err
	}
	s1, ok1 := stampOf(before)
	s2, ok2 := stampOf(after)
	stable = ok1 && ok2 && s1 == s2 && s1.size == int64(len(b)) &&
		time.Unix(0, s1.ctime).Before(start.Add(-w.stableAfter))
	return b, s1, stable, nil
}

// readCapped reads path, which must resolve inside dir (no symlink out of
// it), refusing more than limit bytes.
func readCapped(dir, path string, limit int64) ([]byte, error) {
	return readCappedStat(dir, path, limit, nil, nil)
}

// readCappedStat is readCapped, also returning the open file's FileInfo
// from before and after the read when before and after are not nil.
func readCappedStat(dir, path string, limit int64, before, after *os.FileInfo) ([]byte, error) {
	if err := fsperm.WithinDir(dir, path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var size int64
	if before != nil {
		if *before, err = f.Stat(); err != nil {
			return nil, err
		}
		size = (*before).Size()
	}
	// One buffer of the file's size when it is known (as os.ReadFile).
	b := make([]byte, 0, min(size, limit)+512)
	r := io.LimitReader(f, limit+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	if after != nil {
		if *after, err = f.Stat(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Close unloads every plugin (after their in-flight evaluations) and stops
// further reloads. Evaluate afterwards runs an empty chain.
func (w *Watcher) Close(ctx context.Context) error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.cur.Store(NewSet(w.opts.Set, nil))
	var errs []error
	for name, sl := range w.slots {
		if sl.plugin != nil {
			errs = append(errs, sl.plugin.Close(ctx))
		}
		delete(w.slots, name)
	}
	return errors.Join(errs...)
}
