package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// wazero's compilation cache keeps one file per compiled module forever.
// The engine remembers which files each module produced (an index in the
// cache dir, by the sha256 of the compiled bytes) so that PruneCache can
// delete every file no loaded plugin version uses.

const cacheIndexName = "edgerelay-index.json"

// cacheListing lists the files of the wazero-* subdirectories of dir, as
// "sub/file".
func cacheListing(dir string) (map[string]bool, error) {
	out := make(map[string]bool)
	subs, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		if !s.IsDir() || !strings.HasPrefix(s.Name(), "wazero-") {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, s.Name()))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if f.Type().IsRegular() && !strings.HasSuffix(f.Name(), ".tmp") {
				out[s.Name()+"/"+f.Name()] = true
			}
		}
	}
	return out, nil
}

func (e *Engine) loadCacheIndex() {
	e.cacheIndex = make(map[string][]string)
	b, err := os.ReadFile(filepath.Join(e.opts.CacheDir, cacheIndexName))
	if err == nil {
		_ = json.Unmarshal(b, &e.cacheIndex) // a damaged index only costs a recompile
	}
}

func (e *Engine) saveCacheIndex() error {
	b, err := json.Marshal(e.cacheIndex)
	if err != nil {
		return err
	}
	path := filepath.Join(e.opts.CacheDir, cacheIndexName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// compileCached runs compile with e.cacheMu held and records which cache
// files the module (by key) uses. Without a cache dir it just compiles.
func (e *Engine) compileCached(key string, compile func() error) ([]string, error) {
	if e.cache == nil {
		return nil, compile()
	}
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	before, _ := cacheListing(e.opts.CacheDir)
	if err := compile(); err != nil {
		return nil, err
	}
	after, err := cacheListing(e.opts.CacheDir)
	if err != nil {
		return e.cacheIndex[key], nil
	}
	var added []string
	for f := range after {
		if !before[f] {
			added = append(added, f)
		}
	}
	if len(added) > 0 {
		slices.Sort(added)
		e.cacheIndex[key] = added
		if err := e.saveCacheIndex(); err != nil {
			e.log.Warn("cannot save compilation cache index", "error", err)
		}
	}
	return e.cacheIndex[key], nil
}

// PruneCache deletes the compilation cache files of every module version
// not currently loaded. The Watcher calls it after each rescan, once the
// directory's plugins are loaded; without a cache dir it does nothing.
func (e *Engine) PruneCache() error {
	if e.cache == nil {
		return nil
	}
	keep := make(map[string]bool)
	keys := make(map[string]bool)
	e.mu.Lock()
	for p := range e.plugins {
		keys[p.cacheKey] = true
		for _, f := range p.mod.files {
			keep[f] = true
		}
	}
	e.mu.Unlock()
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	files, err := cacheListing(e.opts.CacheDir)
	if err != nil {
		return fmt.Errorf("prune compilation cache: %w", err)
	}
	var errs []error
	removed := 0
	for f := range files {
		if keep[f] {
			continue
		}
		if err := os.Remove(filepath.Join(e.opts.CacheDir, filepath.FromSlash(f))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	for k := range e.cacheIndex {
		if !keys[k] {
			delete(e.cacheIndex, k)
		}
	}
	if err := e.saveCacheIndex(); err != nil {
		errs = append(errs, err)
	}
	if removed > 0 {
		e.log.Debug("pruned compilation cache", "files", removed, "kept", len(keep))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prune compilation cache: %w", err)
	}
	return nil
}
