package config

import (
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// Loader loads config files and keeps the source of the most recent one, so
// diagnostics can be printed with snippets ([Loader.WriteDiagnostics]). Each
// call parses afresh: one Loader may be reused for a reload. A Loader is not
// safe for concurrent use.
type Loader struct {
	files map[string]*hcl.File
}

// NewLoader returns a Loader with no files.
func NewLoader() *Loader { return &Loader{} }

// Load reads, decodes and validates the config file at path, including the
// check that every file it references exists. Diagnostic ranges carry path
// as written. The returned config is nil when diags has errors.
func Load(path string) (*Config, hcl.Diagnostics) { return NewLoader().Load(path) }

// Parse decodes and validates src as if it were the file filename, without
// touching the filesystem: relative paths are resolved against
// filepath.Dir(filename) but referenced files are not checked for existence.
// An empty filename stands for "config.hcl" in the working directory. The
// returned config is nil when diags has errors.
func Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	return NewLoader().Parse(src, filename)
}

// Load is the package-level [Load] that remembers the parsed file.
func (l *Loader) Load(path string) (*Config, hcl.Diagnostics) {
	p := hclparse.NewParser()
	l.files = p.Files()
	f, diags := p.ParseHCLFile(path)
	return l.decode(f, diags, path, true)
}

// Parse is the package-level [Parse] that remembers the parsed source.
func (l *Loader) Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	if filename == "" {
		filename = "config.hcl"
	}
	p := hclparse.NewParser()
	l.files = p.Files()
	f, diags := p.ParseHCL(src, filename)
	return l.decode(f, diags, filename, false)
}

// Files returns the files parsed by the most recent Load or Parse, keyed by
// the file name that diagnostics carry.
func (l *Loader) Files() map[string]*hcl.File { return l.files }

// WriteDiagnostics prints diags with source snippets of the files parsed by
// the most recent Load or Parse.
func (l *Loader) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics) error {
	return WriteDiagnostics(w, l.files, diags)
}

// WriteDiagnostics prints diags as `relayd -check` does: each with its
// file:line, summary, detail and a snippet of the source from files (which
// may be nil: then no snippets). Lines are not wrapped and not coloured.
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) error {
	if err := hcl.NewDiagnosticTextWriter(w, files, 0, false).WriteDiagnostics(diags); err != nil {
		return fmt.Errorf("write diagnostics: %w", err)
	}
	return nil
}

func (l *Loader) decode(f *hcl.File, diags hcl.Diagnostics, filename string, checkFiles bool) (*Config, hcl.Diagnostics) {
	if f == nil || f.Body == nil {
		return nil, sortDiags(diags)
	}
	abs, err := filepath.Abs(filename)
	if err != nil {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid config file name",
			Detail:   fmt.Sprintf("resolve %q: %v", filename, err),
		})
		return nil, diags
	}
	var s fileSchema
	diags = append(diags, gohcl.DecodeBody(f.Body, nil, &s)...)
	b := &builder{dir: filepath.Dir(abs), checkFiles: checkFiles, diags: diags}
	b.dropFailed(reflect.ValueOf(&s))
	cfg := b.build(&s, f.Body.MissingItemRange())
	cfg.File = abs
	diags = sortDiags(b.diags)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

// sortDiags orders diagnostics by position (gohcl visits attributes in map
// order), keeping those without a subject first.
func sortDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Byte != b.Start.Byte:
			return a.Start.Byte < b.Start.Byte
		}
		return a.End.Byte < b.End.Byte
	})
	return diags
}
