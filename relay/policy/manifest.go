package policy

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// On-error policies and modes of a manifest.
const (
	OnErrorSkip     = "skip"     // a failing plugin is passed over (fail open)
	OnErrorSuppress = "suppress" // a failing plugin suppresses the event (fail closed), unless enforced
	ModeEnforce     = "enforce"  // the plugin's verdicts take effect
	ModeShadow      = "shadow"   // the plugin is evaluated and recorded, never acts
)

// MaxManifestBytes caps a NAME.hcl file.
const MaxManifestBytes = 64 << 10

// MaxConfigBytes caps a manifest's config {} block, as JSON: it is sent to
// the plugin with every event.
const MaxConfigBytes = 32 << 10

// Manifest is a plugin's NAME.hcl: where it sits in the chain, which
// events it sees and how its failures are handled.
type Manifest struct {
	// Order sorts the chain (ascending; ties by name).
	Order int
	// Types limits the plugin to these notification types; empty: all.
	Types []string
	// Workspaces limits the plugin to these workspaces; empty: all.
	Workspaces []string
	// OverrideEnforced lets the plugin suppress or defer an enforced type.
	OverrideEnforced bool
	// OnError is OnErrorSkip, OnErrorSuppress or "" (the engine's default).
	OnError string
	// Mode is ModeEnforce or ModeShadow.
	Mode string
	// Config is the config {} block as a JSON object, nil when absent.
	Config []byte
}

type manifestFile struct {
	Order            *int       `hcl:"order,optional"`
	Types            []string   `hcl:"types,optional"`
	Workspaces       []string   `hcl:"workspaces,optional"`
	OverrideEnforced *bool      `hcl:"override_enforced,optional"`
	OnError          *string    `hcl:"on_error,optional"`
	Mode             *string    `hcl:"mode,optional"`
	Config           *configHCL `hcl:"config,block"`
	Range            hcl.Range  `hcl:",def_range"`
}

type configHCL struct {
	Body  hcl.Body  `hcl:",remain"`
	Range hcl.Range `hcl:",def_range"`
}

// ParseManifest parses a manifest; filename is used in error messages,
// which name the file, line and field.
func ParseManifest(filename string, src []byte) (*Manifest, error) {
	if len(src) > MaxManifestBytes {
		return nil, fmt.Errorf("parse manifest %s: %d bytes, limit %d", filename, len(src), MaxManifestBytes)
	}
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("parse manifest: %w", diags)
	}
	if diags := onlyData(src, f.Body.(*hclsyntax.Body)); diags.HasErrors() {
		return nil, fmt.Errorf("parse manifest: %w", diags)
	}
	var mf manifestFile
	if diags := gohcl.DecodeBody(f.Body, nil, &mf); diags.HasErrors() {
		return nil, fmt.Errorf("parse manifest: %w", diags)
	}
	m := &Manifest{Types: mf.Types, Workspaces: mf.Workspaces, Mode: ModeEnforce}
	if mf.Order != nil {
		m.Order = *mf.Order
	}
	if mf.OverrideEnforced != nil {
		m.OverrideEnforced = *mf.OverrideEnforced
	}
	if mf.OnError != nil {
		switch *mf.OnError {
		case OnErrorSkip, OnErrorSuppress:
			m.OnError = *mf.OnError
		default:
			return nil, fmt.Errorf("parse manifest %s: on_error %q: want %q or %q", filename, *mf.OnError, OnErrorSkip, OnErrorSuppress)
		}
	}
	if mf.Mode != nil {
		switch *mf.Mode {
		case ModeEnforce, ModeShadow:
			m.Mode = *mf.Mode
		default:
			return nil, fmt.Errorf("parse manifest %s: mode %q: want %q or %q", filename, *mf.Mode, ModeEnforce, ModeShadow)
		}
	}
	for i, t := range m.Types {
		if t == "" {
			return nil, fmt.Errorf("parse manifest %s: types[%d]: empty type", filename, i)
		}
	}
	for i, w := range m.Workspaces {
		if w == "" {
			return nil, fmt.Errorf("parse manifest %s: workspaces[%d]: empty workspace", filename, i)
		}
	}
	if mf.Config != nil {
		attrs, diags := mf.Config.Body.JustAttributes()
		if diags.HasErrors() {
			return nil, fmt.Errorf("parse manifest config: %w", diags)
		}
		vals := make(map[string]cty.Value, len(attrs))
		for name, a := range attrs {
			v, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				return nil, fmt.Errorf("parse manifest config: %w", diags)
			}
			if !v.IsWhollyKnown() {
				return nil, fmt.Errorf("parse manifest %s: config.%s: value is not known", filename, name)
			}
			vals[name] = v
		}
		obj := cty.EmptyObjectVal
		if len(vals) > 0 {
			obj = cty.ObjectVal(vals)
		}
		b, err := ctyjson.Marshal(obj, obj.Type())
		if err != nil {
			return nil, fmt.Errorf("parse manifest %s: config: %w", filename, err)
		}
		if len(b) > MaxConfigBytes {
			return nil, fmt.Errorf("parse manifest %s:%d: config is over %d bytes (%d bytes of JSON)",
				filename, mf.Config.Range.Start.Line, MaxConfigBytes, len(b))
		}
		m.Config = b
	}
	return m, nil
}

// onlyData refuses every expression in a manifest body that is not plain
// data (literals, lists, objects with literal keys, negative numbers), before
// anything evaluates it: a manifest is data, and HCL expressions (nested
// for, function calls) can make evaluation allocate without bound.
func onlyData(src []byte, body *hclsyntax.Body) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, a := range body.Attributes {
		diags = append(diags, dataExpr(src, a.Expr)...)
	}
	for _, b := range body.Blocks {
		diags = append(diags, onlyData(src, b.Body)...)
	}
	return diags
}

// interpolates reports whether template source has an interpolation or
// directive ("${" or "%{" not escaped as "$${" or "%%{").
func interpolates(src []byte, rng hcl.Range) bool {
	if rng.Start.Byte < 0 || rng.End.Byte > len(src) || rng.Start.Byte > rng.End.Byte {
		return true
	}
	raw := src[rng.Start.Byte:rng.End.Byte]
	for i := 0; i+1 < len(raw); i++ {
		if (raw[i] == '$' || raw[i] == '%') && raw[i+1] == '{' {
			if i > 0 && raw[i-1] == raw[i] {
				continue
			}
			return true
		}
	}
	return false
}

func dataExpr(src []byte, e hclsyntax.Expression) hcl.Diagnostics {
	refuse := func(what string, rng hcl.Range) hcl.Diagnostics {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Expression not allowed in a manifest",
			Detail:   "found " + what + "; a manifest holds only literal values (strings, numbers, booleans, null, lists and objects)",
			Subject:  rng.Ptr(),
		}}
	}
	switch e := e.(type) {
	case *hclsyntax.LiteralValueExpr:
		return nil
	case *hclsyntax.TemplateExpr:
		for _, p := range e.Parts {
			if _, ok := p.(*hclsyntax.LiteralValueExpr); !ok {
				return refuse("a template", e.SrcRange)
			}
		}
		if interpolates(src, e.SrcRange) {
			return refuse("a template", e.SrcRange)
		}
		return nil
	case *hclsyntax.TupleConsExpr:
		var diags hcl.Diagnostics
		for _, x := range e.Exprs {
			diags = append(diags, dataExpr(src, x)...)
		}
		return diags
	case *hclsyntax.ObjectConsExpr:
		var diags hcl.Diagnostics
		for _, it := range e.Items {
			k, ok := it.KeyExpr.(*hclsyntax.ObjectConsKeyExpr)
			switch {
			case !ok:
				diags = append(diags, refuse("a computed key", it.KeyExpr.Range())...)
			case !k.ForceNonLiteral && hcl.ExprAsKeyword(k.Wrapped) != "":
			default:
				if t, ok := k.Wrapped.(*hclsyntax.TemplateExpr); ok && len(dataExpr(src, t)) == 0 {
					break
				}
				diags = append(diags, refuse("a computed key", k.Wrapped.Range())...)
			}
			diags = append(diags, dataExpr(src, it.ValueExpr)...)
		}
		return diags
	case *hclsyntax.UnaryOpExpr:
		if _, ok := e.Val.(*hclsyntax.LiteralValueExpr); ok && e.Op == hclsyntax.OpNegate {
			return nil
		}
		return refuse("an operator", e.SrcRange)
	case *hclsyntax.ForExpr:
		return refuse("a for expression", e.SrcRange)
	case *hclsyntax.SplatExpr:
		return refuse("a splat", e.SrcRange)
	case *hclsyntax.ConditionalExpr:
		return refuse("a conditional", e.SrcRange)
	case *hclsyntax.FunctionCallExpr:
		return refuse("a function call", e.Range())
	case *hclsyntax.BinaryOpExpr:
		return refuse("an operator", e.SrcRange)
	case *hclsyntax.TemplateWrapExpr:
		return refuse("a template", e.SrcRange)
	case *hclsyntax.ScopeTraversalExpr, *hclsyntax.RelativeTraversalExpr, *hclsyntax.IndexExpr:
		return refuse("a variable or index", e.Range())
	}
	return refuse("an expression", e.Range())
}

// applies reports whether the plugin sees events of type typ in workspace ws.
func (m *Manifest) applies(ws, typ string) bool {
	return (len(m.Types) == 0 || contains(m.Types, typ)) &&
		(len(m.Workspaces) == 0 || contains(m.Workspaces, ws))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
