package rules

import (
	"fmt"
	"io"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// attrRange returns the range of attribute name's value in body, or fallback.
func attrRange(body hcl.Body, name string, fallback hcl.Range) *hcl.Range {
	if b, ok := body.(*hclsyntax.Body); ok {
		if a, ok := b.Attributes[name]; ok {
			r := a.Expr.Range()
			return &r
		}
	}
	return &fallback
}

// elemRange returns the range of element i of list attribute name, or the
// attribute's range.
func elemRange(body hcl.Body, name string, i int, fallback hcl.Range) *hcl.Range {
	if b, ok := body.(*hclsyntax.Body); ok {
		if a, ok := b.Attributes[name]; ok {
			if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
				r := t.Exprs[i].Range()
				return &r
			}
			r := a.Expr.Range()
			return &r
		}
	}
	return &fallback
}

// mapKeyRange returns the range of key k of map attribute name, or the
// attribute's range.
func mapKeyRange(body hcl.Body, name, key string, fallback hcl.Range) *hcl.Range {
	if b, ok := body.(*hclsyntax.Body); ok {
		if a, ok := b.Attributes[name]; ok {
			if o, ok := a.Expr.(*hclsyntax.ObjectConsExpr); ok {
				for _, item := range o.Items {
					if v, diags := item.KeyExpr.Value(nil); !diags.HasErrors() && v.Type().FriendlyName() == "string" && v.AsString() == key {
						r := item.KeyExpr.Range()
						return &r
					}
				}
			}
			r := a.Expr.Range()
			return &r
		}
	}
	return &fallback
}

func errorAt(r *hcl.Range, summary, detail string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: r}
}

func warningAt(r *hcl.Range, summary, detail string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: r}
}

// WriteDiagnostics prints one line per diagnostic, sorted by position:
//
//	path:line:col: error: Summary; detail
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics) {
	sorted := append(hcl.Diagnostics(nil), diags...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i].Subject, sorted[j].Subject
		if a == nil || b == nil {
			return a != nil
		}
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		if a.Start.Line != b.Start.Line {
			return a.Start.Line < b.Start.Line
		}
		return a.Start.Column < b.Start.Column
	})
	for _, d := range sorted {
		fmt.Fprintln(w, FormatDiagnostic(d))
	}
}

// FormatDiagnostic renders one diagnostic on one line.
func FormatDiagnostic(d *hcl.Diagnostic) string {
	sev := "error"
	if d.Severity == hcl.DiagWarning {
		sev = "warning"
	}
	pos := ""
	if d.Subject != nil {
		pos = fmt.Sprintf("%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
	}
	if d.Detail == "" {
		return fmt.Sprintf("%s%s: %s", pos, sev, d.Summary)
	}
	return fmt.Sprintf("%s%s: %s; %s", pos, sev, d.Summary, d.Detail)
}
