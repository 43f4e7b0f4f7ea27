package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay"
	"github.com/edgerelay/edgerelay/relay/policy/internal/wasmtest"
)

func writeFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// writeAtomic writes via a temp file and rename, as deployers should.
func writeAtomic(tb testing.TB, path string, b []byte) {
	tb.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	writeFile(tb, tmp, b)
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// poll waits for cond, failing the test after 10 s.
func poll(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func info(w *Watcher, name string) PluginInfo {
	for _, pi := range w.List() {
		if pi.Name == name {
			return pi
		}
	}
	return PluginInfo{}
}

func TestWatcherReload(t *testing.T) {
	e := openEngine(t, Options{})
	dir := t.TempDir()
	w := NewWatcher(WatcherOptions{Dir: dir, Engine: e})
	defer w.Close(context.Background())

	a := wasmtest.ConstPlugin(`{"verdict":"allow","set":{"title":"A"}}`)
	writeFile(t, filepath.Join(dir, "a.wasm"), a)
	writeFile(t, filepath.Join(dir, "a.hcl"), []byte("order = 2\n"))
	writeFile(t, filepath.Join(dir, "b.wasm"), []byte("garbage"))
	writeFile(t, filepath.Join(dir, ".hidden.wasm"), []byte("garbage"))
	writeFile(t, filepath.Join(dir, "notes.txt"), []byte("x"))
	err := w.Reload()
	if err == nil || !strings.Contains(err.Error(), "load policy b: refused") {
		t.Fatalf("reload error %v", err)
	}
	if pi := info(w, "a"); pi.Hash != sha256hex(a) || pi.Order != 2 || pi.Mode != ModeEnforce || pi.LastError != "" {
		t.Fatalf("a: %+v", pi)
	}
	if pi := info(w, "b"); pi.Hash != "" || !strings.Contains(pi.LastError, "load policy b: refused") {
		t.Fatalf("b: %+v", pi)
	}
	res, err := w.Evaluate(context.Background(), testRequest(relay.TypeOTPReceived, false))
	if err != nil || len(res.Plugins) != 1 || res.Plugins[0].Hash != sha256hex(a) {
		t.Fatalf("%+v %v", res, err)
	}

	// A broken new version keeps the old one.
	writeFile(t, filepath.Join(dir, "a.wasm"), a[:30])
	if err := w.Reload(); err == nil {
		t.Fatal("broken a accepted")
	}
	if pi := info(w, "a"); pi.Hash != sha256hex(a) || pi.LastError == "" {
		t.Fatalf("a after broken write: %+v", pi)
	}
	// A broken manifest keeps the old one too.
	writeFile(t, filepath.Join(dir, "a.wasm"), a)
	writeFile(t, filepath.Join(dir, "a.hcl"), []byte("order = \"x\"\n"))
	if err := w.Reload(); err == nil || !strings.Contains(err.Error(), "a.hcl:1") {
		t.Fatalf("broken manifest: %v", err)
	}
	if pi := info(w, "a"); pi.Order != 2 || pi.LastError == "" {
		t.Fatalf("a after broken manifest: %+v", pi)
	}
	// Fixing the manifest changes the order without reloading the module.
	old := w.Current().Entries()[0].Plugin
	writeFile(t, filepath.Join(dir, "a.hcl"), []byte("order = 7\nmode = \"shadow\"\n"))
	writeFile(t, filepath.Join(dir, "b.wasm"), wasmtest.ConstPlugin(`{"verdict":"suppress"}`))
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if pi := info(w, "a"); pi.Order != 7 || pi.Mode != ModeShadow || pi.LastError != "" {
		t.Fatalf("a: %+v", pi)
	}
	if w.Current().Entries()[1].Plugin != old {
		t.Fatal("manifest change reloaded the module")
	}
	res, err = w.Evaluate(context.Background(), testRequest(relay.TypeOTPReceived, false))
	if err != nil || res.Verdict != relay.VerdictSuppress || res.Plugins[0].Name != "b" {
		t.Fatalf("%+v %v", res, err)
	}
	// Removing a file unloads the plugin and closes it.
	if err := os.Remove(filepath.Join(dir, "b.wasm")); err != nil {
		t.Fatal(err)
	}
	bp := w.Current().Entries()[0].Plugin
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(w.List()) != 1 || bp.Stats().Instances != 0 {
		t.Fatalf("after remove: %+v, b instances %d", w.List(), bp.Stats().Instances)
	}
	if _, err := bp.EvaluateRaw(context.Background(), []byte("{}")); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("removed plugin still evaluates: %v", err)
	}
}

func TestWatcherRun(t *testing.T) {
	e := openEngine(t, Options{})
	dir := t.TempDir()
	w := NewWatcher(WatcherOptions{Dir: dir, Engine: e, Debounce: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		w.Close(context.Background())
	}()
	versions := make([][]byte, 4)
	for i := range versions {
		versions[i] = wasmtest.ConstPlugin(fmt.Sprintf(`{"verdict":"allow","reason":"v%d"}`, i))
	}
	path := filepath.Join(dir, "p.wasm")
	waitHash := func(b []byte, how string) {
		poll(t, how, func() bool { return info(w, "p").Hash == sha256hex(b) })
	}
	writeAtomic(t, path, versions[0])
	waitHash(versions[0], "create by rename")
	writeFile(t, path, versions[1]) // in place
	waitHash(versions[1], "in-place write")

	// Kubernetes ConfigMap layout: p.wasm -> ..data/p.wasm, ..data -> ..v1,
	// swapped by renaming a new symlink over ..data.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	poll(t, "unload", func() bool { return len(w.List()) == 0 })
	for i, v := range []int{2, 3} {
		d := filepath.Join(dir, fmt.Sprintf("..v%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "p.wasm"), versions[v])
		tmpLink := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(d), tmpLink); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := os.Symlink(filepath.Join("..data", "p.wasm"), path); err != nil {
				t.Fatal(err)
			}
		}
		waitHash(versions[v], fmt.Sprintf("..data swap %d", i))
	}
}

// TestHotReloadHammer swaps a plugin many times while goroutines evaluate:
// no evaluation fails and each decision names a version that exists, with
// that version's own answer.
func TestHotReloadHammer(t *testing.T) {
	e := openEngine(t, Options{MaxConcurrent: 4})
	dir := t.TempDir()
	w := NewWatcher(WatcherOptions{Dir: dir, Engine: e})
	defer w.Close(context.Background())
	const swaps = 50
	reasonOf := make(map[string]string)
	versions := make([][]byte, swaps+1)
	for i := range versions {
		versions[i] = wasmtest.ConstPlugin(fmt.Sprintf(`{"verdict":"allow","reason":"v%d"}`, i))
		reasonOf[sha256hex(versions[i])] = fmt.Sprintf("v%d", i)
	}
	writeFile(t, filepath.Join(dir, "other.wasm"), wasmtest.ConstPlugin(`{"verdict":"allow","reason":"other"}`))
	writeFile(t, filepath.Join(dir, "p.wasm"), versions[0])
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls atomic.Int64
	var failed atomic.Value
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := w.Evaluate(context.Background(), testRequest(relay.TypeOTPReceived, false))
				if err == nil && len(res.Plugins) != 2 {
					err = fmt.Errorf("%d plugin decisions", len(res.Plugins))
				}
				if err == nil {
					d := res.Plugins[1]
					if want, ok := reasonOf[d.Hash]; !ok || d.Reason != want || d.Verdict != "allow" {
						err = fmt.Errorf("decision %+v does not match its version", d)
					}
				}
				if err != nil {
					failed.Store(err)
					return
				}
				calls.Add(1)
			}
		}()
	}
	for i := 1; i <= swaps; i++ {
		writeAtomic(t, filepath.Join(dir, "p.wasm"), versions[i])
		if err := w.Reload(); err != nil {
			t.Fatal(err)
		}
		n := calls.Load()
		poll(t, "evaluations after a swap", func() bool { return calls.Load() > n+20 || failed.Load() != nil })
	}
	close(stop)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	if pi := info(w, "p"); pi.Hash != sha256hex(versions[swaps]) {
		t.Fatalf("final %+v", pi)
	}
	t.Logf("%d evaluations across %d swaps, 0 errors", calls.Load(), swaps)
}

// A plugin symlink that leads outside the plugin directory is refused
// (symlinks inside it, as in a ConfigMap layout, still work).
func TestWatcherRefusesSymlinkOutside(t *testing.T) {
	e := openEngine(t, Options{})
	root := t.TempDir()
	dir := filepath.Join(root, "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(WatcherOptions{Dir: dir, Engine: e})
	defer w.Close(context.Background())
	a := wasmtest.ConstPlugin(`{"verdict":"allow"}`)
	writeFile(t, filepath.Join(root, "elsewhere.wasm"), a)
	writeFile(t, filepath.Join(dir, "in.wasm"), a)
	if err := os.Symlink(filepath.Join(root, "elsewhere.wasm"), filepath.Join(dir, "out.wasm")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("in.wasm", filepath.Join(dir, "alias.wasm")); err != nil {
		t.Fatal(err)
	}
	err := w.Reload()
	if err == nil || !strings.Contains(err.Error(), "leads outside") {
		t.Fatalf("reload error %v", err)
	}
	if pi := info(w, "out"); pi.Hash != "" || !strings.Contains(pi.LastError, "leads outside") {
		t.Fatalf("out: %+v", pi)
	}
	if pi := info(w, "alias"); pi.Hash != sha256hex(a) {
		t.Fatalf("alias: %+v", pi)
	}
}

// TestWatcherOnChange checks the audit hook: one change per plugin loaded,
// replaced (module or manifest) or unloaded; none for a failed load or
// an unchanged file.
func TestWatcherOnChange(t *testing.T) {
	e := openEngine(t, Options{})
	dir := t.TempDir()
	var got []string
	w := NewWatcher(WatcherOptions{Dir: dir, Engine: e, OnChange: func(c PluginChange) {
		s := c.Name
		for _, v := range []*PluginVersion{c.Before, c.After} {
			if v == nil {
				s += " -"
			} else {
				s += fmt.Sprintf(" %s/%d/%s", v.Hash[:8], v.Order, v.Mode)
			}
		}
		got = append(got, s)
	}})
	defer w.Close(context.Background())
	a := wasmtest.ConstPlugin(`{"verdict":"allow"}`)
	h := sha256hex(a)[:8]
	writeFile(t, filepath.Join(dir, "a.wasm"), a)
	writeFile(t, filepath.Join(dir, "b.wasm"), []byte("garbage"))
	_ = w.Reload()
	_ = w.Reload() // nothing new
	writeFile(t, filepath.Join(dir, "a.hcl"), []byte("order = 3\nmode = \"shadow\"\n"))
	_ = w.Reload()
	if err := os.Remove(filepath.Join(dir, "a.wasm")); err != nil {
		t.Fatal(err)
	}
	_ = w.Reload()
	want := []string{
		"a - " + h + "/0/enforce",
		"a " + h + "/0/enforce " + h + "/3/shadow",
		"a " + h + "/3/shadow -",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRescanReadsOnlyChangedFiles: a rescan (every Resync, and after any
// event in the directory) does not read again a module whose file did not
// change since it was loaded. It used to read and hash every .wasm each
// time: 21 MB of garbage a minute for the five shipped policies, which
// set the idle heap's size. Changed files are still read.
func TestRescanReadsOnlyChangedFiles(t *testing.T) {
	e := openEngine(t, Options{})
	dir := t.TempDir()
	w := NewWatcher(WatcherOptions{Dir: dir, Engine: e})
	defer w.Close(context.Background())
	w.stableAfter = 20 * time.Millisecond

	// Four plugins of 2 MiB each (a custom section pads them).
	const pad = 2 << 20
	mod := func(verdict string) []byte {
		return append(wasmtest.ConstPlugin(`{"verdict":"`+verdict+`"}`),
			wasmtest.Section(0, append(wasmtest.Name("padding"), make([]byte, pad)...))...)
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		writeFile(t, filepath.Join(dir, name+".wasm"), mod("allow"))
	}
	time.Sleep(50 * time.Millisecond) // older than stableAfter when read
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	rescan := func() uint64 {
		t.Helper()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if err := w.Reload(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	if n := rescan(); n > pad/2 {
		t.Fatalf("a rescan of 4 unchanged 2 MiB modules allocated %d bytes: it read them again", n)
	}

	// A changed file is read and loaded: replaced by rename, and rewritten
	// in place with its old size and modification time.
	writeAtomic(t, filepath.Join(dir, "b.wasm"), mod("suppress"))
	cOld, err := os.Stat(filepath.Join(dir, "c.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "c.wasm"), mod("defer"))
	if err := os.Chtimes(filepath.Join(dir, "c.wasm"), cOld.ModTime(), cOld.ModTime()); err != nil {
		t.Fatal(err)
	}
	if n := rescan(); n < 2*pad {
		t.Fatalf("a rescan after two files changed allocated %d bytes: it did not read them", n)
	}
	for name, verdict := range map[string]string{"a": "allow", "b": "suppress", "c": "defer", "d": "allow"} {
		if got, want := info(w, name).Hash, sha256hex(mod(verdict)); got != want {
			t.Errorf("%s: hash %s, want %s (%s)", name, got, want, verdict)
		}
	}
}
